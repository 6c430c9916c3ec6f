use clap::{Parser, Subcommand};

mod args;
mod bench;
mod bench_batch;
mod bench_kernels;
mod chat;
mod hub;
mod inspect;
mod list;
mod load;
mod logits;
mod perplexity;
mod pull;
mod quantize;
mod run;
mod serve;
mod show;
mod structured;
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
    #[command(after_help = r#"Examples:
  phi run -p "Why is the sky blue?"
  phi run -m model.gguf -f prompt.txt -n 128 --temp 0 --raw"#)]
    Run(run::Args),
    /// Chat with the model interactively (multi-turn, kept in the KV cache).
    #[command(after_help = r#"Examples:
  phi chat -s "You are a concise assistant."
  printf 'hi\nwho are you?\n' | phi chat -m model.gguf"#)]
    Chat(chat::Args),
    /// Run token ids through the model and dump the logits (debugging view).
    #[command(after_help = r#"Examples:
  phi logits -m model.gguf --tokens 1,15043,3186 --out logits.bin --greedy 8"#)]
    Logits(logits::Args),
    /// Print the token ids of a text as a JSON array.
    #[command(after_help = r#"Examples:
  phi tokenize -m model.gguf "Hello world"
  phi tokenize -m model.gguf --parse-special "<|user|>Hi<|end|>""#)]
    Tokenize(tokenize::Args),
    /// Show a GGUF file's header, hyper-parameters, tokenizer and tensors.
    #[command(after_help = r#"Examples:
  phi inspect model.gguf
  phi inspect model.gguf --json | jq '.tensors[0]'"#)]
    Inspect(inspect::Args),
    /// Measure prompt-processing and generation speed (like llama-bench).
    #[command(after_help = r#"Examples:
  phi bench -m model.gguf -p 128 -n 32 -t 1,2 -r 3
  phi bench --synthetic phi3-mini --type q4_0 --json
  phi bench --kernels --types q4_0,q4_k
  phi bench --synthetic phi3-mini -t 2 --parallel 1,2,4,8 -n 32"#)]
    Bench(bench::Args),
    /// Perplexity of a text file over windows of -c tokens (like llama-perplexity).
    #[command(after_help = r#"Examples:
  phi perplexity -m model.gguf -f wiki.test.raw -c 512"#)]
    Perplexity(perplexity::Args),
    /// Download a model into the Hugging Face cache (hf:OWNER/REPO/FILE.gguf).
    #[command(after_help = r#"Examples:
  phi pull hf:microsoft/Phi-3-mini-4k-instruct-gguf/Phi-3-mini-4k-instruct-q4.gguf"#)]
    Pull(pull::Args),
    /// List the GGUF models in the Hugging Face cache.
    #[command(after_help = r#"Examples:
  phi list"#)]
    List(list::Args),
    /// Convert a GGUF model's weights to another type (like llama-quantize).
    #[command(after_help = quantize::AFTER_HELP)]
    Quantize(quantize::Args),
    /// Serve the model over an OpenAI-compatible HTTP API, batching concurrent requests.
    #[command(after_help = r#"Examples:
  phi serve -m model.gguf --port 8080 -np 4 -c 4096
  OPENAI_BASE_URL=http://127.0.0.1:8080/v1 your-openai-tool"#)]
    Serve(serve::Args),
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
    // llama-server spells --parallel `-np`; clap's short flags are one letter.
    let cli =
        Cli::parse_from(std::env::args_os().map(
            |a| {
                if a == "-np" {
                    "--parallel".into()
                } else {
                    a
                }
            },
        ));
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
        Some(Command::Quantize(args)) => quantize::run(args),
        Some(Command::Serve(args)) => serve::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
