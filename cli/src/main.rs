use clap::{Parser, Subcommand};

mod inspect;

/// phi.rs: run Phi-3 and Llama GGUF models on the CPU.
#[derive(Parser)]
#[command(name = "phi", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show a GGUF file's header, hyper-parameters, tokenizer and tensors.
    Inspect(inspect::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            println!("phi.rs — run `phi --help` for commands");
            Ok(())
        }
        Some(Command::Inspect(args)) => inspect::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
