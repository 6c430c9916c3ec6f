//! ggml block formats: `#[repr(C)]` Pod block structs whose sizes equal
//! ggml's, scalar reference quantizers (bit-identical to ggml's `*_ref`
//! quantizers), dequantizers and the reference dot products the SIMD paths
//! are tested against.
//!
//! One module per type family. The K-quant / IQ4 formats live in
//! `k_quants.rs` / `iq4.rs` (see the crate README for how to plug them in).

pub mod float;
pub mod layout;
// Read only by the x86 packed kernels on other targets' builds too.
pub mod iq4;
pub mod k_quants;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) mod packed_layout;
pub mod q4_0;
pub mod q4_1;
pub mod q5_0;
pub mod q5_1;
pub mod q8_0;
pub mod q8_1;

pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q8_0::BlockQ8_0;
pub use q8_1::BlockQ8_1;

/// Elements per block of the 32-element formats (Q4_0 … Q8_1).
pub const QK: usize = 32;

/// Reads block `i` of type `B` from a byte slice with no alignment
/// requirement (GGUF data is aligned, but callers need not guarantee it).
///
/// Returns `None` when the slice is too short.
#[inline(always)]
pub(crate) fn read_block<B: bytemuck::Pod>(bytes: &[u8], i: usize) -> Option<B> {
    let sz = core::mem::size_of::<B>();
    let start = i.checked_mul(sz)?;
    let end = start.checked_add(sz)?;
    bytes.get(start..end).map(bytemuck::pod_read_unaligned)
}

/// The signed value of largest magnitude in `x` (the first one on ties),
/// and that magnitude, exactly as ggml's Q4_0/Q5_0 quantizers scan.
#[inline(always)]
pub(crate) fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Minimum and maximum as ggml's Q4_1/Q5_1 quantizers compute them.
#[inline(always)]
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `fmaxf(amax, fabsf(v))` over `x`.
#[inline(always)]
pub(crate) fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// C's `(int8_t)f` for the in-range values the quantizers produce
/// (truncation toward zero; Rust's `as` saturates instead of UB outside).
#[inline(always)]
pub(crate) fn trunc_i8(f: f32) -> i8 {
    f as i8
}
