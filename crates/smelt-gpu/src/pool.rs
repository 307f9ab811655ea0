//! The buffer pool: device buffers in power-of-two size classes, reused across
//! runs and plans, freed when idle too long or when the idle ones exceed a cap.
//!
//! The pool is generic over what allocates (a wgpu device in Smelt, a counter in
//! the tests), so its policy is tested without a GPU.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Makes device buffers of a given size.
pub trait Allocate: Send + Sync {
    type Buffer: Send;
    fn allocate(&self, bytes: u64) -> Self::Buffer;
}

/// Counters for the server's metrics. Bytes are device bytes of pool buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of every buffer the pool has made and not freed (in use + idle).
    pub allocated_bytes: u64,
    /// Bytes of idle buffers kept for reuse.
    pub pooled_bytes: u64,
    /// Highest `allocated_bytes` seen.
    pub peak_bytes: u64,
    /// Requests served by an idle buffer.
    pub hits: u64,
    /// Requests that made a new buffer.
    pub misses: u64,
    /// Idle buffers freed (too old, or over the cap).
    pub evictions: u64,
}

/// Smallest size class: small tensors share one class instead of one each.
pub const MIN_CLASS_BYTES: u64 = 256;

/// The size class a request of `bytes` is served from.
pub fn size_class(bytes: u64, max_buffer_size: u64) -> u64 {
    let class = bytes.max(MIN_CLASS_BYTES).checked_next_power_of_two().unwrap_or(u64::MAX);
    // Past the device's largest buffer a power of two cannot be made: serve the
    // exact (aligned) size instead.
    if class > max_buffer_size {
        bytes.div_ceil(MIN_CLASS_BYTES) * MIN_CLASS_BYTES
    } else {
        class
    }
}

/// A buffer taken from the pool; give it back with [`BufferPool::release`].
pub struct PooledBuffer<B> {
    pub buffer: B,
    /// Its size class (the buffer's real size).
    pub bytes: u64,
}

struct Idle<B> {
    buffer: B,
    since: Instant,
}

struct State<B> {
    /// Idle buffers by size class, oldest first.
    idle: BTreeMap<u64, Vec<Idle<B>>>,
    stats: PoolStats,
}

pub struct BufferPool<A: Allocate> {
    allocator: A,
    max_idle_bytes: u64,
    max_age: Duration,
    max_buffer_size: u64,
    state: Mutex<State<A::Buffer>>,
}

impl<A: Allocate> BufferPool<A> {
    pub fn new(allocator: A, max_idle_bytes: u64, max_age: Duration, max_buffer_size: u64) -> Self {
        BufferPool {
            allocator,
            max_idle_bytes,
            max_age,
            max_buffer_size,
            state: Mutex::new(State { idle: BTreeMap::new(), stats: PoolStats::default() }),
        }
    }

    pub fn allocator(&self) -> &A {
        &self.allocator
    }

    pub fn acquire(&self, bytes: u64) -> PooledBuffer<A::Buffer> {
        self.acquire_at(bytes, Instant::now())
    }

    /// [`acquire`](Self::acquire) at a given time (the tests move the clock).
    pub fn acquire_at(&self, bytes: u64, now: Instant) -> PooledBuffer<A::Buffer> {
        let class = size_class(bytes, self.max_buffer_size);
        let mut state = self.lock();
        self.evict_old(&mut state, now);
        if let Some(list) = state.idle.get_mut(&class) {
            // Newest first: it is the most likely to be warm in caches and TLBs.
            if let Some(idle) = list.pop() {
                if list.is_empty() {
                    state.idle.remove(&class);
                }
                state.stats.hits += 1;
                state.stats.pooled_bytes -= class;
                return PooledBuffer { buffer: idle.buffer, bytes: class };
            }
        }
        state.stats.misses += 1;
        state.stats.allocated_bytes += class;
        state.stats.peak_bytes = state.stats.peak_bytes.max(state.stats.allocated_bytes);
        drop(state);
        tracing::debug!(bytes, class, "GPU pool: new buffer");
        PooledBuffer { buffer: self.allocator.allocate(class), bytes: class }
    }

    pub fn release(&self, buffer: PooledBuffer<A::Buffer>) {
        self.release_at(buffer, Instant::now())
    }

    pub fn release_at(&self, buffer: PooledBuffer<A::Buffer>, now: Instant) {
        let mut state = self.lock();
        state.stats.pooled_bytes += buffer.bytes;
        state.idle.entry(buffer.bytes).or_default().push(Idle { buffer: buffer.buffer, since: now });
        self.evict_old(&mut state, now);
        // Over the cap: free the oldest idle buffers first.
        while state.stats.pooled_bytes > self.max_idle_bytes {
            let oldest = state.idle.iter().filter_map(|(&c, l)| l.first().map(|i| (i.since, c))).min();
            let Some((_, class)) = oldest else { break };
            self.evict_one(&mut state, class);
        }
    }

    /// Frees idle buffers older than the maximum age; returns how many.
    pub fn trim(&self) -> usize {
        self.trim_at(Instant::now())
    }

