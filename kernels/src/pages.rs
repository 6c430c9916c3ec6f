//! Zeroed, page-backed buffers for repacked weights.
//!
//! Repacking writes a whole model (2–4 GB) into fresh memory once, at load.
//! With 4 KiB pages that is ~550k page faults for Phi-3-mini Q4_0, and the
//! kernel zeroes and maps each page separately; a heap allocation aligned
//! to 64 bytes is worse still, because the allocator zeroes it with one
//! `memset` on the calling thread before the parallel packing starts.
//!
//! [`PageBuf`] maps anonymous memory instead (already zero, nothing is
//! touched before the packing loop), starts the bytes on a 2 MiB boundary
//! and, on Linux, asks for transparent huge pages (`MADV_HUGEPAGE`) *before
//! the first touch*, so that with THP in `madvise` or `always` mode each
//! 2 MiB of the buffer costs one fault on the packing thread that first
//! writes it. Only whole huge pages inside the buffer become huge: the
//! bytes past the last 2 MiB boundary stay in 4 KiB pages, so resident
//! memory is the buffer's size rounded up to 4 KiB, never to 2 MiB. When
//! THP is off (or the advice fails) the same buffer simply uses 4 KiB pages;
//! where anonymous maps are unavailable it is a zeroed heap allocation.
//! Dropping a `PageBuf` unmaps all of it.

use crate::matmul::Line;

/// Transparent huge page size on x86-64 and (with 4 KiB base pages) aarch64.
const HUGE: usize = 2 << 20;

/// `len` zeroed bytes at a 64-byte (for `len >= 2 MiB`, 2 MiB) aligned
/// address.
pub(crate) struct PageBuf {
    store: Store,
    len: usize,
}

enum Store {
    /// An anonymous map; the bytes start `off` bytes into it.
    Map { map: memmap2::MmapMut, off: usize },
    /// Heap lines (empty buffers, or no anonymous map available).
    Heap(Vec<Line>),
}

impl PageBuf {
    /// `len` zeroed bytes; huge pages where the kernel gives them.
    pub(crate) fn zeroed(len: usize) -> PageBuf {
        let store = match Self::map(len) {
            Some((map, off)) => Store::Map { map, off },
            None => Store::Heap(bytemuck::allocation::zeroed_vec(len.div_ceil(64))),
        };
        PageBuf { store, len }
    }

    /// An anonymous map with room for `len` bytes at a 2 MiB boundary
    /// (when `len` holds a huge page), and the offset of that boundary.
    fn map(len: usize) -> Option<(memmap2::MmapMut, usize)> {
        if len == 0 {
            return None;
        }
        // Room to slide the start up to the next 2 MiB boundary; the unused
        // head and tail are never touched, so they cost address space only.
        let slack = if len >= HUGE { HUGE } else { 0 };
        let map = memmap2::MmapMut::map_anon(len.checked_add(slack)?).ok()?;
        // (Maps start on a page boundary, so a small buffer is 64-byte aligned.)
        let base = map.as_ptr() as usize;
        let off = if slack != 0 {
            base.next_multiple_of(HUGE) - base
        } else {
            0
        };
        debug_assert!(off + len <= map.len());
        #[cfg(target_os = "linux")]
        if slack != 0 {
            // Before any byte is touched: the faults of the packing loop then
            // take 2 MiB pages. An error (THP compiled out or `never`) only
            // means 4 KiB pages.
            let _ = map.advise_range(memmap2::Advice::HugePage, off, len);
        }
        Some((map, off))
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.store {
            Store::Map { map, off } => &map[*off..][..self.len],
            Store::Heap(lines) => &bytemuck::cast_slice(lines)[..self.len],
        }
    }

    /// The bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.store {
            Store::Map { map, off } => &mut map[*off..][..self.len],
            Store::Heap(lines) => &mut bytemuck::cast_slice_mut(lines)[..self.len],
        }
    }

    /// Whether the bytes live in an anonymous map (tests).
    #[cfg(test)]
    fn is_mapped(&self) -> bool {
        matches!(self.store, Store::Map { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_aligned_and_writable() {
        for len in [0, 1, 64, 4095, 4097, HUGE - 1, HUGE, HUGE + 12345, 3 * HUGE] {
            let mut b = PageBuf::zeroed(len);
            assert_eq!(b.bytes().len(), len);
            assert!(b.bytes().iter().all(|&x| x == 0), "len {len}");
            let align = if len >= HUGE && b.is_mapped() {
                HUGE
            } else {
                64
            };
            assert_eq!(b.bytes().as_ptr() as usize % align, 0, "len {len}");
            if len > 0 {
                let m = b.bytes_mut();
                m[len - 1] = 2;
                m[0] = 1;
                let last = if len == 1 { 1 } else { 2 };
                assert_eq!((b.bytes()[0], b.bytes()[len - 1]), (1, last));
            }
        }
    }
}
