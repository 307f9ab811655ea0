//! The threads that split a kernel's loop.
//!
//! A [`Team`] is a fixed set of helper threads plus whichever thread calls
//! [`Team::run`]. Inside a run, kernels split their loops with [`for_each`] and
//! its slice forms; outside one (or on a thread with no team) the same calls
//! run the loop on the calling thread.
//!
//! Why not rayon: a model run is a chain of short parallel loops, one or a few
//! per node, with serial work between them. rayon's idle workers sleep after a
//! few microseconds, so every loop paid a futex wake-up on the critical path,
//! and at a join the calling worker slept too. A team's helpers instead spin
//! between loops for as long as a run is in progress (bounded by
//! [`SPIN_LIMIT`]) and sleep between runs, which is what onnxruntime's pool
//! does. Claiming work is one compare-and-swap per block of indices; publishing
//! a loop allocates nothing, so steady-state runs stay allocation-free.
//!
//! One loop at a time owns the helpers. A loop started while another thread's
//! loop holds them (two runs of a shared team at once), or from inside a loop's
//! body, runs on its own thread instead of waiting.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper keeps spinning for the next loop of a run before it
/// sleeps: longer than the serial gaps between a model's parallel loops, short
/// enough that a run stalled elsewhere (a GPU wait, a slow serial op) does not
/// burn a core for long.
const SPIN_LIMIT: Duration = Duration::from_millis(2);

/// Spins between clock reads and `yield_now` calls while waiting.
const SPINS_PER_CHECK: u32 = 256;

/// A loop's indices are claimed in blocks so that a claim (one shared atomic
/// operation) covers enough work: at most this many blocks per thread.
const BLOCKS_PER_THREAD: usize = 16;

/// The ticket packs a loop's generation (32 bits), its block count (16 bits)
/// and the next unclaimed block (16 bits) into one atomic word, so a claim
/// checks all three at once.
const FIELD_BITS: u32 = 16;
const MAX_BLOCKS: usize = (1 << FIELD_BITS) - 1;

struct Ticket {
    generation: u64,
    blocks: usize,
    next: usize,
}

impl Ticket {
    fn unpack(word: u64) -> Ticket {
        let mask = (1u64 << FIELD_BITS) - 1;
        Ticket {
            generation: word >> (2 * FIELD_BITS),
            blocks: ((word >> FIELD_BITS) & mask) as usize,
            next: (word & mask) as usize,
        }
    }

    fn pack(&self) -> u64 {
        (self.generation << (2 * FIELD_BITS)) | ((self.blocks as u64) << FIELD_BITS) | self.next as u64
    }
}

/// A published loop body: runs one block of indices. Lives on the publishing
/// thread's stack for as long as any of its blocks is unfinished.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    /// Names the team's threads.
    name: String,
    /// Helpers, not counting the thread that runs the team.
    helpers: usize,
    ticket: AtomicU64,
    /// Points at the current loop's [`Job`] (a thin pointer to a fat one).
    job: AtomicPtr<()>,
    /// Blocks of the current loop that have finished.
    done: AtomicUsize,
    /// Set while one thread's loop owns the helpers.
    busy: AtomicBool,
    /// Runs in progress: helpers spin between loops only while this is non-zero.
    runs: AtomicUsize,
    /// Set while the team's cores are lent to other threads (see [`lend_cores`]).
    lent: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// The pool [`lend_cores`] runs rayon work on; `None` if it failed to start.
    rayon: OnceLock<Option<rayon::ThreadPool>>,
}

