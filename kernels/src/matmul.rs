//! The matmul driver: quantize activations once, then split the output rows
//! into chunks over the current rayon pool; each chunk calls the type's tile
//! function for all tokens at once (gemv when there is one token).

use crate::registry::{self as table, MatrixRef};
use crate::tile::MatArgs;
use crate::{dispatch, matrix_bytes, GgmlType, Isa, KernelError, Weights};
use rayon::prelude::*;

/// Activation rows start on 64-byte boundaries.
const ROW_ALIGN: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

// SAFETY: `Line` is a plain byte array with no padding (size 64 = its field).
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above; any bit pattern is valid and it is `Copy + 'static`.
unsafe impl bytemuck::Pod for Line {}

/// Reusable buffers for `matmul` (quantized activations, gemm staging), so
/// that the hot path never allocates after warm-up.
#[derive(Default)]
pub struct Scratch {
    pub(crate) act: Vec<Line>,
    pub(crate) out: Vec<f32>,
}

/// A 64-byte aligned byte buffer of exactly `n` bytes, grown as needed.
pub(crate) fn aligned_bytes(v: &mut Vec<Line>, n: usize) -> &mut [u8] {
    let lines = n.div_ceil(64);
    if v.len() < lines {
        v.resize(lines, Line([0; 64]));
    }
    &mut bytemuck::cast_slice_mut(&mut v[..lines])[..n]
}

/// Multiply-adds (rows·cols·tokens) below which a matmul runs on the
/// calling thread: tiny products
/// cost less than waking the pool.
const SEQ_WORK: usize = 1 << 16;

/// Bytes per row of `w`, after checking that `w.data` is exactly the
/// matrix its type and shape require.
pub(crate) fn check_weights(w: &Weights<'_>) -> Result<usize, KernelError> {
    let (w_row, w_total) = matrix_bytes(w.ty, w.rows, w.cols)?;
    if w.data.len() != w_total {
        return Err(KernelError::Shape(format!(
            "{} x {} {} weights need {w_total} bytes, got {}",
            w.rows,
            w.cols,
            w.ty,
            w.data.len()
        )));
    }
    Ok(w_row)
}

/// Checks `n_tokens × cols` activations and `n_tokens × rows` outputs.
pub(crate) fn check_io(
    rows: usize,
    cols: usize,
    n_tokens: usize,
    x_len: usize,
    y_len: usize,
) -> Result<(), KernelError> {
    let shape = |what: &str, need: Option<usize>, got: usize| match need {
        Some(n) if n == got => Ok(()),
        _ => Err(KernelError::Shape(format!(
            "{what}: expected {need:?} elements for {n_tokens} tokens, got {got}"
        ))),
    };
    shape("activations", n_tokens.checked_mul(cols), x_len)?;
    shape("output", n_tokens.checked_mul(rows), y_len)
}

/// Runs `run_chunk(c, o)` for every chunk `c` of `chunk_rows` rows (in
/// parallel unless `sequential`). One token (gemv) writes straight into `y`;
/// several tokens write a staging buffer laid out chunk by chunk
/// (`[chunk][token][row]`) that is then scattered to `y[t * rows + r]`.
/// Shared by the plain and the packed matmul drivers.
pub(crate) fn run_chunks(
    out: &mut Vec<f32>,
    y: &mut [f32],
    rows: usize,
    n_tokens: usize,
    chunk_rows: usize,
    sequential: bool,
    run_chunk: impl Fn(usize, &mut [f32]) + Sync,
) {
    if n_tokens == 1 {
        if sequential {
            run_chunk(0, y);
        } else {
            y.par_chunks_mut(chunk_rows)
                .enumerate()
                .for_each(|(c, o)| run_chunk(c, o));
        }
        return;
    }
    let total = rows * n_tokens;
    if out.len() < total {
        out.resize(total, 0.0);
    }
    let staging = &mut out[..total];
    if sequential {
        run_chunk(0, staging);
    } else {
        staging
            .par_chunks_mut(chunk_rows * n_tokens)
            .enumerate()
            .for_each(|(c, o)| run_chunk(c, o));
    }
    let staging: &[f32] = staging;
    let scatter = |t: usize, yt: &mut [f32]| {
        for (c, yc) in yt.chunks_mut(chunk_rows).enumerate() {
            let nr = yc.len();
            let base = c * chunk_rows * n_tokens + t * nr;
            yc.copy_from_slice(&staging[base..base + nr]);
        }
    };
    if sequential {
        for (t, yt) in y.chunks_mut(rows).enumerate() {
            scatter(t, yt);
        }
    } else {
        y.par_chunks_mut(rows)
            .enumerate()
            .for_each(|(t, yt)| scatter(t, yt));
    }
}

