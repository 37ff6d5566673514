//! Reading or writing many objects in one call, on every core:
//! [`Store::get_many`] and [`Store::put_many`].
//!
//! A compiler loading a package's cached artifacts asks for hundreds of
//! objects at once, and most of a verified get is the read and the hash,
//! which need nothing from the caller. So the caller's thread and up to
//! [`MAX_WORKERS`] of the crate's long-lived helper threads
//! (`helpers::share_with`) take the next unread id from one atomic
//! counter until none are left. A helper reads and verifies into a buffer
//! of its own and sends the buffer to the caller, which hands the object
//! to the callback and sends the buffer back: every callback runs on the
//! caller's thread (it need not be `Send`), no payload is copied, and a
//! helper is at most [`AHEAD`] objects ahead of the callbacks, so memory
//! stays bounded by a few of the largest objects. The caller waits for
//! the helpers' objects only once every id is taken.
//!
//! Every thread hashes alone (`hash::alone`): the threads already share
//! the cores, and the hashing worker would only compete with them.
//!
//! A put is hashing, a copy into the page cache and a record: the caller
//! and scoped worker threads (a batch worth sharing takes milliseconds, so
//! starting them costs little) each put the next unclaimed object, each
//! appending to a pack of its own (`Packs` keeps one per thread appending
//! at once), so none waits for another's copy.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;

use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::object::{Kind, ObjectBuf, ObjectRef, hash};

use super::Store;
use crate::helpers;

/// Worker threads beside the caller's, at most (fewer on a machine with
/// fewer cores: one less than it has).
pub const MAX_WORKERS: usize = 3;

/// The work the rest of a call must be expected to take before it starts
/// workers, in bytes read, each object counted [`PER_OBJECT`] bytes longer
/// than it is (for a get, judged from the objects read so far; for a put,
/// from the payloads).
///
/// Measured on the 2-core benchmark machine with sharing forced on for
/// every batch (docs/BENCHMARKS.md, "Batch calls against one call per
/// object"): a get shared with a helper thread gains from ~100 µs of work
/// on, 16 of W1's ~16 KB values (0.76× the time of one call per object)
/// and 64 objects of ~300 B (0.96×), and loses below, 4 of W1's values
/// (1.17×) and 32 small ones (1.17×); 256 KiB, at [`PER_OBJECT`] per
/// object, is about that much work for both. A put's scoped thread costs
/// ~40 µs to start; its batches are judged by the same figure.
pub const PARALLEL_BYTES: u64 = 256 << 10;

/// What one object costs beyond its bytes, in bytes of reading and hashing:
/// a get's table lookup, header, id check and callback, ~1.5 µs.
pub const PER_OBJECT: u64 = 4 << 10;

/// What one put costs beyond its payload, in bytes of hashing and
/// copying: the table lookup, the header, the record, ~5 µs.
pub const PUT_PER_OBJECT: u64 = 16 << 10;

/// Objects a worker may have read that the caller has not handed to the
/// callback yet: enough that a worker keeps reading while the caller reads
/// a large object itself (16 against 4 made W1-shaped batches 6% faster).
const AHEAD: usize = 16;

/// The largest buffer handed back to a worker (or kept by the caller's
/// thread) for its next read.
const KEEP_BUF: usize = 1 << 20;

/// What a worker sends back: which worker, the index into `ids`, the
/// buffer, and whether the read left a verified object in it.
struct Done {
    worker: usize,
    index: usize,
    buf: ObjectBuf,
    read: Result<()>,
    /// With a helper's first object: where its buffers come back.
    back: Option<mpsc::Sender<ObjectBuf>>,
}

