//! Writes the full-size synthetic Phi-3-mini (random weights, see
//! `phi::synthetic`) with the tokenizer of a real vocabulary GGUF, for
//! benchmarks whose cost depends on the vocabulary (structured output):
//!
//! ```sh
//! cargo run --release -p phi --example synthetic_with_vocab -- \
//!     OUT.gguf tests/fixtures/vocab/ggml-vocab-phi-3.gguf [q4_0] [SHAPE]
//! ```
//!
//! SHAPE is `mini` (Phi-3-mini's, the default) or `WIDTHxLAYERS` (e.g.
//! `1024x8`: a smaller Phi-3, 64-wide heads) for quick runs where the cost of
//! the vocabulary matters more.
//!
//! The weights are written to `OUT.gguf.tmp` first, then copied tensor by
//! tensor next to the vocabulary's `tokenizer.*` keys (peak disk: twice the
//! model).

use phi::synthetic::{self, SyntheticSpec};
use phi_gguf::{GgmlType, Gguf};
use std::io::BufWriter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, vocab, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: synthetic_with_vocab OUT.gguf VOCAB.gguf [TYPE] [mini|WIDTHxLAYERS]".into(),
        );
    };
    let ty_name = rest.first().map_or("q4_0", String::as_str);
    let ty = GgmlType::from_name(&ty_name.to_ascii_uppercase())
        .ok_or_else(|| format!("unknown type `{ty_name}`"))?;
    let vocab = Gguf::open(vocab)?;
    let n_vocab = vocab.get_array("tokenizer.ggml.tokens")?.len();
    let mini = SyntheticSpec::phi3_mini(ty);
    let spec = match rest.get(1).map(String::as_str) {
        None | Some("mini") => SyntheticSpec { n_vocab, ..mini },
        Some(shape) => {
            let bad = || {
                format!("shape `{shape}`: expected mini or WIDTHxLAYERS (WIDTH a multiple of 64)")
            };
            let (w, l) = shape.split_once('x').ok_or_else(bad)?;
            let (n_embd, n_layer): (usize, usize) = (w.parse()?, l.parse()?);
            if n_embd == 0 || n_embd % 64 != 0 || n_layer == 0 {
                return Err(bad().into());
            }
            SyntheticSpec {
                n_vocab,
                n_embd,
                n_ff: (n_embd * 8 / 3).next_multiple_of(256),
                n_layer,
                n_head: n_embd / 64,
                n_head_kv: n_embd / 64,
                n_rot: 64,
                ..mini
            }
        }
    };
    let tmp = format!("{out}.tmp");
    eprintln!("writing random weights to {tmp} ...");
    synthetic::write(&spec, BufWriter::new(std::fs::File::create(&tmp)?))?;
    let weights = Gguf::open(&tmp)?;
    eprintln!("writing {out} ...");
    synthetic::write_with_vocab(
        &weights,
        &vocab,
        BufWriter::new(std::fs::File::create(out)?),
    )?;
    std::fs::remove_file(&tmp)?;
    Ok(())
}
