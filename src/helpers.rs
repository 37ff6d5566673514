//! Long-lived helper threads that join a caller's job: [`share`].
//!
//! A batch call (`Index::find_missing_with` of a thousand keys, ~0.5 ms of
//! work) that starts a scoped thread pays for it every time: on the 2-core
//! benchmark machine the new thread runs ~40–70 µs after the spawn and the
//! join costs ~25 µs more, a sixth of the batch. So a few threads are
//! started once, on first use, and kept: between jobs each spins for
//! [`SPIN`] (a helper woken from sleep by a futex takes ~25–70 µs to run
//! there, a spinning one ~0.2 µs), then sleeps on a condition variable.
//!
//! A job is a closure every participant runs: the caller, and each helper
//! that is free when it is offered. It must share its work out itself (the
//! callers take chunks from an atomic counter), so a helper that joins late
//! or never only means the caller does more. The caller never waits for a
//! helper to start: when its own run returns it withdraws the offer, then
//! waits only for helpers already inside the job, which are finishing the
//! chunk they took. A second caller while a job is offered runs its job
//! alone.
//!
//! # Safety
//! This module holds one of the crate's three `unsafe` uses (the others
//! map index files, in `index::segment`, and call `openat`, in `dirfd`).
//! The job borrows the caller's stack and a helper thread is not scoped,
//! so the borrow's lifetime is erased when the job is offered. It is sound
//! because a helper calls the job only between joining the offer (under
//! the offer's lock, while the offer is posted) and leaving it (`inside`
//! decremented after the call returns or unwinds), and [`share_with`]
//! (which [`share`] calls) does not return, even by unwinding, before it
//! has taken the offer down (under the same lock) and seen `inside` at
//! zero: no helper can call the job after it returns.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a helper spins for the next job before it sleeps.
pub const SPIN: Duration = Duration::from_micros(200);

/// Runs `job` on the calling thread and on up to `helpers` of the pool's
/// threads that are free, and returns once every participant's call has
/// returned. A panic in any participant is resumed here, after all of them
/// have left the job.
///
/// `job` is called once per participant, concurrently; it should take its
/// work from shared state until none is left and return.
pub fn share(helpers: usize, job: &(dyn Fn() + Sync)) {
    share_with(helpers, job, job);
}

/// Runs `caller` on the calling thread while up to `helpers` free helper
/// threads run `job`, and returns `caller`'s result once every helper that
/// joined has returned from `job`.
/// A panic in a helper is resumed here, after all of them have left.
///
/// `caller` need not be `Send` or `Sync` (it may hold the caller's
/// callbacks). The helpers inside `job` are waited for only after `caller`
/// returns, so `job` must not block on `caller` once it has: what a helper
/// waits for (a channel's other end, say) should be dropped when `caller`
/// returns.
pub fn share_with<R>(helpers: usize, job: &(dyn Fn() + Sync), caller: impl FnOnce() -> R) -> R {
    let pool = match pool() {
        Some(pool) if helpers > 0 => pool,
        _ => return caller(),
    };
    let Some(offer) = pool.post(helpers, job) else {
        return caller();
    };
    let posted = Posted { pool, offer };
    let out = caller();
    let panic = posted.finish();
    if let Some(payload) = panic {
        panic::resume_unwind(payload);
    }
    out
}

/// Helper threads the pool starts: one less than the cores, at most
/// [`MAX_WORKERS`](crate::store::MAX_WORKERS).
fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();
    *POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            offer: Mutex::new(None),
            posts: AtomicU64::new(0),
            sleeping: AtomicUsize::new(0),
            wake: Condvar::new(),
        }));
        let started = (0..crate::store::workers())
            .filter(|_| {
                thread::Builder::new()
                    .name("rask-store-helper".into())
                    .spawn(move || pool.serve())
                    .is_ok()
            })
            .count();
        (started > 0).then_some(pool)
    })
}

