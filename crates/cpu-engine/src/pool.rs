//! The engine's own worker threads for its parallel sections, which stay spinning between
//! sections instead of going to sleep. A 128-token prompt runs about twenty sections per layer
//! (norms, quantizations, products, rope, attention, SwiGLU, adds); on rayon's pool each paid a
//! wake-up, work stealing and a join that do not shrink with threads: at 16 threads on a Xeon a
//! norm whose arithmetic takes 10–20 µs cost about 160 µs, and a third of a prompt's profile
//! samples were in rayon's stealing and sleeping.
//!
//! Here a section is published to the workers at once (one counter they spin on), they take
//! task indices from one atomic counter, and the caller works too, then waits until every
//! worker has checked in. Workers spin for about a millisecond after a section, then sleep until
//! the next one wakes them. How many threads: the rayon pool in force
//! ([`rayon::current_num_threads`]), as before, so `ThreadPool::install` still picks it; one
//! pool per size, shared by callers one at a time.

#![allow(unsafe_code)] // a section's closure is lent to the workers for the section's lifetime.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a worker spins for the next section before it sleeps: sections of a forward pass
/// follow each other within microseconds, decode steps within a millisecond or so.
const SPIN_FOR: Duration = Duration::from_millis(1);

/// Spins between looks at the clock (and chances for other threads to run, on a busy machine).
const SPINS_PER_LOOK: u32 = 64;

thread_local! {
    /// Set on the pools' workers and on a caller while it runs a section: a section started
    /// from inside one runs on the calling thread (no nesting, no deadlock).
    static IN_SECTION: Cell<bool> = const { Cell::new(false) };
}

/// The engine's thread count: the rayon pool in force.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Calls `task(i)` for every `i` in `0..tasks`, across the threads when there are several tasks.
pub(crate) fn for_each<F>(tasks: usize, task: F)
where
    F: Fn(usize) + Sync,
{
    for_each_init(tasks, || (), |(), i| task(i));
}

/// As [`for_each`], each thread with its own scratch state from `init`, made when the thread
/// takes its first task of the section.
pub(crate) fn for_each_init<S, I, F>(tasks: usize, init: I, task: F)
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize) + Sync,
{
    let threads = threads();
    if tasks <= 1 || threads == 1 || IN_SECTION.get() {
        let mut state = None;
        for i in 0..tasks {
            task(state.get_or_insert_with(&init), i);
        }
        return;
    }
    let next = AtomicUsize::new(0);
    let run = || {
        let mut state = None;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                break;
            }
            task(state.get_or_insert_with(&init), i);
        }
    };
    Pool::of_size(threads).run(&run);
}

/// A section's work, as every participating thread runs it: take tasks until none is left.
type Work<'a> = dyn Fn() + Sync + 'a;

struct Pool {
    /// One caller at a time.
    caller: Mutex<()>,
    /// Bumped once per section; workers spin on it.
    epoch: AtomicUsize,
    /// The current section's work. Written by the caller only while no worker reads it: before
    /// it bumps `epoch`, after every worker checked in for the last section.
    work: UnsafeCell<Option<*const Work<'static>>>,
    /// Workers yet to check in for the current section.
    pending: AtomicUsize,
    /// Workers asleep or about to be, and what wakes them.
    sleeping: AtomicUsize,
    wake: (Mutex<()>, Condvar),
    /// The first panic a worker met in the current section, for the caller to resume.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Workers that started (a section waits for each).
    workers: AtomicUsize,
}

// SAFETY: `work` is written only by the caller holding `caller`, while no worker reads it (the
// protocol above); everything else is atomics and mutexes.
unsafe impl Sync for Pool {}

impl Pool {
    /// The pool of `threads` threads (the caller and `threads - 1` workers), started on first use
    /// and kept for the life of the process.
    fn of_size(threads: usize) -> &'static Pool {
        static POOLS: Mutex<Vec<(usize, &'static Pool)>> = Mutex::new(Vec::new());
        let mut pools = lock(&POOLS);
        if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
            return pool;
        }
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            caller: Mutex::new(()),
            epoch: AtomicUsize::new(0),
            work: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            wake: (Mutex::new(()), Condvar::new()),
            panic: Mutex::new(None),
            workers: AtomicUsize::new(0),
        }));
        // Only threads that started are waited for; none started means sections run on the
        // caller alone.
        for w in 1..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("rigger-cpu-{w}"))
                .spawn(move || pool.serve());
            if spawned.is_ok() {
                pool.workers.fetch_add(1, Ordering::SeqCst);
            }
        }
        pools.push((threads, pool));
        pool
    }

    /// Runs `work` on the caller and every worker; returns when all have finished with it.
    fn run(&self, work: &Work<'_>) {
        let _one_caller = lock(&self.caller);
        // SAFETY: every worker checked in for the last section before its caller returned, so
        // none reads `work` now; the lifetime is erased because the caller waits below until
        // every worker is done with it.
        unsafe {
            *self.work.get() =
                Some(std::mem::transmute::<*const Work<'_>, *const Work<'static>>(work));
        }
        self.pending
            .store(self.workers.load(Ordering::SeqCst), Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.wake.0);
            self.wake.1.notify_all();
        }
        IN_SECTION.set(true);
        let mine = catch_unwind(AssertUnwindSafe(work));
        IN_SECTION.set(false);
        let mut spins = 0u32;
        while self.pending.load(Ordering::Acquire) > 0 {
            spin(&mut spins);
        }
        let theirs = lock(&self.panic).take();
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            resume_unwind(payload);
        }
    }

    /// A worker's loop: wait for a section, run its work, check in.
    fn serve(&self) {
        IN_SECTION.set(true);
        // The epoch the pool started at, not the one now: a section may have been published
        // before this thread got to run, and it must check in for that one too.
        let mut seen = 0;
        loop {
            seen = self.next_section(seen);
            // SAFETY: the caller set `work` before bumping `epoch` (which this thread has seen)
            // and keeps it alive until this thread checks in below.
            let work = unsafe { (*self.work.get()).map(|w| &*w) };
            if let Some(work) = work
                && let Err(payload) = catch_unwind(AssertUnwindSafe(work))
            {
                lock(&self.panic).get_or_insert(payload);
            }
            self.pending.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits until `epoch` moves past `seen`, spinning for [`SPIN_FOR`], then asleep; returns it.
    fn next_section(&self, seen: usize) -> usize {
        let started = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = self.epoch.load(Ordering::SeqCst);
            if epoch != seen {
                return epoch;
            }
            if spins % SPINS_PER_LOOK == SPINS_PER_LOOK - 1 && started.elapsed() > SPIN_FOR {
                break;
            }
            spin(&mut spins);
        }
        let mut guard = lock(&self.wake.0);
        // Announced before the last look at `epoch`, and the caller looks at `sleeping` after
        // bumping `epoch` (both sequentially consistent): either this thread sees the new section
        // or the caller sees a sleeper and wakes it.
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        let epoch = loop {
            let epoch = self.epoch.load(Ordering::SeqCst);
            if epoch != seen {
                break epoch;
            }
            guard = self
                .wake
                .1
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        };
        self.sleeping.fetch_sub(1, Ordering::SeqCst);
        epoch
    }
}

