//! The contracts every kernel implements, below both the registry and the
//! ISA modules (which import this, never each other): the plain tile
//! function ([`MatFn`] over [`MatArgs`]) and the packed group tile
//! ([`PackedTileFn`] over [`PackedTile`]).

/// Quantizes one activation row `x` (`cols` floats) into `out`
/// (`act.bytes_for(cols)` bytes, 64-byte aligned).
pub type QuantizeActFn = fn(x: &[f32], out: &mut [u8]);

/// Dequantizes `dst.len()` elements from the start of `src` (any alignment).
pub type DequantizeFn = fn(src: &[u8], dst: &mut [f32]);

/// Arguments of a tile function: `nr` weight rows × `nt` activation rows.
#[derive(Clone, Copy, Debug)]
pub struct MatArgs<'a> {
    /// Elements per row (a multiple of the type's block size).
    pub n: usize,
    /// `nr` weight rows, `w_stride` bytes apart.
    pub w: &'a [u8],
    pub w_stride: usize,
    pub nr: usize,
    /// `nt` quantized activation rows, `a_stride` bytes apart.
    pub a: &'a [u8],
    pub a_stride: usize,
    pub nt: usize,
}

impl MatArgs<'_> {
    /// Whether every row the tile may read lies inside the slices and `out`
    /// can hold `nr * nt` results. SIMD tile functions rely on this.
    pub fn is_valid(&self, w_row_bytes: usize, a_row_bytes: usize, out_len: usize) -> bool {
        let fits = |len: usize, stride: usize, rows: usize, row_bytes: usize| {
            rows == 0
                || (stride >= row_bytes
                    && (rows - 1)
                        .checked_mul(stride)
                        .and_then(|v| v.checked_add(row_bytes))
                        .is_some_and(|end| end <= len))
        };
        fits(self.w.len(), self.w_stride, self.nr, w_row_bytes)
            && fits(self.a.len(), self.a_stride, self.nt, a_row_bytes)
            && self.nr.checked_mul(self.nt).is_some_and(|v| v <= out_len)
    }
}

/// Computes `out[t * nr + r] = dot(weight row r, activation row t)`.
///
/// # Safety
///
/// The CPU must support the instruction set the function was compiled for
/// ([`crate::table::ops`] only returns functions whose ISA [`crate::dispatch::is_available`]
/// reported), and `args.is_valid(ty.bytes_for(n), act.bytes_for(n), out.len())`
/// must hold.
pub type MatFn = unsafe fn(args: &MatArgs<'_>, out: &mut [f32]);

/// Where one call of a packed group tile reads and writes: 16 interleaved
/// weight rows (one group of a [`crate::packed::PackedWeights`]) × `nt`
/// activation rows.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct PackedTile {
    /// Blocks (32-element types) or super-blocks (K-quants) per row.
    pub nb: usize,
    /// The group's packed quant vectors (K-quants: its `nb` records).
    pub qs: *const u8,
    /// The group's scales (32-element types; unused by the K-quant records,
    /// which carry their scales).
    pub sc: *const u8,
    /// First activation row: `nb` activation blocks, then at `side_off` the
    /// per-block side words (`crate::packed_layout`).
    pub a: *const u8,
    pub a_stride: usize,
    pub side_off: usize,
    /// `out[t * out_stride + r]` for `r < 16`, `t < nt`.
    pub out: *mut f32,
    pub out_stride: usize,
}

impl PackedTile {
    /// Token `t`'s activation row and block `b`'s side words of a 32-element
    /// type: `(row, d_a, isum start, s_a)`; with a min the words are
    /// `(d_a, s_a)` and the integer sum starts at 0, otherwise `(d_a,
    /// −bias·Σa)` and `s_a` is 0.
    ///
    /// # Safety
    /// Token `t`'s 8 side bytes of block `b` are readable (the tile contract).
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) unsafe fn side32(
        &self,
        t: usize,
        b: usize,
        has_min: bool,
    ) -> (*const u8, f32, i32, f32) {
        // SAFETY: per the contract; unaligned reads.
        unsafe {
            let row = self.a.add(t * self.a_stride);
            let side = row.add(self.side_off + b * 8);
            let da = core::ptr::read_unaligned(side as *const f32);
            let (init, sa) = if has_min {
                (0, core::ptr::read_unaligned(side.add(4) as *const f32))
            } else {
                (core::ptr::read_unaligned(side.add(4) as *const i32), 0.0)
            };
            (row, da, init, sa)
        }
    }
}

/// Computes 16 rows × `nt` tokens (`1 <= nt <=` the entry's tile width) of
/// one packed row group.
///
/// # Safety
///
/// The CPU has the ISA the function was built for (the registry only hands
/// out entries whose ISA runs here), and `tile` describes readable packed
/// data, activation rows (with their side words) and 16 writable floats per
/// token, laid out as `crate::packed` documents for the weight type.
pub(crate) type PackedTileFn = unsafe fn(tile: &PackedTile, nt: usize);

/// Packs one 16-row group of a 32-element type: 16 file rows of `nb`
/// blocks at `src`, `w_row` bytes apart, into `nb` blocks of packed quants
/// at `qs` and scales at `sc` (the bytes `crate::packed` documents),
/// prefetching the `next_len` bytes at `next` (the next group's rows; a
/// hint, any address) meanwhile.
///
/// # Safety
///
/// The CPU has the function's ISA (`crate::arch::group_packer` only hands
/// out runnable ones); the 16 rows are readable and `nb · quant_bytes` /
/// `nb · scale_bytes` bytes writable at `qs` / `sc`.
pub(crate) type GroupPackFn = unsafe fn(
    src: *const u8,
    w_row: usize,
    nb: usize,
    qs: *mut u8,
    sc: *mut u8,
    next: *const u8,
    next_len: usize,
);
