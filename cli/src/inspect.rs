use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    pub model: PathBuf,
}

pub fn run(args: Args) -> crate::CliResult {
    let _ = args;
    Err("`phi inspect` is not implemented yet".into())
}
