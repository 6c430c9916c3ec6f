//! Worker threads: the pool a [`Context`](crate::Context) runs its forward
//! pass on, which several contexts may share.
//!
//! The thread count reaches the kernels in one place: a context runs each
//! forward pass inside [`ThreadPool::install`], and every parallel loop below
//! it (the kernels' row splits, attention's heads) runs on that pool, so
//! `rayon::current_num_threads()` there is the pool's size.

use crate::error::{PhiError, Result};
use std::sync::Arc;

/// A pool of worker threads. Cloning it is cheap and shares the threads:
/// give one pool to several contexts (`ContextParams::thread_pool`) and they
/// take turns on the same workers instead of each starting its own.
#[derive(Clone)]
pub struct ThreadPool {
    pool: Arc<rayon::ThreadPool>,
}

impl ThreadPool {
    /// Starts `n_threads` workers (0 = [`default_threads`]).
    pub fn new(n_threads: usize) -> Result<ThreadPool> {
        let n = if n_threads == 0 {
            default_threads()
        } else {
            n_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| PhiError::ThreadPool(e.to_string()))?;
        Ok(ThreadPool {
            pool: Arc::new(pool),
        })
    }

    /// The number of worker threads.
    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on this pool: the kernels and loops it starts use its threads.
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads())
            .finish()
    }
}

/// The number of worker threads used when none is asked for: one per
/// physical core (a second hyper-thread per core only adds contention for
/// the same memory bandwidth and SIMD units), within the process's CPU quota.
pub fn default_threads() -> usize {
    let allowed = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    num_cpus::get_physical().clamp(1, allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_runs_work_on_its_own_threads() {
        let pool = ThreadPool::new(3).unwrap();
        assert_eq!(pool.n_threads(), 3);
        assert_eq!(pool.install(rayon::current_num_threads), 3);
        let shared = pool.clone();
        assert_eq!(shared.install(rayon::current_num_threads), 3);
        assert_eq!(ThreadPool::new(0).unwrap().n_threads(), default_threads());
    }
}
