//! A global allocator that counts live heap bytes, shared by the tests that
//! check that freeing handles / dropping contexts releases everything.
//! Use: `mod common;` then
//! `#[global_allocator] static ALLOC: common::counting_alloc::Counting = common::counting_alloc::Counting;`
//! and read [`live`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Counts live heap bytes.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Live heap bytes allocated through [`Counting`] (when it is the global allocator).
pub fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: p came from System.alloc with layout l.
        unsafe { System.dealloc(p, l) }
    }
}