/// `y[t * rows + r] = Σ_c W[r, c] · x[t * cols + c]` for `t < n_tokens`,
/// for mapped [`Weights`] (`&w`), a prepared matrix (`m.view(bytes)?`, see
/// [`crate::prepare`]) or [`crate::packed::PackedWeights`].
///
/// Activations are quantized once to the weight type's partner (Q8_0 for
/// Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for K-quants, F16 for F16, BF16
/// for BF16) exactly as ggml does, then reused by every row. n_tokens == 1 is
/// gemv; more tokens take the tiled gemm path. Runs on the current rayon pool.
pub fn matmul<'a>(
    m: impl Into<MatrixRef<'a>>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    match m.into() {
        MatrixRef::Mapped(w, isa) => {
            let isa = isa.unwrap_or_else(dispatch::active);
            matmul_with_isa(isa, &w, x, n_tokens, y, scratch)
        }
        MatrixRef::Packed(p) => crate::packed::matmul_packed(p, x, n_tokens, y, scratch),
        MatrixRef::Streamed(s, w) => crate::packed::matmul_streamed(s, &w, x, n_tokens, y, scratch),
    }
}

/// [`matmul`] on a chosen instruction set (tests, benches), without
/// touching the process-wide choice.
pub fn matmul_with_isa(
    isa: Isa,
    w: &Weights<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    if !dispatch::is_available(isa) {
        return Err(KernelError::IsaUnavailable(isa.name()));
    }
    let ops = table::ops(w.ty, isa).ok_or(KernelError::Unsupported(w.ty))?;
    let (rows, cols) = (w.rows, w.cols);
    let w_row = check_weights(w)?;
    check_io(rows, cols, n_tokens, x.len(), y.len())?;
    if n_tokens == 0 || rows == 0 {
        return Ok(());
    }
    if cols == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let (a_row, _) = matrix_bytes(ops.act, 1, cols)?;
    let a_stride = a_row
        .checked_next_multiple_of(ROW_ALIGN)
        .ok_or_else(|| KernelError::Shape("activation row overflows".into()))?;
    let a_total = a_stride
        .checked_mul(n_tokens)
        .ok_or_else(|| KernelError::Shape("activations overflow".into()))?;

    // 1. Quantize every token's activations once.
    let Scratch { act, out } = scratch;
    let abuf = aligned_bytes(act, a_total);
    if n_tokens > 1 && cols * n_tokens >= SEQ_WORK {
        abuf.par_chunks_mut(a_stride)
            .zip(x.par_chunks(cols))
            .for_each(|(o, xt)| (ops.quantize_act)(xt, &mut o[..a_row]));
    } else {
        for (o, xt) in abuf.chunks_mut(a_stride).zip(x.chunks(cols)) {
            (ops.quantize_act)(xt, &mut o[..a_row]);
        }
    }
    let a: &[u8] = abuf;

    // 2. Rows in chunks, all tokens per chunk.
    let full = MatArgs {
        n: cols,
        w: w.data,
        w_stride: w_row,
        nr: rows,
        a,
        a_stride,
        nt: n_tokens,
    };
    if !full.is_valid(w_row, a_row, y.len()) {
        return Err(KernelError::Shape("inconsistent matmul arguments".into()));
    }
    let threads = rayon::current_num_threads().max(1);
    let work = rows.saturating_mul(cols).saturating_mul(n_tokens);
    let sequential = threads == 1 || work < SEQ_WORK;
    let chunk_rows = if sequential {
        rows
    } else {
        rows.div_ceil(threads * 4).next_multiple_of(16).max(16)
    };
    let run_chunk = |c: usize, o: &mut [f32]| {
        let r0 = c * chunk_rows;
        let nr = chunk_rows.min(rows - r0);
        let args = MatArgs {
            w: &w.data[r0 * w_row..],
            nr,
            ..full
        };
        debug_assert!(args.is_valid(w_row, a_row, o.len()));
        // SAFETY: `ops` came from `table::ops` for an ISA that
        // `dispatch::is_available` confirmed above; `args` is a row range of
        // `full`, which was checked valid, and `o` holds `nr * n_tokens` floats.
        unsafe { (ops.mat)(&args, o) };
    };

    run_chunks(out, y, rows, n_tokens, chunk_rows, sequential, run_chunk);
    Ok(())
}

/// Quantizes `x` to the activation format of weights of `ty` with the same
/// function `matmul` uses (tests, and callers that cache activations).
pub fn quantize_activations(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, KernelError> {
    let ops = table::ops(ty, Isa::Scalar).ok_or(KernelError::Unsupported(ty))?;
    let (n, _) = matrix_bytes(ops.act, 1, x.len())?;
    let mut buf = vec![0u8; n];
    if n > 0 {
        // Byte quantizers cast to blocks; use an aligned copy.
        let mut lines = Vec::new();
        let b = aligned_bytes(&mut lines, n);
        (ops.quantize_act)(x, b);
        buf.copy_from_slice(b);
    }
    Ok(buf)
}
