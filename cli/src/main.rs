use clap::{Parser, Subcommand};

mod bench;
mod bench_kernels;
mod chat;
mod hub;
mod inspect;
mod list;
mod logits;
mod perplexity;
mod pull;
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
    /// Chat with the model interactively (multi-turn, kept in the KV cache).
    Chat(chat::Args),
    /// Run token ids through the model and dump the logits (debugging view).
    Logits(logits::Args),
    /// Print the token ids of a text as a JSON array.
    Tokenize(tokenize::Args),
    /// Show a GGUF file's header, hyper-parameters, tokenizer and tensors.
    Inspect(inspect::Args),
    /// Measure prompt-processing and generation speed (like llama-bench).
    Bench(bench::Args),
    /// Perplexity of a text file over windows of -c tokens (like llama-perplexity).
    Perplexity(perplexity::Args),
    /// Download a model into the Hugging Face cache (hf:OWNER/REPO/FILE.gguf).
    Pull(pull::Args),
    /// List the GGUF models in the Hugging Face cache.
    List(list::Args),
}

/// What bare `phi` prints.
fn quick_start() -> String {
    format!(
        "phi.rs — run Phi-3 and Llama GGUF models on the CPU.

Quick start (the first run downloads Phi-3-mini q4, 2.2 GB, into the Hugging Face cache):
  phi chat                                      chat; Ctrl-C stops a reply, Ctrl-D quits
  phi run -p \"Why is the sky blue?\"             one answer, streamed
  phi run -m PATH/TO/MODEL.gguf -p \"...\"        a GGUF file you already have
  phi run -m hf:OWNER/REPO/FILE.gguf -p \"...\"   another model from the Hub
The default model is {model}

More:
  phi bench -m MODEL                            speed: prompt processing and generation, tokens/s
  phi perplexity -m MODEL -f TEXT               perplexity of a text
  phi pull REF, phi list                        download a model, list downloaded ones
  phi inspect FILE                              what is inside a GGUF file
  phi help COMMAND                              every command's flags
",
        model = hub::DEFAULT_MODEL
    )
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn main() {
    let cli = Cli::parse();
    let result: CliResult = match cli.command {
        None => {
            print!("{}", quick_start());
            Ok(())
        }
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Chat(args)) => chat::run(args),
        Some(Command::Logits(args)) => logits::run(args),
        Some(Command::Tokenize(args)) => tokenize::run(args),
        Some(Command::Inspect(args)) => inspect::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Perplexity(args)) => perplexity::run(args),
        Some(Command::Pull(args)) => pull::run(args),
        Some(Command::List(args)) => list::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
