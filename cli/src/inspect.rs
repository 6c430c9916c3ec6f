use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file.
    pub model: PathBuf,
}

pub fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let _ = args;
    Err("not yet".into())
}