/// One turn of a spin-wait: a pause hint, and every [`SPINS_PER_LOOK`] turns a chance for other
/// threads to run (a machine busier than its cores must not have workers spin through their
/// time slices).
fn spin(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(SPINS_PER_LOOK) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    fn on_threads<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("a rayon pool")
            .install(f)
    }

    #[test]
    fn every_task_runs_once_on_any_number_of_threads() {
        for threads in [1, 2, 3, 8] {
            for tasks in [0, 1, 2, 7, 1000] {
                let runs: Vec<AtomicU64> = (0..tasks).map(|_| AtomicU64::new(0)).collect();
                on_threads(threads, || {
                    for_each(tasks, |i| {
                        runs[i].fetch_add(1, Ordering::Relaxed);
                    })
                });
                assert!(
                    runs.iter().all(|r| r.load(Ordering::Relaxed) == 1),
                    "{threads} threads, {tasks} tasks"
                );
            }
        }
    }

    /// Workers start after their pool is handed out; the first section, published before they
    /// run, must still be waited for and run (it hung when workers started from the epoch they
    /// found rather than the pool's first).
    #[test]
    fn a_new_pool_runs_its_first_section() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let count = AtomicU64::new(0);
            on_threads(7, || {
                for_each(50, |_| {
                    count.fetch_add(1, Ordering::Relaxed);
                })
            });
            let _ = done.send(count.load(Ordering::Relaxed));
        });
        let count = finished.recv_timeout(Duration::from_secs(20));
        assert_eq!(
            count,
            Ok(50),
            "the first section of a new pool never finished"
        );
    }

    #[test]
    fn sections_run_on_several_threads_and_in_a_row() {
        let ids = Mutex::new(std::collections::HashSet::new());
        on_threads(4, || {
            for _ in 0..200 {
                for_each(64, |_| {
                    lock(&ids).insert(std::thread::current().id());
                    std::thread::sleep(Duration::from_micros(50));
                });
            }
        });
        assert!(lock(&ids).len() > 1, "every task ran on one thread");
    }

    #[test]
    fn workers_asleep_wake_for_the_next_section() {
        let sum = AtomicU64::new(0);
        on_threads(3, || {
            for round in 0..3u64 {
                std::thread::sleep(SPIN_FOR * 5); // the workers go to sleep
                for_each(10, |i| {
                    sum.fetch_add(round * 100 + i as u64, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(sum.load(Ordering::Relaxed), 3 * 45 + 10 * 300);
    }

    #[test]
    fn each_thread_makes_its_state_once_per_section() {
        let made = AtomicU64::new(0);
        on_threads(3, || {
            for_each_init(
                300,
                || made.fetch_add(1, Ordering::Relaxed),
                |_, _| std::thread::sleep(Duration::from_micros(10)),
            )
        });
        let made = made.load(Ordering::Relaxed);
        assert!((1..=3).contains(&made), "{made} states for 3 threads");
    }

    #[test]
    fn a_section_inside_a_section_runs_on_its_thread() {
        let count = AtomicU64::new(0);
        on_threads(4, || {
            for_each(8, |_| {
                for_each(8, |_| {
                    count.fetch_add(1, Ordering::Relaxed);
                })
            })
        });
        assert_eq!(count.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_goes_on() {
        let caught = on_threads(4, || {
            catch_unwind(|| {
                for_each(100, |i| {
                    if i == 57 {
                        panic!("task 57");
                    }
                })
            })
        });
        let payload = caught.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task 57"));
        let count = AtomicU64::new(0);
        on_threads(4, || {
            for_each(100, |_| {
                count.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(count.load(Ordering::Relaxed), 100);
    }
}
