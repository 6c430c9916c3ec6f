//! Small vector ops for attention and elementwise work (SIMD-dispatched).
//!
//! Lengths must match (a mismatch is a caller bug and panics, like
//! `copy_from_slice`). Sums are in f32; SIMD paths sum in a different order
//! than the scalar loop (difference bounded by n·ε·Σ|aᵢbᵢ|).

use crate::formats::layout::Q8_0_BYTES;
use crate::{dispatch, Isa};
use half::f16;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

/// The vec functions of one ISA (the scalar references where an ISA has no
/// body of its own).
///
/// # Safety (of every field)
///
/// The CPU runs the ISA the table was built for (`crate::arch::vec_ops`
/// only builds tables for available ISAs), and the lengths were checked by
/// the public wrapper.
#[derive(Clone, Copy)]
pub(crate) struct VecOps {
    pub dot_f32: unsafe fn(&[f32], &[f32]) -> f32,
    pub dot_f16_f32: unsafe fn(&[f16], &[f32]) -> f32,
    pub axpy_f32: unsafe fn(&mut [f32], f32, &[f32]),
    pub axpy_f16: unsafe fn(&mut [f32], f32, &[f16]),
    pub dot_q8_0_f32: unsafe fn(&[u8], &[f32]) -> f32,
    pub axpy_q8_0: unsafe fn(&mut [f32], f32, &[u8]),
    /// `s ← exp(s − max s)`, returns Σ s ([`crate::attn`]'s softmax).
    pub exp_sum: unsafe fn(&mut [f32]) -> f32,
    /// The f16-KV attention body for one group, if the ISA has one, for
    /// head sizes that are multiples of `attn_f16_dim`.
    pub attn_f16: Option<unsafe fn(crate::attn::Group<'_>)>,
    pub attn_f16_dim: usize,
}

/// The scalar table.
pub(crate) const SCALAR: VecOps = VecOps {
    dot_f32: scalar::dot_f32,
    dot_f16_f32: scalar::dot_f16_f32,
    axpy_f32: scalar::axpy_f32,
    axpy_f16: scalar::axpy_f16,
    dot_q8_0_f32: scalar::dot_q8_0_f32,
    axpy_q8_0: scalar::axpy_q8_0,
    exp_sum: crate::attn::scalar::exp_sum,
    attn_f16: None,
    attn_f16_dim: 1,
};

/// The table in use (memchr's "ifunc"): null until the first call, then
/// the table of [`dispatch::active`]; [`dispatch::force`] resets it.
static CURRENT: AtomicPtr<VecOps> = AtomicPtr::new(core::ptr::null_mut());

/// Forgets the cached table (the active ISA changed).
pub(crate) fn reset() {
    CURRENT.store(core::ptr::null_mut(), Ordering::Relaxed);
}

#[inline]
pub(crate) fn ops() -> &'static VecOps {
    let p = CURRENT.load(Ordering::Relaxed);
    if !p.is_null() {
        // SAFETY: CURRENT only ever holds null or a pointer made from a
        // `&'static VecOps` below (never written through).
        return unsafe { &*p };
    }
    static TABLES: [OnceLock<VecOps>; Isa::ALL.len()] = [const { OnceLock::new() }; Isa::ALL.len()];
    let isa = dispatch::active();
    let i = Isa::ALL.iter().position(|&x| x == isa).unwrap_or(0);
    let t: &'static VecOps = TABLES[i].get_or_init(|| crate::arch::vec_ops(isa).unwrap_or(SCALAR));
    CURRENT.store(t as *const VecOps as *mut VecOps, Ordering::Relaxed);
    t
}

/// Σ a·b.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32 length mismatch");
    // SAFETY: the table's ISA runs here (`VecOps`); lengths are equal.
    unsafe { (ops().dot_f32)(a, b) }
}

/// Σ f32(a)·b.
pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f16_f32 length mismatch");
    // SAFETY: the table's ISA runs here (`VecOps`); lengths are equal.
    unsafe { (ops().dot_f16_f32)(a, b) }
}

/// y += alpha * x
pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len(), "axpy_f32 length mismatch");
    // SAFETY: the table's ISA runs here (`VecOps`); lengths are equal.
    unsafe { (ops().axpy_f32)(y, alpha, x) }
}

