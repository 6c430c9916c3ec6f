//! Packed weights give their memory back: packing and dropping a 48 MiB
//! matrix many times must not grow the process (VmRSS), and the peak
//! (VmHWM) must stay near the source plus one packed copy. A test of its
//! own, so that no other test allocates in the same process meanwhile.
//! Linux only (reads /proc/self/status); skipped where nothing packs.

use phi_kernels::packed::{self, PackedWeights};
use phi_kernels::{GgmlType, Weights};

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn pack_and_drop_returns_memory() {
    let Some(isa) = packed::packed_isa() else {
        eprintln!("skipped: no packed kernels on this CPU");
        return;
    };
    if status_kib("VmRSS:").is_none() {
        eprintln!("skipped: no /proc/self/status");
        return;
    }
    // 48 MiB of Q8_0 (every type's packed bytes are as many as the file's,
    // give or take the K-quants' few extra bytes); one fixed block pattern,
    // its values do not matter here.
    let (ty, rows, cols) = (GgmlType::Q8_0, 12288usize, 3840usize);
    let mut block = [0u8; 34];
    block[..2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
    for (i, b) in block[2..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37);
    }
    let src: Vec<u8> = block.repeat(rows * cols / 32);
    let size_kib = src.len() / 1024;
    let w = Weights::new(ty, rows, cols, &src).unwrap();

    // The first pack faults its pages and may grow the heap / thread pool.
    let first = PackedWeights::pack_with_isa(isa, &w).unwrap().unwrap();
    assert_eq!(first.data().len(), src.len());
    drop(first);
    let rss0 = status_kib("VmRSS:").unwrap();
    for round in 0..24 {
        let p = PackedWeights::pack_with_isa(isa, &w).unwrap().unwrap();
        // Read it, so the pages are surely resident while it lives.
        let sum: u64 = p.data().iter().step_by(4096).map(|&b| b as u64).sum();
        std::hint::black_box(sum);
        drop(p);
        let rss = status_kib("VmRSS:").unwrap();
        assert!(
            rss < rss0 + size_kib / 4,
            "round {round}: VmRSS {rss} KiB after dropping, {rss0} KiB before ({size_kib} KiB packed)"
        );
    }
    let hwm = status_kib("VmHWM:").unwrap();
    assert!(
        hwm < rss0 + size_kib + size_kib / 4,
        "VmHWM {hwm} KiB: more than one packed copy ({size_kib} KiB) above {rss0} KiB at a time"
    );
}
