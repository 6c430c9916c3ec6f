//! `phi pull REF`: download a model into the Hugging Face cache.

#[derive(clap::Args)]
pub struct Args {
    /// hf:OWNER/REPO/FILE.gguf, or hf:OWNER/REPO for its one obvious GGUF.
    pub reference: String,
    /// Only check the cache; never use the network.
    #[arg(long)]
    pub offline: bool,
}

pub fn run(args: Args) -> crate::CliResult {
    let path = crate::hub::pull(&args.reference, args.offline)?;
    println!("{}", path.display());
    Ok(())
}
