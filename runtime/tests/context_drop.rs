//! Dropping a context releases everything it allocated, its thread pool's
//! workers included. Regression test for a fuzzing report (model_load,
//! 2026-11-23): libFuzzer's leak check flagged a rayon worker's deque
//! (1520 bytes) right after a context was dropped. A rayon `ThreadPool` only
//! signals its workers on drop and they exit asynchronously, so a check that
//! runs at that moment sees their memory in flight; it was not a leak. Here
//! many contexts are made and dropped: a real per-context leak of that size
//! would add up to far more than the slack allowed once the workers are gone.

use phi::synthetic::{build, SyntheticSpec};
use phi::{Context, ContextParams, Model};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

/// Counts live heap bytes, so a test can see that everything is released.
#[global_allocator]
static ALLOC: common::counting_alloc::Counting = common::counting_alloc::Counting;

fn run_one(model: &Arc<Model>, n_threads: usize) {
    let p = ContextParams {
        n_ctx: 16,
        n_threads,
        max_memory: 64 << 20,
        ..Default::default()
    };
    let mut ctx = Context::new(Arc::clone(model), &p).unwrap();
    ctx.eval(&[1, 2, 3], true).unwrap();
    ctx.eval(&[4], false).unwrap();
}

#[test]
fn dropped_contexts_leave_nothing_behind() {
    let spec = SyntheticSpec {
        n_layer: 1,
        ..SyntheticSpec::tiny_phi3()
    };
    let g = phi_gguf::Gguf::from_bytes(build(&spec).unwrap()).unwrap();
    let model = Arc::new(Model::from_gguf(g).unwrap());
    // Warm up lazily-initialised globals (kernel dispatch tables and the like).
    run_one(&model, 2);
    std::thread::sleep(Duration::from_millis(100));
    let before = common::counting_alloc::live();
    const N: usize = 200;
    for i in 0..N {
        run_one(&model, 1 + i % 2);
    }
    // Give the pools' workers time to exit, then compare.
    let deadline = Instant::now() + Duration::from_secs(10);
    let slack = 64 * 1024;
    let grown = loop {
        let grown = common::counting_alloc::live() - before;
        if grown < slack || Instant::now() > deadline {
            break grown;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // 200 contexts × 1.5 KiB (the reported size) would be ~300 KiB.
    assert!(
        grown < slack,
        "{grown} bytes still allocated after {N} contexts"
    );
}
