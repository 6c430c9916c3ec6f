//! `phi tokenize`: print the token ids of a text as a JSON array.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use phi::tokenizer::Tokenizer;
use phi_gguf::Gguf;

#[derive(clap::Args)]
pub struct Args {
    // Only the tokenizer metadata is read: a vocab-only file works too.
    #[command(flatten)]
    pub model: crate::args::ModelArgs,
    /// Do not add BOS/EOS (tokenize with add_special = false).
    #[arg(long)]
    pub no_bos: bool,
    /// Recognize control tokens such as `<|user|>` in the text.
    #[arg(long)]
    pub parse_special: bool,
    /// Read the text from this file.
    #[arg(long, conflicts_with_all = ["text", "jsonl"])]
    pub file: Option<PathBuf>,
    /// Read one JSON string per line from stdin; print one JSON array of
    /// ids per line.
    #[arg(long, conflicts_with = "text")]
    pub jsonl: bool,
    /// The text (read from stdin when neither TEXT nor --file is given).
    pub text: Option<String>,
}

fn ids_json(ids: &[u32]) -> String {
    let items: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(", "))
}

pub fn run(args: Args) -> crate::CliResult {
    let path = args.model.required_path()?;
    let gguf = Gguf::open(&path)?;
    let tokenizer = Tokenizer::from_gguf(&gguf).map_err(|e| format!("{}: {e}", path.display()))?;
    let add_special = !args.no_bos;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();

    if args.jsonl {
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let text: String = serde_json::from_str(&line)
                .map_err(|e| format!("stdin line {}: not a JSON string: {e}", n + 1))?;
            let ids = tokenizer.encode(&text, add_special, args.parse_special);
            writeln!(out, "{}", ids_json(&ids))?;
        }
        out.flush()?;
        return Ok(());
    }

    let text = match (&args.text, &args.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?
        }
        (None, None) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let ids = tokenizer.encode(&text, add_special, args.parse_special);
    writeln!(out, "{}", ids_json(&ids))?;
    out.flush()?;
    Ok(())
}
