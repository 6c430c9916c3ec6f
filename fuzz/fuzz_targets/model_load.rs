//! Fuzz target: a good synthetic model whose metadata values and tensor
//! shapes are rewritten by the input (lying dims, head counts, rope
//! parameters, vocab sizes, types). Loading must give a model or a typed
//! error; a model that loads must run a few tokens in a small context.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi::synthetic::{build, SyntheticSpec};
use phi::{Context, ContextParams, Model, ModelOptions};
use phi_gguf::{GgmlType, Gguf, GgufWriter, Value};
use std::sync::{Arc, OnceLock};

fn base() -> &'static Gguf {
    static BASE: OnceLock<Gguf> = OnceLock::new();
    BASE.get_or_init(|| {
        let spec = SyntheticSpec { n_layer: 1, ..SyntheticSpec::tiny_phi3() };
        Gguf::from_bytes(build(&spec).unwrap()).unwrap()
    })
}

fn value_from(bytes: &[u8], like: &Value) -> Value {
    let mut b = [0u8; 8];
    b[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
    let v = u64::from_le_bytes(b);
    match like {
        Value::F32(_) => Value::F32(f32::from_bits(v as u32)),
        Value::Bool(_) => Value::Bool(v & 1 == 1),
        Value::String(_) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        _ => Value::U64(v >> (v as u32 % 64)),
    }
}

fuzz_target!(|data: &[u8]| {
    let g = base();
    let mut w = GgufWriter::new();
    // Each 10-byte chunk: [0] picks a metadata key, [1] picks a tensor, [2..10] a value.
    let chunks: Vec<&[u8]> = data.chunks(10).take(8).collect();
    let meta = g.metadata();
    for (i, (k, v)) in meta.iter().enumerate() {
        let new = chunks
            .iter()
            .find(|c| c.len() > 2 && c[0] as usize % meta.len() == i && c[1] & 1 == 0)
            .map(|c| value_from(&c[2..], v));
        if w.add_metadata(k.clone(), new.unwrap_or_else(|| v.clone())).is_err() {
            return;
        }
    }
    let tensors = g.tensors();
    for (i, t) in tensors.iter().enumerate() {
        let mut dims = t.dims.clone();
        let mut ty = t.ggml_type;
        if let Some(c) = chunks.iter().find(|c| c.len() > 3 && c[1] as usize % tensors.len() == i && c[1] & 1 == 1) {
            let d = c[2] as usize % dims.len();
            dims[d] = (c[3] as u64) << (c[2] % 8);
            if c.len() > 4 && c[4] > 200 {
                ty = GgmlType::from_id(u32::from(c[4] % 40)).unwrap_or(ty);
            }
        }
        let n: u64 = dims.iter().product();
        let Some(bytes) = ty.bytes_for(n).filter(|b| *b < 1 << 24) else { return };
        let mut buf = g.tensor(&t.name).unwrap().data.to_vec();
        buf.resize(bytes as usize, 0);
        if w.add_tensor(t.name.clone(), ty, &dims, buf).is_err() {
            return;
        }
    }
    let Ok(file) = Gguf::from_bytes(w.to_bytes().unwrap()) else { return };
    let Ok(model) = Model::from_gguf_with(file, &ModelOptions { repack: false }) else { return };
    let model = Arc::new(model);
    let p = ContextParams { n_ctx: 16, n_threads: 1, max_memory: 64 << 20, ..Default::default() };
    if let Ok(mut ctx) = Context::new(model, &p) {
        let _ = ctx.eval(&[1, 2, 3], true);
        let _ = ctx.eval(&[4], false);
    }
});