impl Store {
    /// Reads and verifies every object of `ids` and calls `each` with its
    /// index in `ids` and the result of [`Store::get_object_into`] for it,
    /// spreading the reads and hashes over the machine's cores.
    ///
    /// Every index is answered exactly once, in no particular order, and
    /// always on the calling thread. An object that is absent or damaged is
    /// an `Err` handed to `each` ([`Error::NotFound`], [`Error::Corrupt`]),
    /// not the end of the call: `each` decides. The first error `each`
    /// returns stops the call (reads already under way finish, no more
    /// callbacks are made) and is returned.
    ///
    /// The calling thread reads the first objects itself, and starts
    /// workers only once those show the rest to be at least
    /// [`PARALLEL_BYTES`] of work: a short batch, every call on a one-core
    /// machine and every call when no thread can be started run on the
    /// calling thread alone.
    ///
    /// # Errors
    /// Only what `each` returns.
    pub fn get_many<E, F>(&self, ids: &[ObjectId], mut each: F) -> std::result::Result<(), E>
    where
        F: FnMut(usize, Result<ObjectRef<'_>>) -> std::result::Result<(), E>,
    {
        let workers = workers().min(ids.len().saturating_sub(1));
        // The caller reads until what it has read says the rest is worth
        // sharing: the work so far, per object, times the objects left.
        // A short batch never looks at a size or starts a thread.
        let shared_from = with_caller_buf(|buf| {
            let mut work = 0u64;
            for (i, id) in ids.iter().enumerate() {
                let left = (ids.len() - i) as u64;
                if workers > 0 && i > 0 && left > 1 && work / i as u64 * left >= PARALLEL_BYTES {
                    return Ok(Some(i));
                }
                let read = self.get_object_into(id, buf);
                work += PER_OBJECT + read.as_ref().map_or(0, |o| o.payload().len() as u64);
                each(i, read)?;
            }
            Ok(None)
        })?;
        let Some(shared_from) = shared_from else {
            return Ok(());
        };
        let next = AtomicUsize::new(shared_from);
        let stop = AtomicBool::new(false);
        let joined = AtomicUsize::new(0);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        // Each helper that joins sends through its own clone; the caller
        // drops this one once every index is taken, so `done_rx` ends when
        // the last helper has returned (or unwound).
        let done_tx = Mutex::new(Some(done_tx));
        let serve = || {
            let Some(done) = done_tx.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
                return;
            };
            let worker = joined.fetch_add(1, Ordering::Relaxed);
            hash::alone(|| self.serve(ids, worker, &next, &stop, &done));
        };
        let (next, stop, senders) = (&next, &stop, &done_tx);
        let caller = move || {
            let mut returns: Vec<Option<mpsc::Sender<ObjectBuf>>> = Vec::new();
            let result = hash::alone(|| {
                with_caller_buf(|own| {
                    loop {
                        while let Ok(done) = done_rx.try_recv() {
                            self.answer(ids, &mut each, &mut returns, done)?;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(id) = ids.get(i) else {
                            break;
                        };
                        each(i, self.get_object_into(id, own))?;
                    }
                    drop(senders.lock().unwrap_or_else(|p| p.into_inner()).take());
                    for done in &done_rx {
                        self.answer(ids, &mut each, &mut returns, done)?;
                    }
                    Ok(())
                })
            });
            // On an error, helpers waiting for a buffer wake to a closed
            // channel (`returns` and `done_rx` go with this closure) and
            // the others see `stop` before their next read.
            stop.store(true, Ordering::Relaxed);
            result
        };
        helpers::share_with(workers, &serve, caller)
    }

    /// Stores every object of `objects` (links and payload, all of kind
    /// `kind`) as [`Store::put_object`] does and returns their ids in
    /// order, spreading the hashing and writing over the machine's cores.
    ///
    /// A batch of less work than [`PARALLEL_BYTES`] (each object counted
    /// [`PUT_PER_OBJECT`] bytes longer than its payload) is put on the
    /// calling thread alone. Threads putting side by side each
    /// append to a pack of their own, so a large batch may start a few
    /// packs; gc merges small ones.
    ///
    /// # Errors
    /// The first error of any put ([`Error::Io`]); objects put before it
    /// stay stored (unreferenced until a caller publishes them, and
    /// collected by gc like any other).
    pub fn put_many(&self, kind: Kind, objects: &[(&[ObjectId], &[u8])]) -> Result<Vec<ObjectId>> {
        let _writing = self.writing()?;
        let workers = workers().min(objects.len().saturating_sub(1));
        let work: u64 = objects
            .iter()
            .map(|(_, payload)| payload.len() as u64 + PUT_PER_OBJECT)
            .sum();
        if workers == 0 || work < PARALLEL_BYTES {
            return objects
                .iter()
                .map(|(links, payload)| self.put_object(kind, links, payload))
                .collect();
        }
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let put_next = || {
            let mut done = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((links, payload)) = objects.get(i) else {
                    break;
                };
                let put = self.put_object(kind, links, payload);
                if put.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                done.push((i, put));
            }
            done
        };
        let mut ids = vec![None; objects.len()];
        let mut first_error: Option<(usize, Error)> = None;
        thread::scope(|scope| {
            let started: Vec<_> = (0..workers)
                .filter_map(|_| {
                    thread::Builder::new()
                        .name("rask-store-put".into())
                        .spawn_scoped(scope, || hash::alone(put_next))
                        .ok()
                })
                .collect();
            let mut all = hash::alone(put_next);
            for worker in started {
                // A worker that panicked has put nothing it reported; its
                // unclaimed objects are put below.
                all.extend(worker.join().unwrap_or_default());
            }
            for (i, put) in all {
                match put {
                    Ok(id) => ids[i] = Some(id),
                    Err(e) => {
                        if first_error.as_ref().is_none_or(|(at, _)| i < *at) {
                            first_error = Some((i, e));
                        }
                    }
                }
            }
        });
        if let Some((_, e)) = first_error {
            return Err(e);
        }
        ids.into_iter()
            .zip(objects)
            .map(|(id, (links, payload))| match id {
                Some(id) => Ok(id),
                None => self.put_object(kind, links, payload),
            })
            .collect()
    }

