//! CPU time from Linux `/proc`, to tell work done from time spent waiting
//! for a busy (shared) machine. Returns zero where `/proc` is unavailable.

use std::time::Duration;

/// CPU time of the calling thread (`/proc/thread-self/schedstat`, nanoseconds).
pub fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Time the calling thread spent runnable but waiting for a CPU (second
/// field of `/proc/thread-self/schedstat`): how much a busy machine (or this
/// process's own other threads) took from it.
pub fn thread_wait() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// CPU time of every live thread of this process, summed (`/proc/self/task/*/schedstat`).
pub fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .sum()
}
