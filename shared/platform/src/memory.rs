//! Giving freed memory back to the system after work that needed a lot of it.
//!
//! glibc's allocator keeps what a request or a worker pass freed (in its arenas, one per
//! thread that allocated) for reuse, so after a pass over a large data source the
//! resident set stays at that pass's peak, and fragmentation lets the next pass's peak climb
//! above it: the function's memory follows the largest data it ever touched. Trimming after
//! such work returns the free pages, so the resident set falls back to what is live.

/// Returns the allocator's free memory to the system (glibc's `malloc_trim`); a no-op
/// elsewhere. Costs a walk of the free lists: call it after work that may have touched
/// megabytes (a worker's data pass, a replace of the data), not on every request.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sets the allocator up for a process that handles megabytes of data now and then (call it
/// first thing in `main`): blocks of 256 KiB and more are mapped on their own and unmapped
/// when freed (glibc otherwise raises that threshold after the first large free, up to
/// 32 MiB, and large buffers then stay in its heaps once freed), and at most two arenas
/// (glibc otherwise grows up to eight per core, each keeping its own free memory). A no-op
/// elsewhere.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's tunables, under the allocator's own lock; it
    // takes no pointers. (Arenas made before it stay: call it before the work starts.)
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
