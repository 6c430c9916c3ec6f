//! Writes the full-size synthetic Phi-3-mini (random weights, see
//! `phi::synthetic`) with the tokenizer of a real vocabulary GGUF, for
//! benchmarks whose cost depends on the vocabulary (structured output):
//!
//! ```sh
//! cargo run --release -p phi --example synthetic_with_vocab -- \
//!     OUT.gguf tests/fixtures/vocab/ggml-vocab-phi-3.gguf [q4_0]
//! ```
//!
//! The weights are written to `OUT.gguf.tmp` first, then copied tensor by
//! tensor next to the vocabulary's `tokenizer.*` keys (peak disk: twice the
//! model).

use phi::synthetic::{self, SyntheticSpec};
use phi_gguf::{GgmlType, Gguf, GgufWriter};
use std::io::BufWriter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, vocab, rest @ ..] = args.as_slice() else {
        return Err("usage: synthetic_with_vocab OUT.gguf VOCAB.gguf [TYPE]".into());
    };
    let ty_name = rest.first().map_or("q4_0", String::as_str);
    let ty = GgmlType::from_name(&ty_name.to_ascii_uppercase())
        .ok_or_else(|| format!("unknown type `{ty_name}`"))?;
    let vocab = Gguf::open(vocab)?;
    let n_vocab = vocab.get_array("tokenizer.ggml.tokens")?.len();
    let spec = SyntheticSpec {
        n_vocab,
        ..SyntheticSpec::phi3_mini(ty)
    };
    let tmp = format!("{out}.tmp");
    eprintln!("writing random weights to {tmp} ...");
    synthetic::write(&spec, BufWriter::new(std::fs::File::create(&tmp)?))?;
    let weights = Gguf::open(&tmp)?;
    let mut w = GgufWriter::new();
    for (k, v) in weights.metadata() {
        if !k.starts_with("tokenizer.") {
            w.add_metadata(k.clone(), v.clone())?;
        }
    }
    for (k, v) in vocab.metadata() {
        if k.starts_with("tokenizer.") {
            w.add_metadata(k.clone(), v.clone())?;
        }
    }
    let names: Vec<String> = weights.tensors().iter().map(|t| t.name.clone()).collect();
    for t in weights.tensors() {
        w.add_tensor_deferred(t.name.clone(), t.ggml_type, &t.dims)?;
    }
    eprintln!("writing {out} ...");
    w.write_to_with(BufWriter::new(std::fs::File::create(out)?), |i, _| {
        Ok(weights.tensor(&names[i])?.data.to_vec())
    })?;
    std::fs::remove_file(&tmp)?;
    Ok(())
}
