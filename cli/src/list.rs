//! `phi list`: the GGUF models in the Hugging Face cache.

use phi_gguf::Gguf;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object per model.
    #[arg(long)]
    pub json: bool,
}

/// The file's declared type, else the type holding most weight bytes.
fn model_type(g: &Gguf) -> String {
    let mut by_type: Vec<(phi_gguf::GgmlType, u64)> = Vec::new();
    for t in g.tensors().iter().filter(|t| t.dims.len() >= 2) {
        match by_type.iter_mut().find(|(ty, _)| *ty == t.ggml_type) {
            Some((_, b)) => *b += t.n_bytes,
            None => by_type.push((t.ggml_type, t.n_bytes)),
        }
    }
    let declared = g
        .opt_u32("general.file_type")
        .ok()
        .flatten()
        .and_then(phi_gguf::FileType::from_id)
        .map(phi_gguf::FileType::name);
    declared
        .map(str::to_string)
        .or_else(|| {
            by_type
                .iter()
                .max_by_key(|(_, b)| *b)
                .map(|(t, _)| t.name().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

pub fn run(args: Args) -> crate::CliResult {
    let models = crate::hub::cached_models();
    if models.is_empty() && !args.json {
        println!(
            "no GGUF models in {} (download one with `phi pull hf:OWNER/REPO/FILE.gguf`)",
            crate::hub::cache_dir().display()
        );
        return Ok(());
    }
    for m in models {
        let (ty, arch) = match Gguf::open(&m.path) {
            Ok(g) => (model_type(&g), g.architecture().unwrap_or("?").to_string()),
            Err(_) => ("unreadable".to_string(), "?".to_string()),
        };
        if args.json {
            let v = json!({
                "reference": m.reference,
                "path": m.path,
                "size_bytes": m.size,
                "type": ty,
                "architecture": arch,
            });
            println!("{v}");
        } else {
            // The file's architecture and the cached names are not ours.
            println!(
                "{:<70} {:>10} {:<8} {}",
                crate::show::escaped(&m.reference),
                format!("{:.2} GiB", m.size as f64 / (1u64 << 30) as f64),
                ty,
                crate::show::shortened(&arch, 64)
            );
        }
    }
    Ok(())
}
