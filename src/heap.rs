//! Gives the allocator's free memory back to the kernel a moment after a
//! large client command.
//!
//! Why: planning and splitting a bulk INSERT of thousands of rows
//! allocates megabytes of small pieces (its parse tree, each shard's
//! statement) that are all freed when it is done, but glibc's malloc keeps
//! the pages in the event loop's arena: after `sysbench prepare` through
//! shardgate the process held 18 MB of heap with under 2 MB in use, and
//! its RSS stayed 17 MB above a fresh one's. `malloc_trim` returns those
//! pages. It runs a second after a large command ends, and large commands
//! meanwhile join that trim: at most once a second (a bulk load trims once
//! a second while it runs, and once after), and small commands never ask
//! for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A client command payload larger than this asks for a trim.
pub const LARGE_COMMAND: usize = 64 * 1024;

/// How long after a large command the trim runs (large commands meanwhile
/// join it).
const AFTER: Duration = Duration::from_secs(1);

/// The server's trim requests and how many trims ran.
#[derive(Default)]
pub struct Trimmer {
    pending: Arc<AtomicBool>,
    /// Trims run (`/debug/vars` HeapTrims).
    pub trims: Arc<AtomicU64>,
}

impl Trimmer {
    /// A large command just ended: trim in `AFTER` unless a trim is
    /// already due. Must be called on a runtime (the trim is a task).
    pub fn after_large_command(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pending, trims) = (self.pending.clone(), self.trims.clone());
        tokio::spawn(async move {
            tokio::time::sleep(AFTER).await;
            // Cleared first: a large command during the trim asks again.
            pending.store(false, Ordering::Release);
            trim();
            trims.fetch_add(1, Ordering::Relaxed);
        });
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's free
    // pages under its own locks; it touches no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
