//! Fuzz target: the C API's string inputs (tokenize, chat template, model
//! path) with arbitrary bytes, NUL-terminated as C would pass them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi::ffi::*;
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

struct Handle(*mut phi_model);
// SAFETY: a loaded model is read-only and may be shared between threads (phi.h).
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

fn model() -> *const phi_model {
    static M: OnceLock<Handle> = OnceLock::new();
    M.get_or_init(|| {
        let path = CString::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/models/phi3-tiny-q8_0.gguf")).unwrap();
        let mut m = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated path, default params, writable out.
        assert_eq!(unsafe { phi_model_load(path.as_ptr(), std::ptr::null(), &mut m) }, phi_status::PHI_OK);
        Handle(m)
    })
    .0
}

fuzz_target!(|data: &[u8]| {
    let s: Vec<u8> = data.iter().copied().filter(|&b| b != 0).collect();
    let c = CString::new(s).unwrap();
    let m = model();
    let mut ids = [0i32; 256];
    let mut n = 0usize;
    // SAFETY: live model, NUL-terminated text, 256 writable ids, writable n.
    let st = unsafe { phi_tokenize(m, c.as_ptr(), true, true, ids.as_mut_ptr(), ids.len(), &mut n) };
    if st == phi_status::PHI_OK {
        let mut buf = vec![0 as c_char; 4096];
        let mut len = 0usize;
        // SAFETY: n ≤ 256 readable ids; buf has 4096 writable bytes.
        let _ = unsafe { phi_detokenize(m, ids.as_ptr(), n, false, buf.as_mut_ptr(), buf.len(), &mut len) };
    }
    let msg = [phi_chat_message { role: c.as_ptr(), content: c.as_ptr() }];
    let mut len = 0usize;
    // SAFETY: one readable message of NUL-terminated strings; no buffer (length only).
    let _ = unsafe { phi_chat_apply_template(m, msg.as_ptr(), 1, true, std::ptr::null_mut(), 0, &mut len) };
    let mut out = std::ptr::null_mut();
    // SAFETY: NUL-terminated path; writable out; a model that loads is freed.
    if unsafe { phi_model_load(c.as_ptr(), std::ptr::null(), &mut out) } == phi_status::PHI_OK {
        // SAFETY: a live handle from phi_model_load, freed once.
        unsafe { phi_model_free(out) };
    }
});
