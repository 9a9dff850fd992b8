//! How the agent uses glibc's allocator. The agent holds a compact cache and
//! makes large, short-lived buffers now and then (an etcd list page, a full
//! sync's writes, a `/metrics` body for every frontend); left to glibc's
//! defaults, their memory stays in the process after they are freed.

/// Above this size an allocation is its own mapping, returned to the kernel
/// when freed. glibc's default starts at 128 KiB but rises after each large
/// free, up to 32 MiB, after which large buffers come from the heap and
/// leave it fragmented; a fixed threshold keeps them out of it.
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Fixes the mmap threshold. Call first thing, before other threads exist.
pub fn configure() {
    // SAFETY: mallopt only sets allocator parameters.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } == 0 {
        tracing::warn!("glibc refused the mmap threshold; freed buffers may stay resident");
    }
}

/// Returns the heap memory freed so far to the kernel: called after a full
/// sync, which frees everything the list was decoded from.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only releases free pages of the allocator's own.
    unsafe { libc::malloc_trim(0) };
}
