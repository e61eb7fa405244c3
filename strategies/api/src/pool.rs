//! The bounded pool that runs password hashing off the async runtime.
//!
//! Hashing is deliberately slow (tens to hundreds of milliseconds of CPU). Running it on the
//! runtime's worker threads would stall every other request, so it goes to a fixed set of OS
//! threads fed by a bounded queue. When the queue is full the caller gets [`Busy`] at once
//! (the daemon answers 503 with `Retry-After`) instead of queueing without bound.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// Every worker is busy and the queue is full: try again shortly.
    #[error("the hashing queue is full")]
    QueueFull,
    /// The job panicked or the pool is shutting down.
    #[error("the hashing job failed")]
    Lost,
}

/// The niceness of hashing threads: when the cores are busy, the scheduler prefers the async
/// runtime (token checks, the immediate 503s of a full queue) over hashing; when they are not,
/// hashing runs at full speed.
#[cfg(target_os = "linux")]
const HASH_NICE: libc::c_int = 10;

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: both calls only read this thread's id and change its own scheduling priority;
    // no memory is involved. A failure (e.g. a sandbox refusing it) leaves the priority as is.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, HASH_NICE);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Counts a job out of `pending` when dropped.
struct Decrement(Arc<AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A fixed pool of hashing threads with a bounded queue. Cheap to clone.
#[derive(Clone)]
pub struct HashPool {
    queue: SyncSender<Job>,
    pending: Arc<AtomicUsize>,
    completed: Arc<std::sync::atomic::AtomicU64>,
    workers: usize,
    depth: usize,
}

impl HashPool {
    /// Starts `workers` threads (at least one) sharing a queue of `depth` waiting jobs.
    ///
    /// # Errors
    /// When the operating system refuses to start a thread.
    pub fn new(workers: usize, depth: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let (queue, rx) = mpsc::sync_channel::<Job>(depth);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("authd-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job, never while running it.
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                // A panicking job drops its reply channel; the caller sees `Lost`.
                                let _ = catch_unwind(AssertUnwindSafe(job));
                            }
                            Err(_) => return, // every sender dropped: shut down
                        }
                    }
                })?;
        }
        Ok(Self {
            queue,
            pending: Arc::new(AtomicUsize::new(0)),
            completed: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            workers,
            depth,
        })
    }

    /// Runs `f` on a hashing thread and waits for its result without blocking the runtime.
    ///
    /// # Errors
    /// [`Busy::QueueFull`] at once when every worker is busy and the queue is full;
    /// [`Busy::Lost`] if the job panicked.
    pub async fn run<R, F>(&self, f: F) -> Result<R, Busy>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let pending = Arc::clone(&self.pending);
        let completed = Arc::clone(&self.completed);
        let job: Job = Box::new(move || {
            // Counted down even if `f` panics.
            let _pending = Decrement(pending);
            let out = f();
            completed.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(out);
        });
        self.pending.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                return Err(Busy::QueueFull);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                return Err(Busy::Lost);
            }
        }
        rx.await.map_err(|_| Busy::Lost)
    }

    /// Whether every worker is busy and the queue is full right now, so that [`run`] would
    /// refuse: a cheap check for callers that would otherwise do costly work (a durable write)
    /// before learning it. Racy by nature: [`run`] still decides.
    ///
    /// [`run`]: HashPool::run
    pub fn is_full(&self) -> bool {
        self.pending() >= self.workers + self.depth
    }

    /// Jobs queued or running right now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Jobs run to completion since the pool started.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn depth(&self) -> usize {
        self.depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[tokio::test]
    async fn runs_jobs_and_returns_results() {
        let pool = HashPool::new(2, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
    }

    #[tokio::test]
    async fn full_queue_is_refused_at_once() {
        let pool = HashPool::new(1, 1).unwrap_or_else(|e| panic!("{e}"));
        let gate = Arc::new(Barrier::new(2));
        // Occupy the only worker, then fill the only queue slot.
        let g = Arc::clone(&gate);
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || g.wait()).await }
        });
        while pool.pending() < 1 {
            tokio::task::yield_now().await;
        }
        assert!(!pool.is_full(), "one job running, the queue slot free");
        // Give the worker time to take the first job off the queue.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| ()).await }
        });
        while pool.pending() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(pool.is_full());
        assert_eq!(pool.run(|| ()).await, Err(Busy::QueueFull));
        gate.wait();
        assert!(running.await.is_ok());
        assert_eq!(queued.await.ok(), Some(Ok(())));
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_worker() {
        let pool = HashPool::new(1, 4).unwrap_or_else(|e| panic!("{e}"));
        let r: Result<(), Busy> = pool.run(|| panic!("boom")).await;
        assert_eq!(r, Err(Busy::Lost));
        assert_eq!(pool.pending(), 0, "a panicked job is no longer pending");
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }
}
