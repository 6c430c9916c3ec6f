//! Fuzz target: parse arbitrary bytes as GGUF. A parse may fail (with a
//! typed error), but must never panic; when it succeeds, every metadata value
//! and tensor view must be usable, and writing the parsed content back must
//! give a file that parses to the same content (write is idempotent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gguf::{Gguf, GgufWriter, Value};

fn walk(key: &str, v: &Value, g: &Gguf) -> usize {
    let _ = v.to_string();
    let _ = (v.as_u64(), v.as_i64(), v.as_f64(), v.as_str(), v.as_bool());
    match v {
        Value::Array(ty, items) => {
            for item in items {
                assert_eq!(item.value_type(), *ty, "heterogeneous array in `{key}`");
            }
            items.iter().map(|i| 1 + walk(key, i, g)).sum()
        }
        _ => 1,
    }
}

fn rewrite(g: &Gguf) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.add_metadata(k.clone(), v.clone())
            .expect("parsed metadata must be writable");
    }
    for t in g.tensor_views() {
        w.add_tensor(t.name(), t.ggml_type(), t.dims(), t.data)
            .expect("parsed tensor must be writable");
    }
    w.to_bytes().expect("writing to a Vec cannot fail")
}

fuzz_target!(|data: &[u8]| {
    let g = match Gguf::from_bytes(data.to_vec()) {
        Ok(g) => g,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error message: {msg}");
            return;
        }
    };
    let _ = (
        g.version(),
        g.alignment(),
        g.architecture(),
        format!("{g:?}"),
    );
    for (k, v) in g.metadata() {
        walk(k, v, &g);
        assert!(g.get(k).is_some());
        let _ = (
            g.get_u32(k),
            g.get_u64(k),
            g.get_i32(k),
            g.get_f32(k),
            g.get_f64(k),
        );
        let _ = (
            g.get_bool(k),
            g.get_str(k),
            g.get_array(k),
            g.get_str_array(k),
        );
        let _ = (g.get_f32_array(k), g.get_i32_array(k), g.opt_usize(k));
    }
    let file_len = g.bytes().len() as u64;
    for t in g.tensors() {
        let v = g.tensor(&t.name).expect("listed tensor must be found");
        assert_eq!(v.data.len() as u64, t.n_bytes);
        assert_eq!(t.ggml_type.bytes_for(t.n_elements()), Some(t.n_bytes));
        assert!(g.data_offset() + t.offset + t.n_bytes <= file_len);
        assert_eq!(t.offset % g.alignment(), 0);
        // Touch every byte.
        let _ = v.data.iter().fold(0u8, |a, &b| a ^ b);
    }
    let once = rewrite(&g);
    let g2 = Gguf::from_bytes(once.clone()).expect("rewritten file must parse");
    assert_eq!(g2.tensors().len(), g.tensors().len());
    assert_eq!(g2.metadata().len(), g.metadata().len());
    assert_eq!(rewrite(&g2), once, "rewrite is not idempotent");
});