impl Shared {
    /// Claims the next block of the current loop and runs it; false when there
    /// was nothing to claim.
    fn work_one(&self) -> bool {
        let word = self.ticket.load(Ordering::Acquire);
        let ticket = Ticket::unpack(word);
        if ticket.next >= ticket.blocks {
            return false;
        }
        // Read before the claim: a successful claim proves the loop is still
        // unfinished, so the publisher has not replaced (or dropped) this job.
        let job = self.job.load(Ordering::Acquire);
        let claimed = Ticket { next: ticket.next + 1, ..ticket }.pack();
        if self.ticket.compare_exchange(word, claimed, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return true;
        }
        // SAFETY: `job` was published for this generation, and the publisher
        // keeps it alive until every claimed block is counted in `done`.
        let job: Job = unsafe { *(job as *const Job) };
        if catch_unwind(AssertUnwindSafe(|| job(ticket.next))).is_err() {
            self.panicked.store(true, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Release);
        true
    }

    fn claimable(&self) -> bool {
        let ticket = Ticket::unpack(self.ticket.load(Ordering::SeqCst));
        ticket.next < ticket.blocks
    }

    fn wake_sleepers(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }

    fn helper_loop(&self) {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            if self.work_one() {
                idle_since = Instant::now();
                spins = 0;
                continue;
            }
            let spinning = self.runs.load(Ordering::Relaxed) > 0 && self.lent.load(Ordering::Relaxed) == 0;
            if spinning && spins < SPINS_PER_CHECK {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            spins = 0;
            if spinning && idle_since.elapsed() < SPIN_LIMIT {
                // Let anything else waiting for this core have it now and then.
                std::thread::yield_now();
                continue;
            }
            self.sleep();
            idle_since = Instant::now();
        }
    }

    /// Sleeps until a loop is published, a run starts, or the team stops.
    fn sleep(&self) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let runs_at_sleep = self.runs.load(Ordering::SeqCst);
        let lent_at_sleep = self.lent.load(Ordering::SeqCst);
        // A run that started after this helper last looked wakes it (so it is
        // spinning by the run's first loop); one already running does not.
        while !self.stop.load(Ordering::SeqCst) && !self.claimable() {
            let (runs, lent) = (self.runs.load(Ordering::SeqCst), self.lent.load(Ordering::SeqCst));
            if (runs > runs_at_sleep || lent < lent_at_sleep) && lent == 0 {
                break;
            }
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fixed set of threads that run the parallel loops of whatever executes
/// inside [`Team::run`].
pub struct Team {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team").field("threads", &self.threads()).finish()
    }
}

thread_local! {
    /// The team of the run this thread is in, if any.
    static CURRENT: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
    /// Set while this thread runs a loop's body: loops inside run serially.
    static IN_LOOP: Cell<bool> = const { Cell::new(false) };
}

impl Team {
    /// A team of `threads` in all: the caller of [`Team::run`] and
    /// `threads - 1` helpers, started now and named `{name}-{i}` (the pool of
    /// [`lend_cores`], if ever started, `{name}-rayon-{i}`).
    pub fn new(threads: usize, name: &str) -> std::io::Result<Team> {
        let helpers = threads.max(1) - 1;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            helpers,
            ticket: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            runs: AtomicUsize::new(0),
            lent: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            rayon: OnceLock::new(),
        });
        let mut team = Team { shared: shared.clone(), threads: Vec::with_capacity(helpers) };
        // Returns once every helper is in its loop, so that thread start-up
        // (and what it allocates) is over before the first run.
        let started = Arc::new(AtomicUsize::new(0));
        for i in 0..helpers {
            let (shared, started) = (shared.clone(), started.clone());
            let handle = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                started.fetch_add(1, Ordering::SeqCst);
                shared.helper_loop()
            })?;
            team.threads.push(handle);
        }
        while started.load(Ordering::SeqCst) < helpers {
            std::thread::yield_now();
        }
        Ok(team)
    }

    /// Threads a loop inside [`Team::run`] splits across, the caller included.
    pub fn threads(&self) -> usize {
        self.shared.helpers + 1
    }

    /// Runs `f` on this thread with the team's helpers splitting the loops it
    /// starts through this module.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Leave<'a> {
            shared: &'a Shared,
            previous: *const Shared,
        }
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.previous));
                self.shared.runs.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let shared = &*self.shared;
        shared.runs.fetch_add(1, Ordering::SeqCst);
        // Wake the helpers now, so that they are spinning by the first loop.
        shared.wake_sleepers();
        let previous = CURRENT.with(|c| c.replace(shared));
        let _leave = Leave { shared, previous };
        f()
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Marks this thread as inside a loop's body until dropped (also by a panic).
struct InLoop;

impl InLoop {
    fn enter() -> InLoop {
        IN_LOOP.with(|c| c.set(true));
        InLoop
    }
}

impl Drop for InLoop {
    fn drop(&mut self) {
        IN_LOOP.with(|c| c.set(false));
    }
}

/// The team this thread's loops may use: the current run's, unless this
/// thread is inside a loop's body already.
fn current() -> Option<&'static Shared> {
    if IN_LOOP.with(Cell::get) {
        return None;
    }
    let shared = CURRENT.with(Cell::get);
    // SAFETY: set only by `Team::run`, which holds the `Arc` for as long as
    // the pointer is installed.
    unsafe { shared.as_ref() }
}

