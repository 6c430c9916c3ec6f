//! Zeroed, page-backed buffers for repacked weights.
//!
//! Repacking writes a whole model (2–4 GB) into fresh memory once, at load.
//! A heap allocation aligned to 64 bytes (the previous storage) is zeroed
//! by the allocator with one `memset` on the calling thread before the
//! parallel packing starts: every page fault of the model was taken by
//! that one thread. [`PageBuf`] maps anonymous memory instead (already
//! zero, nothing touched before the packing loop), so each page is faulted
//! in by the packing thread that first writes it.
//!
//! Huge pages ([`set_huge_pages`], `PHI_HUGEPAGES=1` through
//! `Config::from_env`; off by default): the bytes of buffers of 2 MiB or
//! more then start on a 2 MiB boundary, and on Linux the buffer is advised
//! `MADV_HUGEPAGE` *before its first touch* (THP `enabled` in `madvise` or
//! `always` mode), so each 2 MiB costs one fault and unmapping is ~20×
//! cheaper. Only whole huge pages inside the buffer become huge: the bytes
//! past the last 2 MiB boundary stay in 4 KiB pages, so resident memory is
//! the buffer's size rounded up to 4 KiB, never to 2 MiB. Off by default
//! because on the Firecracker VMs this was measured on (free page
//! reporting to the host), first touching a huge page cost 2–3× the CPU
//! time of the same bytes in 4 KiB pages (2 GiB, 2 threads: 3.3–6.3 s
//! against 1.2–2.4 s of system time), more than the cheaper unmapping
//! saves. Where THP is off (or the advice fails) the buffer simply uses
//! 4 KiB pages; where anonymous maps are unavailable it is a zeroed heap
//! allocation. Dropping a `PageBuf` unmaps all of it.

use crate::matmul::Line;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether new buffers ask for transparent huge pages.
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// Whether buffers made from now on ask for transparent huge pages (see
/// the module docs; a hint: the kernel may still give 4 KiB pages).
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Ordering::Relaxed);
}

/// Transparent huge page size on x86-64 and (with 4 KiB base pages) aarch64.
const HUGE: usize = 2 << 20;

/// `len` zeroed bytes at a 64-byte aligned address (2 MiB aligned for
/// huge pages).
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
    /// `len` zeroed bytes (huge pages when asked and the kernel gives them).
    pub(crate) fn zeroed(len: usize) -> PageBuf {
        let store = match Self::map(len) {
            Some((map, off)) => Store::Map { map, off },
            None => Store::Heap(bytemuck::allocation::zeroed_vec(len.div_ceil(64))),
        };
        PageBuf { store, len }
    }

    /// An anonymous map with room for `len` bytes (at a 2 MiB boundary for
    /// huge pages), and the offset of the bytes in it.
    fn map(len: usize) -> Option<(memmap2::MmapMut, usize)> {
        if len == 0 {
            return None;
        }
        // Room to slide the start up to the next 2 MiB boundary; the unused
        // head and tail are never touched, so they cost address space only.
        let huge = HUGE_PAGES.load(Ordering::Relaxed) && len >= HUGE;
        let slack = if huge { HUGE } else { 0 };
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
        if huge {
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
        // (The switch is process-wide; no other test sets it.)
        for (huge, len) in [false, true].into_iter().flat_map(|h| {
            [0, 1, 64, 4095, 4097, HUGE - 1, HUGE, HUGE + 12345, 3 * HUGE].map(|l| (h, l))
        }) {
            set_huge_pages(huge);
            let mut b = PageBuf::zeroed(len);
            assert_eq!(b.bytes().len(), len);
            assert!(b.bytes().iter().all(|&x| x == 0), "len {len}");
            let align = if huge && len >= HUGE && b.is_mapped() {
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
        set_huge_pages(false);
    }
}