/// y += alpha * x
pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
    assert_eq!(y.len(), x.len(), "axpy_f16 length mismatch");
    // SAFETY: the table's ISA runs here (`VecOps`); lengths are equal.
    unsafe { (ops().axpy_f16)(y, alpha, x) }
}

/// `Σ dequant(k)·b` for `k` holding `b.len() / 32` Q8_0 blocks (a quantized
/// KV-cache row): per block `d · Σ q·b`.
///
/// Panics if `b.len()` is not a multiple of 32 or `k` is shorter than the blocks.
pub fn dot_q8_0_f32(k: &[u8], b: &[f32]) -> f32 {
    assert!(b.len().is_multiple_of(32) && k.len() >= b.len() / 32 * Q8_0_BYTES);
    // SAFETY: the table's ISA runs here (`VecOps`); block counts checked above.
    unsafe { (ops().dot_q8_0_f32)(k, b) }
}

/// `y += alpha · dequant(k)` for `k` holding `y.len() / 32` Q8_0 blocks.
///
/// Panics if `y.len()` is not a multiple of 32 or `k` is shorter than the blocks.
pub fn axpy_q8_0(y: &mut [f32], alpha: f32, k: &[u8]) {
    assert!(y.len().is_multiple_of(32) && k.len() >= y.len() / 32 * Q8_0_BYTES);
    // SAFETY: the table's ISA runs here (`VecOps`); block counts checked above.
    unsafe { (ops().axpy_q8_0)(y, alpha, k) }
}

#[cfg(test)]
mod q8_0_tests {
    #[test]
    fn q8_0_row_ops_match_dequantized_f32() {
        let x: Vec<f32> = (0..96).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..96).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut k = vec![0u8; 3 * super::Q8_0_BYTES];
        crate::quantize_row(crate::GgmlType::Q8_0, &x, &mut k).unwrap();
        let mut deq = vec![0f32; 96];
        crate::dequantize_row(crate::GgmlType::Q8_0, &k, &mut deq).unwrap();
        let want: f32 = deq.iter().zip(&b).map(|(p, q)| p * q).sum();
        assert!((super::dot_q8_0_f32(&k, &b) - want).abs() < 1e-4);
        let mut y = b.clone();
        super::axpy_q8_0(&mut y, 0.5, &k);
        for ((o, d), b) in y.iter().zip(&deq).zip(&b) {
            assert!((o - (b + 0.5 * d)).abs() < 1e-6);
        }
    }
}

/// Scalar references.
pub mod scalar {
    use half::f16;

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0.0, |s, (x, y)| s + x * y)
    }
    pub fn dot_f16_f32(a: &[f16], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0.0, |s, (x, y)| s + x.to_f32() * y)
    }
    pub fn axpy_f32(y: &mut [f32], alpha: f32, x: &[f32]) {
        for (o, v) in y.iter_mut().zip(x) {
            *o += alpha * v;
        }
    }
    pub fn axpy_f16(y: &mut [f32], alpha: f32, x: &[f16]) {
        for (o, v) in y.iter_mut().zip(x) {
            *o += alpha * v.to_f32();
        }
    }
    /// Σ over the `b.len() / 32` Q8_0 blocks of `k` of `d · Σ q·b`.
    pub fn dot_q8_0_f32(k: &[u8], b: &[f32]) -> f32 {
        let mut total = 0f32;
        for (blk, x) in k.chunks_exact(super::Q8_0_BYTES).zip(b.chunks_exact(32)) {
            let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            let s: f32 = blk[2..]
                .iter()
                .zip(x)
                .map(|(&q, &v)| q as i8 as f32 * v)
                .sum();
            total += d * s;
        }
        total
    }
    /// y += alpha · dequant(k) over the `y.len() / 32` Q8_0 blocks of `k`.
    pub fn axpy_q8_0(y: &mut [f32], alpha: f32, k: &[u8]) {
        for (blk, o) in k
            .chunks_exact(super::Q8_0_BYTES)
            .zip(y.chunks_exact_mut(32))
        {
            let a = alpha * f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            for (v, &q) in o.iter_mut().zip(&blk[2..]) {
                *v += a * (q as i8 as f32);
            }
        }
    }
}
