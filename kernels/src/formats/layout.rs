//! One typed description per block format, taken from the block structs
//! (`size_of`, `offset_of!`), so that no other module retypes a block size
//! or a field offset: [`BlockLayout`] for every type the kernels run
//! ([`layout`]), and [`Block32`], the one numbering of the 32-element
//! quantized types that the const-generic SIMD bodies are instantiated for.

use super::iq4::{BlockIQ4_NL, BlockIQ4_XS};
use super::k_quants::{BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K};
use super::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use crate::GgmlType;
use core::mem::{offset_of, size_of};

/// How one block of a format is laid out and what it pairs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    pub ty: GgmlType,
    /// Bytes of one block.
    pub bytes: usize,
    /// Values (elements) of one block.
    pub values: usize,
    /// Whether the block carries a min (`x = d·q + m`), so that its
    /// activation partner carries `s = d·Σq` (Q8_1) or block sums (Q8_K).
    pub has_min: bool,
    /// The activation format the weights are multiplied with (ggml's
    /// `vec_dot_type`).
    pub act: GgmlType,
}

impl BlockLayout {
    /// Bytes of `n` values, `None` unless `n` is a whole number of blocks
    /// and the size fits in `usize`.
    pub const fn bytes_for(&self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.values) {
            return None;
        }
        (n / self.values).checked_mul(self.bytes)
    }
}

const fn block<B>(ty: GgmlType, values: usize, has_min: bool, act: GgmlType) -> BlockLayout {
    BlockLayout {
        ty,
        bytes: size_of::<B>(),
        values,
        has_min,
        act,
    }
}

/// The layout of `ty`, `None` for a type the kernels do not run.
pub const fn layout(ty: GgmlType) -> Option<BlockLayout> {
    use super::k_quants::QK_K;
    use super::QK;
    use GgmlType as T;
    Some(match ty {
        T::F32 => block::<f32>(T::F32, 1, false, T::F32),
        T::F16 => block::<half::f16>(T::F16, 1, false, T::F16),
        T::BF16 => block::<u16>(T::BF16, 1, false, T::BF16),
        T::Q4_0 => block::<BlockQ4_0>(T::Q4_0, QK, false, T::Q8_0),
        T::Q4_1 => block::<BlockQ4_1>(T::Q4_1, QK, true, T::Q8_1),
        T::Q5_0 => block::<BlockQ5_0>(T::Q5_0, QK, false, T::Q8_0),
        T::Q5_1 => block::<BlockQ5_1>(T::Q5_1, QK, true, T::Q8_1),
        T::Q8_0 => block::<BlockQ8_0>(T::Q8_0, QK, false, T::Q8_0),
        T::Q8_1 => block::<BlockQ8_1>(T::Q8_1, QK, true, T::Q8_1),
        T::IQ4_NL => block::<BlockIQ4_NL>(T::IQ4_NL, QK, false, T::Q8_0),
        T::Q2_K => block::<BlockQ2_K>(T::Q2_K, QK_K, true, T::Q8_K),
        T::Q3_K => block::<BlockQ3_K>(T::Q3_K, QK_K, false, T::Q8_K),
        T::Q4_K => block::<BlockQ4_K>(T::Q4_K, QK_K, true, T::Q8_K),
        T::Q5_K => block::<BlockQ5_K>(T::Q5_K, QK_K, true, T::Q8_K),
        T::Q6_K => block::<BlockQ6_K>(T::Q6_K, QK_K, false, T::Q8_K),
        T::IQ4_XS => block::<BlockIQ4_XS>(T::IQ4_XS, QK_K, false, T::Q8_K),
        T::Q8_K => block::<BlockQ8_K>(T::Q8_K, QK_K, false, T::Q8_K),
        _ => return None,
    })
}