    /// A helper's part of [`Store::get_many`]: takes the next index, reads
    /// and verifies it into one of its buffers and sends it to the caller,
    /// until none are left, the call stopped or the caller is gone. It
    /// starts with [`AHEAD`] buffers and then waits for the caller to hand
    /// one back; the channel they come back on goes to the caller with the
    /// first object, and the caller drops it when the call ends.
    fn serve(
        &self,
        ids: &[ObjectId],
        worker: usize,
        next: &AtomicUsize,
        stop: &AtomicBool,
        done: &mpsc::Sender<Done>,
    ) {
        let (back_tx, free) = mpsc::channel::<ObjectBuf>();
        let mut back = Some(back_tx);
        let mut fresh = AHEAD;
        while !stop.load(Ordering::Relaxed) {
            let mut buf = if fresh > 0 {
                fresh -= 1;
                ObjectBuf::new()
            } else {
                match free.recv() {
                    Ok(buf) => buf,
                    Err(_) => return,
                }
            };
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(id) = ids.get(index) else {
                return;
            };
            let read = self.get_object_into(id, &mut buf).map(|_| ());
            let sent = done.send(Done {
                worker,
                index,
                buf,
                read,
                back: back.take(),
            });
            if sent.is_err() {
                return;
            }
        }
    }

    /// Hands a worker's object to `each` and its buffer back to the worker.
    fn answer<E, F>(
        &self,
        ids: &[ObjectId],
        each: &mut F,
        returns: &mut Vec<Option<mpsc::Sender<ObjectBuf>>>,
        done: Done,
    ) -> std::result::Result<(), E>
    where
        F: FnMut(usize, Result<ObjectRef<'_>>) -> std::result::Result<(), E>,
    {
        if let Some(back) = done.back {
            if returns.len() <= done.worker {
                returns.resize_with(done.worker + 1, || None);
            }
            returns[done.worker] = Some(back);
        }
        let result = match done.read {
            Ok(()) => match done.buf.last_read() {
                Some(object) => each(done.index, Ok(object)),
                None => each(done.index, Err(lost_object(self, &ids[done.index]))),
            },
            Err(e) => each(done.index, Err(e)),
        };
        if let Some(Some(back)) = returns.get(done.worker) {
            // A buffer grown past KEEP_BUF is let go, so that a batch with
            // a few very large objects does not keep AHEAD copies of them.
            let buf = if done.buf.capacity() > KEEP_BUF {
                ObjectBuf::new()
            } else {
                done.buf
            };
            let _ = back.send(buf);
        }
        result
    }
}

/// Runs `f` with this thread's reused read buffer (a new one if `f` on
/// this thread is already using it), kept for the next call unless it grew
/// past [`KEEP_BUF`]: a `get_many` of a few small objects costs no
/// allocation or zero-filling.
fn with_caller_buf<R>(f: impl FnOnce(&mut ObjectBuf) -> R) -> R {
    thread_local! {
        static CALLER_BUF: Cell<Option<ObjectBuf>> = const { Cell::new(None) };
    }
    let mut buf = CALLER_BUF.take().unwrap_or_default();
    let out = f(&mut buf);
    if buf.capacity() <= KEEP_BUF {
        CALLER_BUF.set(Some(buf));
    }
    out
}

/// Worker threads a call starts: one less than the cores, at most
/// [`MAX_WORKERS`] (looked up once: it reads cgroup files).
pub(crate) fn workers() -> usize {
    static WORKERS: OnceLock<usize> = OnceLock::new();
    *WORKERS.get_or_init(|| {
        thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .min(MAX_WORKERS)
    })
}

/// The error for a buffer that came back without the object its worker
/// verified in it (never expected: the read said it succeeded).
fn lost_object(store: &Store, id: &ObjectId) -> Error {
    Error::io(
        "read object",
        store.object_path(id),
        io::Error::other("the read buffer came back without the object it had verified"),
    )
}
