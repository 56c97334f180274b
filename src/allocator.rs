//! The process's allocator: mimalloc, and how soon it returns memory.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// glibc's malloc took a third of the leader's CPU at cold start, much of it
/// waiting on arena locks between worker threads; mimalloc's per-thread
/// heaps do not contend. `no_thp` (Cargo.toml): mimalloc asks for
/// transparent huge pages on its arenas by default, which took peak RSS at
/// 10,000 units from 57 to 86 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: how long (milliseconds) mimalloc keeps freed
/// pages before it returns them to the OS. libmimalloc-sys leaves it
/// unnamed ("not exposed as constants for stability reasons"); 15 is its
/// place in `mi_option_t` of mimalloc's `include/mimalloc.h`, the same in
/// mimalloc 2 and 3 (the test below checks the table it belongs to).
const PURGE_DELAY: mi_option_t = 15;

/// Freed memory goes back to the OS at once (purge delay 0 ms, where
/// mimalloc 3 waits 1,000 ms and mimalloc 2 10 ms). A leader taking over
/// lists and reconciles everything within a second, and what it frees on
/// the way piled up on what it kept: with the default, a new v2 leader of
/// 10,000 units peaked at 71-79 MiB RSS, with 0 ms at 58-59 MiB
/// (deploy/bench.sh, failover, three runs each). The cost: the madvise calls
/// of returning pages, about 5 % more CPU for the leader of a cold start
/// (its CPU over etcd's, 0.51 with 1,000 ms, 0.53-0.55 with 0 ms).
pub fn configure() {
    // SAFETY: mi_option_set stores an integer in mimalloc's option table
    // (not thread safe, says mimalloc): this runs first thing in main,
    // before any other thread of this process exists.
    unsafe { mi_option_set(PURGE_DELAY, 0) }
}

/// The purge delay now in force, milliseconds.
#[cfg(test)]
fn purge_delay_ms() -> std::ffi::c_long {
    // SAFETY: reads an integer from mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_set() {
        // mimalloc 3's table has 47 options (2's has 38): a libmimalloc-sys
        // with another table may have moved the purge delay.
        assert_eq!(libmimalloc_sys::_mi_option_last, 47);
        configure();
        assert_eq!(purge_delay_ms(), 0);
    }
}
