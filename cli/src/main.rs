use clap::{Parser, Subcommand};

mod inspect;
mod logits;
mod run;
mod tokenize;

/// phi.rs: run Phi-3 and Llama GGUF models on the CPU.
#[derive(Parser)]
#[command(name = "phi", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt.
    Run(run::Args),
    /// Run token ids through the model and dump the logits (debugging view).
    Logits(logits::Args),
    /// Print the token ids of a text as a JSON array.
    Tokenize(tokenize::Args),
    /// Show a GGUF file's header, hyper-parameters, tokenizer and tensors.
    Inspect(inspect::Args),
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn main() {
    let cli = Cli::parse();
    let result: CliResult = match cli.command {
        None => {
            println!("phi.rs — run `phi --help` for commands");
            Ok(())
        }
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Logits(args)) => logits::run(args),
        Some(Command::Tokenize(args)) => tokenize::run(args),
        Some(Command::Inspect(args)) => inspect::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