    pub fn trim_at(&self, now: Instant) -> usize {
        let mut state = self.lock();
        let before = state.stats.evictions;
        self.evict_old(&mut state, now);
        (state.stats.evictions - before) as usize
    }

    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }

    fn evict_old(&self, state: &mut State<A::Buffer>, now: Instant) {
        let classes: Vec<u64> = state.idle.keys().copied().collect();
        for class in classes {
            while let Some(first) = state.idle.get(&class).and_then(|l| l.first()) {
                if now.saturating_duration_since(first.since) <= self.max_age {
                    break;
                }
                self.evict_one(state, class);
            }
        }
    }

    /// Frees the oldest idle buffer of `class`.
    fn evict_one(&self, state: &mut State<A::Buffer>, class: u64) {
        let Some(list) = state.idle.get_mut(&class) else { return };
        if list.is_empty() {
            return;
        }
        drop(list.remove(0));
        if list.is_empty() {
            state.idle.remove(&class);
        }
        state.stats.pooled_bytes -= class;
        state.stats.allocated_bytes -= class;
        state.stats.evictions += 1;
        tracing::debug!(class, "GPU pool: freed an idle buffer");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<A::Buffer>> {
        // A panic while holding the lock leaves the counters at worst stale; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Hands out numbered "buffers" and counts the live ones.
    #[derive(Default)]
    struct Counter {
        live: Arc<AtomicU64>,
    }

    struct Fake {
        bytes: u64,
        live: Arc<AtomicU64>,
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.live.fetch_sub(self.bytes, Ordering::SeqCst);
        }
    }

    impl Allocate for Counter {
        type Buffer = Fake;
        fn allocate(&self, bytes: u64) -> Fake {
            self.live.fetch_add(bytes, Ordering::SeqCst);
            Fake { bytes, live: self.live.clone() }
        }
    }

    fn pool(cap: u64, age_secs: u64) -> BufferPool<Counter> {
        BufferPool::new(Counter::default(), cap, Duration::from_secs(age_secs), 1 << 40)
    }

    #[test]
    fn size_classes_are_powers_of_two_with_a_floor() {
        assert_eq!(size_class(1, 1 << 30), 256);
        assert_eq!(size_class(256, 1 << 30), 256);
        assert_eq!(size_class(257, 1 << 30), 512);
        assert_eq!(size_class(3 << 20, 1 << 30), 4 << 20);
        // Beyond the largest buffer: exact size rounded to 256.
        assert_eq!(size_class((1 << 30) + 1, 1 << 30), (1 << 30) + 256);
    }

    #[test]
    fn reuse_hits_and_misses() {
        let p = pool(1 << 30, 60);
        let t = Instant::now();
        let a = p.acquire_at(1000, t);
        assert_eq!(a.bytes, 1024);
        p.release_at(a, t);
        let b = p.acquire_at(700, t);
        assert_eq!(b.bytes, 1024, "700 bytes come from the 1 KiB class");
        let c = p.acquire_at(700, t);
        let s = p.stats();
        assert_eq!((s.hits, s.misses), (1, 2));
        assert_eq!(s.allocated_bytes, 2048);
        assert_eq!(s.pooled_bytes, 0);
        p.release_at(b, t);
        p.release_at(c, t);
        let s = p.stats();
        assert_eq!((s.pooled_bytes, s.allocated_bytes, s.peak_bytes), (2048, 2048, 2048));
        assert_eq!(p.allocator().live.load(Ordering::SeqCst), 2048);
    }

    #[test]
    fn idle_buffers_age_out() {
        let p = pool(1 << 30, 10);
        let t = Instant::now();
        let a = p.acquire_at(5000, t);
        let b = p.acquire_at(100, t);
        p.release_at(a, t);
        p.release_at(b, t + Duration::from_secs(8));
        assert_eq!(p.trim_at(t + Duration::from_secs(9)), 0, "nothing is older than 10 s yet");
        assert_eq!(p.trim_at(t + Duration::from_secs(11)), 1, "the first buffer is");
        assert_eq!(p.stats().pooled_bytes, 256);
        // An acquire also ages the pool before looking.
        let c = p.acquire_at(100, t + Duration::from_secs(30));
        let s = p.stats();
        assert_eq!(s.evictions, 2);
        assert_eq!(s.misses, 3, "the aged 256 B buffer was freed, not reused");
        assert_eq!(p.allocator().live.load(Ordering::SeqCst), 256);
        drop(c);
    }

    #[test]
    fn idle_bytes_stay_under_the_cap() {
        let p = pool(4096, 60);
        let t = Instant::now();
        let bufs: Vec<_> = (0..4).map(|_| p.acquire_at(2048, t)).collect();
        assert_eq!(p.stats().allocated_bytes, 8192, "buffers in use are not capped");
        for (i, b) in bufs.into_iter().enumerate() {
            p.release_at(b, t + Duration::from_secs(i as u64));
        }
        let s = p.stats();
        assert_eq!(s.pooled_bytes, 4096);
        assert_eq!(s.evictions, 2);
        assert_eq!(s.allocated_bytes, 4096);
        assert_eq!(s.peak_bytes, 8192);
        assert_eq!(p.allocator().live.load(Ordering::SeqCst), 4096, "evicted buffers are really freed");
    }
}