/// A job pointer whose borrow's lifetime is erased (see the module's
/// `# Safety`).
struct JobPtr(*const (dyn Fn() + Sync + 'static));

// SAFETY: the pointee is `Sync`, so calling it from another thread is
// sound while it lives, which the module's `# Safety` argues.
unsafe impl Send for JobPtr {}
// SAFETY: as for `Send`: only shared references to a `Sync` closure.
unsafe impl Sync for JobPtr {}

/// One posted job.
struct Offer {
    job: JobPtr,
    /// Helpers still wanted; guarded by the pool's `offer` lock.
    seats: AtomicUsize,
    /// Helpers that joined and have not left.
    inside: AtomicUsize,
    /// The first helper's panic.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

struct Pool {
    /// The job on offer, if any.
    offer: Mutex<Option<Arc<Offer>>>,
    /// Jobs posted so far: what spinning helpers watch.
    posts: AtomicU64,
    /// Helpers asleep on `wake`.
    sleeping: AtomicUsize,
    wake: Condvar,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Option<Arc<Offer>>> {
        self.offer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offers `job` to `helpers` helpers; `None` if another job is on
    /// offer.
    fn post(&self, helpers: usize, job: &(dyn Fn() + Sync)) -> Option<Arc<Offer>> {
        let mut slot = self.lock();
        if slot.is_some() {
            return None;
        }
        let job: *const (dyn Fn() + Sync + '_) = job;
        // SAFETY: only the lifetime changes (the layout of the two fat
        // pointers is the same); see the module's `# Safety` for why no
        // helper calls it after `share` returns.
        let job: *const (dyn Fn() + Sync + 'static) = unsafe { std::mem::transmute(job) };
        let offer = Arc::new(Offer {
            job: JobPtr(job),
            seats: AtomicUsize::new(helpers),
            inside: AtomicUsize::new(0),
            panic: Mutex::new(None),
        });
        *slot = Some(Arc::clone(&offer));
        self.posts.fetch_add(1, Ordering::Release);
        drop(slot);
        if self.sleeping.load(Ordering::Acquire) > 0 {
            self.wake.notify_all();
        }
        Some(offer)
    }

    /// Takes the job on offer, if it still wants a helper.
    fn join(&self) -> Option<Arc<Offer>> {
        let slot = self.lock();
        let offer = slot.as_ref()?;
        if offer.seats.load(Ordering::Relaxed) == 0 {
            return None;
        }
        offer.seats.fetch_sub(1, Ordering::Relaxed);
        offer.inside.fetch_add(1, Ordering::AcqRel);
        Some(Arc::clone(offer))
    }

    /// A helper's life: wait for a post, join it, run it, leave it.
    fn serve(&self) {
        let mut seen = self.posts.load(Ordering::Acquire);
        loop {
            seen = self.next_post(seen);
            let Some(offer) = self.join() else {
                continue;
            };
            // SAFETY: joined and not yet left (see the module's `# Safety`).
            let job = unsafe { &*offer.job.0 };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(job)) {
                let mut first = offer.panic.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(payload);
            }
            offer.inside.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits for a post after the `seen`-th; returns the count of posts.
    fn next_post(&self, seen: u64) -> u64 {
        let spun = Instant::now();
        loop {
            let posts = self.posts.load(Ordering::Acquire);
            if posts != seen {
                return posts;
            }
            if spun.elapsed() >= SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        let mut slot = self.lock();
        self.sleeping.fetch_add(1, Ordering::AcqRel);
        loop {
            let posts = self.posts.load(Ordering::Acquire);
            if posts != seen {
                self.sleeping.fetch_sub(1, Ordering::AcqRel);
                return posts;
            }
            slot = self.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A posted job: taking it down, and waiting for the helpers inside, also
/// happens when the caller's own run unwinds.
struct Posted {
    pool: &'static Pool,
    offer: Arc<Offer>,
}

impl Posted {
    /// Takes the offer down, waits until no helper is inside the job, and
    /// returns a helper's panic.
    fn finish(&self) -> Option<Box<dyn Any + Send>> {
        {
            let mut slot = self.pool.lock();
            if slot.as_ref().is_some_and(|o| Arc::ptr_eq(o, &self.offer)) {
                *slot = None;
            }
        }
        // The helpers inside are finishing a chunk of work; a descheduled
        // one may take a time slice, so stop burning the core after a while.
        let mut spins = 0u32;
        while self.offer.inside.load(Ordering::Acquire) != 0 {
            if spins < 1 << 14 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        self.offer
            .panic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl Drop for Posted {
    fn drop(&mut self) {
        // Idempotent: after `finish` the offer is down and nobody is inside.
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Runs `chunks` chunks through `share`; returns how many each
    /// participant (by thread) took.
    fn count_chunks(chunks: usize) -> Vec<usize> {
        let next = AtomicUsize::new(0);
        let taken = Mutex::new(Vec::new());
        share(3, &|| {
            let mut mine = 0;
            while next.fetch_add(1, Ordering::Relaxed) < chunks {
                mine += 1;
                thread::sleep(Duration::from_micros(20));
            }
            taken.lock().unwrap().push(mine);
        });
        taken.into_inner().unwrap()
    }

    #[test]
    fn every_chunk_is_taken_once_and_helpers_join() {
        let mut helped = false;
        for _ in 0..50 {
            let taken = count_chunks(200);
            assert_eq!(taken.iter().sum::<usize>(), 200);
            helped |= taken.len() > 1;
        }
        if crate::store::workers() > 0 {
            assert!(helped, "no helper ever joined a job of 200 chunks");
        }
    }

    #[test]
    fn share_returns_only_after_every_helper_left_the_job() {
        for _ in 0..200 {
            let running = AtomicUsize::new(0);
            let next = AtomicUsize::new(0);
            share(3, &|| {
                running.fetch_add(1, Ordering::SeqCst);
                while next.fetch_add(1, Ordering::Relaxed) < 64 {
                    std::hint::spin_loop();
                }
                running.fetch_sub(1, Ordering::SeqCst);
            });
            assert_eq!(running.load(Ordering::SeqCst), 0);
        }
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_after_the_job_ends() {
        let caller = thread::current().id();
        let next = AtomicUsize::new(0);
        let finished = AtomicBool::new(false);
        let helper_panicked = AtomicBool::new(false);
        for _ in 0..100 {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                share(3, &|| {
                    let me = thread::current().id();
                    while next.fetch_add(1, Ordering::Relaxed) < 1_000_000 {
                        if me != caller {
                            helper_panicked.store(true, Ordering::SeqCst);
                            panic!("helper fails");
                        }
                        std::hint::spin_loop();
                    }
                    finished.store(true, Ordering::SeqCst);
                })
            }));
            next.store(0, Ordering::Relaxed);
            if helper_panicked.swap(false, Ordering::SeqCst) {
                let payload = outcome.expect_err("a helper's panic must reach the caller");
                assert_eq!(payload.downcast_ref::<&str>(), Some(&"helper fails"));
                return;
            }
            assert!(outcome.is_ok());
        }
        assert!(
            crate::store::workers() == 0,
            "no helper joined in 100 jobs of 1,000,000 steps"
        );
    }

    #[test]
    fn a_callers_panic_waits_for_the_helpers_then_unwinds() {
        let caller = thread::current().id();
        let inside = AtomicUsize::new(0);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            share(3, &|| {
                if thread::current().id() == caller {
                    thread::sleep(Duration::from_millis(5));
                    panic!("caller fails");
                }
                inside.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(inside.load(Ordering::SeqCst), 0, "a helper outlived share");
    }

    #[test]
    fn callers_on_several_threads_at_once_each_finish_their_own_job() {
        thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for round in 0..100 {
                        let next = AtomicUsize::new(0);
                        let done = AtomicUsize::new(0);
                        let chunks = 10 + (t * 7 + round) % 50;
                        share(3, &|| {
                            while next.fetch_add(1, Ordering::Relaxed) < chunks {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        assert_eq!(done.load(Ordering::Relaxed), chunks);
                    }
                });
            }
        });
    }

    #[test]
    fn share_with_runs_a_callers_closure_that_is_not_sync_beside_the_helpers() {
        let mut helped = false;
        for _ in 0..50 {
            let next = AtomicUsize::new(0);
            let by_helpers = AtomicUsize::new(0);
            // `Rc` is neither `Send` nor `Sync`: only the caller may hold it.
            let mine = std::rc::Rc::new(std::cell::Cell::new(0));
            let counted = share_with(
                3,
                &|| {
                    while next.fetch_add(1, Ordering::Relaxed) < 200 {
                        by_helpers.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_micros(20));
                    }
                },
                || {
                    while next.fetch_add(1, Ordering::Relaxed) < 200 {
                        mine.set(mine.get() + 1);
                        thread::sleep(Duration::from_micros(20));
                    }
                    mine.get()
                },
            );
            // Every helper has left once `share_with` returns.
            assert_eq!(counted + by_helpers.load(Ordering::SeqCst), 200);
            helped |= by_helpers.load(Ordering::SeqCst) > 0;
        }
        if crate::store::workers() > 0 {
            assert!(helped, "no helper ever joined");
        }
    }

    #[test]
    fn a_job_can_share_a_job_of_its_own() {
        let total = AtomicUsize::new(0);
        let outer = AtomicUsize::new(0);
        share(3, &|| {
            while outer.fetch_add(1, Ordering::Relaxed) < 8 {
                let inner = AtomicUsize::new(0);
                share(3, &|| {
                    while inner.fetch_add(1, Ordering::Relaxed) < 16 {
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 8 * 16);
    }
}