/// Threads a loop started here would split across: the current team's size,
/// or 1 outside a run or inside a loop's body.
pub fn threads() -> usize {
    current().map_or(1, |shared| shared.helpers + 1)
}

/// Calls `body(i)` for every `i` in `0..count`, split across the current
/// team; returns once every call has. A panic in any call is re-raised here,
/// after the others have finished.
pub fn for_each(count: usize, body: impl Fn(usize) + Sync) {
    let shared = match current() {
        Some(shared) if count > 1 && shared.helpers > 0 => shared,
        _ => return (0..count).for_each(body),
    };
    if shared.busy.swap(true, Ordering::Acquire) {
        // Another thread's loop holds the helpers: do this one alone.
        return (0..count).for_each(body);
    }
    let per_block = count.div_ceil(MAX_BLOCKS).max(count / ((shared.helpers + 1) * BLOCKS_PER_THREAD)).max(1);
    let blocks = count.div_ceil(per_block);
    let run_block = |block: usize| {
        let start = block * per_block;
        let _inside = InLoop::enter();
        (start..(start + per_block).min(count)).for_each(&body);
    };
    let job: Job = &run_block;
    shared.done.store(0, Ordering::Relaxed);
    shared.panicked.store(false, Ordering::Relaxed);
    shared.job.store(&job as *const Job as *mut (), Ordering::Release);
    let generation = Ticket::unpack(shared.ticket.load(Ordering::Relaxed)).generation.wrapping_add(1) & 0xFFFF_FFFF;
    shared.ticket.store(Ticket { generation, blocks, next: 0 }.pack(), Ordering::SeqCst);
    shared.wake_sleepers();

    while shared.work_one() {}
    let mut spins = 0u32;
    while shared.done.load(Ordering::Acquire) < blocks {
        // A helper holds the last blocks; it was running a moment ago.
        spins += 1;
        if spins.is_multiple_of(SPINS_PER_CHECK) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    let panicked = shared.panicked.load(Ordering::Relaxed);
    shared.busy.store(false, Ordering::Release);
    if panicked {
        resume_unwind(Box::new("a parallel loop's body panicked"));
    }
}

/// A pointer that may cross threads because each index of a loop touches a
/// disjoint part of what it points at.
struct Disjoint<T>(*mut T);
impl<T> Clone for Disjoint<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Disjoint<T> {}
unsafe impl<T: Send> Sync for Disjoint<T> {}
unsafe impl<T: Send> Send for Disjoint<T> {}

impl<T> Disjoint<T> {
    /// # Safety
    /// Pieces handed out concurrently must not overlap, and `data` must outlive them.
    unsafe fn piece<'a>(self, len: usize, size: usize, i: usize) -> &'a mut [T] {
        let start = i * size;
        std::slice::from_raw_parts_mut(self.0.add(start), size.min(len - start))
    }
}

/// Calls `body(i, piece)` for each `size`-long piece of `data` (the last may
/// be shorter), split across the current team.
pub fn for_each_piece<T: Send>(data: &mut [T], size: usize, body: impl Fn(usize, &mut [T]) + Sync) {
    let (len, size) = (data.len(), size.max(1));
    let ptr = Disjoint(data.as_mut_ptr());
    // SAFETY: index i gets elements [i·size, (i+1)·size) only, and `data` is
    // borrowed mutably until every call has returned.
    for_each(len.div_ceil(size), |i| body(i, unsafe { ptr.piece(len, size, i) }));
}

/// As [`for_each_piece`] over two slices at once: piece `i` of `a` (of
/// `size_a`) with piece `i` of `b` (of `size_b`), for as many pieces as the
/// shorter split has.
pub fn for_each_piece_pair<A: Send, B: Send>(
    a: &mut [A],
    size_a: usize,
    b: &mut [B],
    size_b: usize,
    body: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    let (len_a, size_a, len_b, size_b) = (a.len(), size_a.max(1), b.len(), size_b.max(1));
    let (pa, pb) = (Disjoint(a.as_mut_ptr()), Disjoint(b.as_mut_ptr()));
    let count = len_a.div_ceil(size_a).min(len_b.div_ceil(size_b));
    // SAFETY: as in `for_each_piece`, for each slice.
    for_each(count, |i| body(i, unsafe { pa.piece(len_a, size_a, i) }, unsafe { pb.piece(len_b, size_b, i) }));
}

/// Runs `f` on a rayon pool of the current team's size, with the team's
/// helpers asleep meanwhile, for code that splits its work through rayon (the
/// `gemm` crate) so that the two do not compete for the cores. The pool is
/// started on first use; outside a run, `f` runs on the calling thread.
pub fn lend_cores<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let Some(shared) = current() else { return f() };
    struct Return<'a>(&'a Shared);
    impl Drop for Return<'_> {
        fn drop(&mut self) {
            self.0.lent.fetch_sub(1, Ordering::SeqCst);
            self.0.wake_sleepers();
        }
    }
    let pool = shared.rayon.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(shared.helpers + 1)
            .thread_name(|i| format!("{}-rayon-{i}", shared.name))
            .build()
            .ok()
    });
    shared.lent.fetch_add(1, Ordering::SeqCst);
    let _return = Return(shared);
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_index_runs_once_at_any_count() {
        let team = Team::new(3, "test").unwrap();
        team.run(|| {
            for count in [0, 1, 2, 5, 47, 1000, 70_000, 200_003] {
                let hits: Vec<AtomicU32> = (0..count).map(|_| AtomicU32::new(0)).collect();
                for_each(count, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "count {count}");
            }
        });
    }

    #[test]
    fn helpers_take_part() {
        let team = Team::new(2, "test").unwrap();
        let main = std::thread::current().id();
        let others = AtomicUsize::new(0);
        team.run(|| {
            // Enough slow calls that a spinning helper must claim some.
            for_each(64, |_| {
                if std::thread::current().id() != main {
                    others.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            });
        });
        assert!(others.load(Ordering::Relaxed) > 0);
        assert_eq!(team.threads(), 2);
    }

    #[test]
    fn pieces_cover_the_slice() {
        let team = Team::new(2, "test").unwrap();
        let mut data = vec![0usize; 1003];
        let mut other = vec![0u8; 50];
        team.run(|| {
            for_each_piece(&mut data, 10, |i, piece| piece.iter_mut().for_each(|v| *v += i + 1));
            for_each_piece_pair(&mut data, 100, &mut other, 4, |i, a, b| {
                a[0] += 1000;
                b.fill(i as u8);
            });
        });
        assert!(data.iter().enumerate().all(|(j, &v)| v == j / 10 + 1 + if j % 100 == 0 { 1000 } else { 0 }));
        // 11 pieces of 100 from `data` pair with the first 11 of `other`.
        assert_eq!(other[40..44], [10; 4]);
        assert_eq!(other[44..48], [0; 4]);
    }

    #[test]
    fn nested_loops_and_no_team_run_serially() {
        assert_eq!(threads(), 1);
        let team = Team::new(2, "test").unwrap();
        let sum = AtomicUsize::new(0);
        team.run(|| {
            assert_eq!(threads(), 2);
            for_each(8, |i| {
                assert_eq!(threads(), 1);
                for_each(4, |j| {
                    sum.fetch_add(i * 4 + j, Ordering::Relaxed);
                });
            });
        });
        assert_eq!(sum.load(Ordering::Relaxed), (0..32).sum());
        assert_eq!(threads(), 1);
    }

    #[test]
    fn a_panic_reaches_the_caller_and_the_team_recovers() {
        let team = Team::new(2, "test").unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            team.run(|| {
                for_each(100, |i| {
                    if i == 77 {
                        panic!("body failed");
                    }
                })
            })
        }));
        assert!(caught.is_err());
        let count = AtomicUsize::new(0);
        team.run(|| {
            for_each(100, |_| {
                count.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(count.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn concurrent_runs_share_one_team() {
        let team = Arc::new(Team::new(2, "test").unwrap());
        let total = Arc::new(AtomicUsize::new(0));
        let runners: Vec<_> = (0..4)
            .map(|_| {
                let (team, total) = (team.clone(), total.clone());
                std::thread::spawn(move || {
                    team.run(|| {
                        for _ in 0..200 {
                            for_each(37, |_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        }
                    })
                })
            })
            .collect();
        for r in runners {
            r.join().unwrap();
        }
        assert_eq!(total.load(Ordering::Relaxed), 4 * 200 * 37);
    }

    #[test]
    fn lent_cores_come_back() {
        let team = Team::new(2, "test").unwrap();
        let count = AtomicUsize::new(0);
        team.run(|| {
            let on_pool = lend_cores(|| rayon::current_thread_index().is_some() && rayon::current_num_threads() == 2);
            assert!(on_pool);
            lend_cores(|| std::thread::sleep(Duration::from_millis(5)));
            for_each(1000, |_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(count.load(Ordering::Relaxed), 1000);
    }
}
