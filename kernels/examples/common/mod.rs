//! Helpers shared by the kernels' examples.

use phi_kernels::{quantize_row, GgmlType};

/// `rows` × `cols` weights of `ty`: `seed_rows` distinct quantized rows of
/// hashed values in [-1, 1), repeated (cheap to make at hundreds of MiB).
pub fn matrix(ty: GgmlType, rows: usize, cols: usize, seed_rows: usize) -> Vec<u8> {
    let row_bytes = ty.bytes_for(cols as u64).expect("row size") as usize;
    let mut seed = vec![0u8; seed_rows.min(rows).max(1) * row_bytes];
    let mut x = vec![0f32; cols];
    for (r, out) in seed.chunks_exact_mut(row_bytes).enumerate() {
        for (c, v) in x.iter_mut().enumerate() {
            let h = (r * cols + c).wrapping_mul(2_654_435_761) % 10_007;
            *v = h as f32 / 5003.5 - 1.0;
        }
        quantize_row(ty, &x, out).expect("quantize");
    }
    seed.iter()
        .copied()
        .cycle()
        .take(rows * row_bytes)
        .collect()
}
