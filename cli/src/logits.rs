use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    pub model: PathBuf,
}

pub fn run(args: Args) -> crate::CliResult {
    let _ = args;
    Err("`phi logits` is not implemented yet".into())
}