/// Bytes of a Q8_0 activation block (f16 d, 32 × i8).
pub(crate) const Q8_0_BYTES: usize = size_of::<BlockQ8_0>();
/// Bytes of a Q8_1 activation block (f16 d, f16 s, 32 × i8).
pub(crate) const Q8_1_BYTES: usize = size_of::<BlockQ8_1>();
/// Bytes of a Q8_K activation block (f32 d, 256 × i8, 16 × i16 bsums).
pub(crate) const Q8_K_BYTES: usize = size_of::<BlockQ8_K>();
/// Offset of a Q8_K block's 256 quants.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const Q8_K_QS: usize = offset_of!(BlockQ8_K, qs);
/// Offset of a Q8_K block's 16 i16 block sums.
pub(crate) const Q8_K_BSUMS: usize = offset_of!(BlockQ8_K, bsums);
/// Offset of the quants in a Q8_0 block (after its f16 d).
pub(crate) const Q8_0_QS: usize = offset_of!(BlockQ8_0, qs);
/// Offset of the quants in a Q8_1 block (after its f16 d and s).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const Q8_1_QS: usize = offset_of!(BlockQ8_1, qs);

/// Byte offsets of the fields of the K-quant / IQ4 blocks (`BS`: bytes per
/// block), for the SIMD kernels that read blocks through raw pointers.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) mod fields {
    use super::*;
    macro_rules! fields {
        ($($m:ident: $b:ty { $($name:ident = $field:ident),* })*) => {$(
            pub(crate) mod $m {
                use super::*;
                pub(crate) const BS: usize = size_of::<$b>();
                $(pub(crate) const $name: usize = offset_of!($b, $field);)*
            }
        )*};
    }
    /// Q4_K / Q5_K share d, dmin and the scales; Q5_K adds `qh` before
    /// `qs`. `(bytes per block, offset of qs)` of Q4_K or (`q5`) Q5_K.
    pub(crate) const fn k4(q5: bool) -> (usize, usize) {
        if q5 {
            (size_of::<BlockQ5_K>(), offset_of!(BlockQ5_K, qs))
        } else {
            (size_of::<BlockQ4_K>(), offset_of!(BlockQ4_K, qs))
        }
    }
    /// The scales of both, and Q5_K's fifth bits.
    pub(crate) const K4_SC: usize = offset_of!(BlockQ4_K, scales);
    pub(crate) const K5_QH: usize = offset_of!(BlockQ5_K, qh);
    const _: () = assert!(K4_SC == offset_of!(BlockQ5_K, scales));

    fields! {
        q2_k: BlockQ2_K { SC = scales, QS = qs, D = d, DMIN = dmin }
        q3_k: BlockQ3_K { HM = hmask, QS = qs, SC = scales, D = d }
        q6_k: BlockQ6_K { QL = ql, QH = qh, SC = scales, D = d }
        iq4_xs: BlockIQ4_XS { SH = scales_h, SL = scales_l, QS = qs }
        iq4_nl: BlockIQ4_NL { QS = qs }
        q8_0: BlockQ8_0 { QS = qs }
    }
}

/// The 32-element quantized weight types that the const-generic SIMD
/// bodies are instantiated for. Stable Rust has no enum const parameters,
/// so a body takes `const K: u8` = [`Block32::code`] and reads the layout
/// back with [`Block32::of`]; this is the only numbering.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Block32 {
    Q4_0 = 0,
    Q4_1 = 1,
    Q5_0 = 2,
    Q5_1 = 3,
    Q8_0 = 4,
    IQ4_NL = 5,
}

/// Const-generic codes of [`Block32`] (`mat_q::<Q4_0>`; the x86 bodies).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) mod code {
    use super::Block32;
    pub(crate) const Q4_0: u8 = Block32::Q4_0.code();
    pub(crate) const Q4_1: u8 = Block32::Q4_1.code();
    pub(crate) const Q5_0: u8 = Block32::Q5_0.code();
    pub(crate) const Q5_1: u8 = Block32::Q5_1.code();
    pub(crate) const Q8_0: u8 = Block32::Q8_0.code();
    pub(crate) const IQ4_NL: u8 = Block32::IQ4_NL.code();
}

impl Block32 {
    /// The const-generic code.
    pub(crate) const fn code(self) -> u8 {
        self as u8
    }

    /// The type of a code (an unknown code is a bug in a registry entry and
    /// fails to compile where it is used in a const context).
    pub(crate) const fn of(code: u8) -> Block32 {
        match code {
            0 => Block32::Q4_0,
            1 => Block32::Q4_1,
            2 => Block32::Q5_0,
            3 => Block32::Q5_1,
            4 => Block32::Q8_0,
            5 => Block32::IQ4_NL,
            _ => panic!("not a Block32 code"),
        }
    }

