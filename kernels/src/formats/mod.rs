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

/// Byte-level dequantizer (any alignment) over the slice dequantizer `row`
/// of block type `B`: `src` holds `dst.len() / per_block` blocks; values
/// whose block `src` lacks are left as they are.
#[inline(always)]
pub(crate) fn dequantize_blocks<B: bytemuck::Pod>(
    src: &[u8],
    dst: &mut [f32],
    per_block: usize,
    row: impl Fn(&[B], &mut [f32]),
) {
    for (i, out) in dst.chunks_exact_mut(per_block).enumerate() {
        if let Some(b) = read_block::<B>(src, i) {
            row(core::slice::from_ref(&b), out);
        }
    }
}

/// Byte-level reference dot (any alignment) of `n` elements: the slice
/// reference dot `dot` block by block, summed in f32 in block order (the
/// same arithmetic as `dot` over the whole slice); stops at the first block
/// either side lacks.
#[inline(always)]
pub(crate) fn vec_dot_blocks<W: bytemuck::Pod, A: bytemuck::Pod>(
    n: usize,
    w: &[u8],
    a: &[u8],
    per_block: usize,
    dot: impl Fn(&[W], &[A]) -> f32,
) -> f32 {
    let mut sum = 0.0f32;
    for i in 0..n / per_block {
        let (Some(wb), Some(ab)) = (read_block::<W>(w, i), read_block::<A>(a, i)) else {
            break;
        };
        sum += dot(core::slice::from_ref(&wb), core::slice::from_ref(&ab));
    }
    sum
}

/// One block of the Q8_0 / Q8_1 quantizers: fills `q` and returns the f32
/// scale `d = amax / 127`. The reference flavour (ggml's `*_ref`) multiplies
/// by `1 / d` and rounds half away from zero; the activation flavour (`act`,
/// ggml-cpu's x86 path) multiplies by `127 / amax` and rounds half to even.
#[inline(always)]
pub(crate) fn quantize_q8_block(x: &[f32], q: &mut [i8; QK], act: bool) -> f32 {
    let amax = abs_max(x);
    let d = amax / 127.0;
    if act {
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        for (q, &v) in q.iter_mut().zip(x) {
            *q = (v * id).round_ties_even() as i8;
        }
    } else {
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in q.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
    d
}

/// One block of the Q4_0 / Q5_0 quantizers (ggml's `*_ref`): `d = max /
/// -half` with `max` the signed value of largest magnitude, quants
/// `min(trunc(x / d + half + 0.5), 2·half − 1)`. Returns `d` and the quants.
#[inline(always)]
pub(crate) fn quantize_signed_block(x: &[f32], half: i8) -> (f32, [u8; QK]) {
    let (max, _) = signed_absmax(x);
    let d = max / -(half as f32);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let offset = half as f32 + 0.5;
    let q = core::array::from_fn(|j| trunc_i8(x[j] * id + offset).min(2 * half - 1) as u8);
    (d, q)
}

/// One block of the Q4_1 / Q5_1 quantizers (ggml's `*_ref`): `d = (max −
/// min) / nmax`, quants `to_q((x − min) / d + 0.5)` (the two types convert
/// to an integer differently). Returns `d`, `min` and the quants.
#[inline(always)]
pub(crate) fn quantize_min_block(
    x: &[f32],
    nmax: f32,
    to_q: impl Fn(f32) -> u8,
) -> (f32, f32, [u8; QK]) {
    let (min, max) = min_max(x);
    let d = (max - min) / nmax;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = core::array::from_fn(|j| to_q((x[j] - min) * id + 0.5));
    (d, min, q)
}

/// Packs 32 quants the ggml way: the low nibble of `q[j]` into the low
/// nibble of `qs[j]`, that of `q[j + 16]` into the high nibble. Returns the
/// fifth bits (bit `j` = bit 4 of `q[j]`), Q5_0 / Q5_1's `qh`.
#[inline(always)]
pub(crate) fn pack_nibbles(q: &[u8; QK], qs: &mut [u8; QK / 2]) -> u32 {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (q0, q1) = (q[j], q[j + QK / 2]);
        qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= (((q0 & 0x10) >> 4) as u32) << j;
        qh |= (((q1 & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    qh
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