    /// The 32-element type of `ty`, `None` for the others.
    pub(crate) const fn from_type(ty: GgmlType) -> Option<Block32> {
        Some(match ty {
            GgmlType::Q4_0 => Block32::Q4_0,
            GgmlType::Q4_1 => Block32::Q4_1,
            GgmlType::Q5_0 => Block32::Q5_0,
            GgmlType::Q5_1 => Block32::Q5_1,
            GgmlType::Q8_0 => Block32::Q8_0,
            GgmlType::IQ4_NL => Block32::IQ4_NL,
            _ => return None,
        })
    }

    /// Bytes of one weight block.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) const fn bytes(self) -> usize {
        match self {
            Block32::Q4_0 => size_of::<BlockQ4_0>(),
            Block32::Q4_1 => size_of::<BlockQ4_1>(),
            Block32::Q5_0 => size_of::<BlockQ5_0>(),
            Block32::Q5_1 => size_of::<BlockQ5_1>(),
            Block32::Q8_0 => size_of::<BlockQ8_0>(),
            Block32::IQ4_NL => size_of::<BlockIQ4_NL>(),
        }
    }

    /// Whether the block has a min `m` (activations Q8_1).
    pub(crate) const fn has_min(self) -> bool {
        matches!(self, Block32::Q4_1 | Block32::Q5_1)
    }

    /// Bytes of one activation block: Q8_1 with a min, else Q8_0.
    pub(crate) const fn act_bytes(self) -> usize {
        if self.has_min() {
            Q8_1_BYTES
        } else {
            Q8_0_BYTES
        }
    }

    /// Field offsets in a weight block: `(m, qh, qs)` (`d` is at 0).
    pub(crate) const fn offsets(self) -> (Option<usize>, Option<usize>, usize) {
        match self {
            Block32::Q4_0 => (None, None, offset_of!(BlockQ4_0, qs)),
            Block32::Q4_1 => (
                Some(offset_of!(BlockQ4_1, m)),
                None,
                offset_of!(BlockQ4_1, qs),
            ),
            Block32::Q5_0 => (
                None,
                Some(offset_of!(BlockQ5_0, qh)),
                offset_of!(BlockQ5_0, qs),
            ),
            Block32::Q5_1 => (
                Some(offset_of!(BlockQ5_1, m)),
                Some(offset_of!(BlockQ5_1, qh)),
                offset_of!(BlockQ5_1, qs),
            ),
            Block32::Q8_0 => (None, None, offset_of!(BlockQ8_0, qs)),
            Block32::IQ4_NL => (None, None, offset_of!(BlockIQ4_NL, qs)),
        }
    }

    /// The bias of the values decoded as unsigned (Q4_0: nibble − 8, Q5_0:
    /// 5-bit value − 16; Q8_0's and IQ4_NL's bytes + 128 where a kernel
    /// makes them unsigned); 0 for the types with a min.
    pub(crate) const fn bias(self) -> i32 {
        match self {
            Block32::Q4_0 => 8,
            Block32::Q5_0 => 16,
            Block32::Q8_0 | Block32::IQ4_NL => 128,
            Block32::Q4_1 | Block32::Q5_1 => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_ggml_type_sizes() {
        let activations = [GgmlType::Q8_1, GgmlType::Q8_K];
        for ty in crate::registry::TYPES.into_iter().chain(activations) {
            let l = layout(ty).expect("layout");
            assert_eq!(
                (l.bytes, l.values),
                (ty.type_size(), ty.block_size()),
                "{ty}"
            );
            assert_eq!(l.bytes_for(3 * l.values), Some(3 * l.bytes));
            if let Some(ops) = crate::registry::ops(ty, crate::Isa::Scalar) {
                assert_eq!(l.act, ops.act, "{ty}");
            }
            if l.values > 1 {
                assert_eq!(l.bytes_for(l.values + 1), None);
            }
        }
        for (code, b) in [0u8, 1, 2, 3, 4, 5]
            .into_iter()
            .map(|c| (c, Block32::of(c)))
        {
            assert_eq!(b.code(), code);
            let ty = crate::registry::TYPES
                .into_iter()
                .find(|&t| Block32::from_type(t) == Some(b))
                .expect("a registry type");
            assert_eq!(b.bytes(), ty.type_size());
            assert_eq!(b.has_min(), layout(ty).unwrap().has_min);
        }
    }
}
