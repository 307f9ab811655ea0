//! When to send which waiting requests to a free instance: Triton's dynamic
//! batching rules, as a pure function of the queue and the clock.
//!
//! Requests are taken in queue order (priority, then arrival) and never split.
//! A batch grows while the next request fits under the largest preferred batch
//! size (or max_batch_size without preferred sizes) and has the same shapes and
//! datatypes as the batch. It is sent at once when it reaches a preferred size or
//! cannot grow any more; otherwise it waits until its oldest request has waited
//! max_queue_delay, and is then sent as it is.

use super::policy::SchedulerConfig;
use super::queue::PendingQueue;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send the first `n` requests of the queue as one execution.
    Send(usize),
    /// Nothing to send before this instant, unless new requests arrive.
    Wait(Instant),
    /// The queue is empty.
    Idle,
}

pub fn decide<J, R>(queue: &PendingQueue<J, R>, config: &SchedulerConfig, now: Instant) -> Decision {
    let mut entries = queue.iter();
    let Some(first) = entries.next() else { return Decision::Idle };
    if !config.batching {
        return Decision::Send(1);
    }
    let limit = config.max_preferred_batch_size();
    let mut size = first.batch_size;
    let mut count = 1;
    let mut oldest = first.enqueued;
    // The request count of the largest preferred batch seen so far.
    let mut preferred = config.preferred_batch_sizes.contains(&size).then_some(count);
    let mut full = false;
    for entry in entries {
        if size + entry.batch_size > limit || entry.key != first.key {
            full = true;
            break;
        }
        size += entry.batch_size;
        count += 1;
        oldest = oldest.min(entry.enqueued);
        if config.preferred_batch_sizes.contains(&size) {
            preferred = Some(count);
        }
    }
    let delay = config.max_queue_delay;
    let delay_over = !delay.is_zero() && now.duration_since(oldest) >= delay;
    match preferred {
        Some(n) if !delay_over => Decision::Send(n),
        _ if full || size >= limit || delay.is_zero() || delay_over => Decision::Send(count),
        _ => Decision::Wait(oldest + delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::policy::QueuePolicy;
    use crate::scheduler::queue::Entry;
    use crate::scheduler::BatchKey;
    use std::time::Duration;
    use tokio::sync::oneshot;

    type Queue = PendingQueue<u32, u32>;

    struct Fixture {
        queue: Queue,
        /// Keeps every reply channel open, so no entry reads as cancelled.
        _receivers: Vec<oneshot::Receiver<Result<crate::scheduler::Executed<u32>, crate::scheduler::Failure>>>,
        start: Instant,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture { queue: Queue::default(), _receivers: Vec::new(), start: Instant::now() }
        }

        /// Queues request `id` of `batch_size`, `ms` after the start.
        fn push(&mut self, id: u32, batch_size: usize, key: &str, ms: u64) {
            let (tx, rx) = oneshot::channel();
            self._receivers.push(rx);
            let entry = Entry {
                id: id as u64,
                job: id,
                batch_size,
                key: BatchKey::new(vec![(key.to_string(), "FP32".to_string(), vec![4])]),
                enqueued: self.start + Duration::from_millis(ms),
                deadline: None,
                reply: tx,
            };
            assert!(self.queue.push(0, &QueuePolicy::unbounded(), entry).is_ok());
        }

        fn at(&self, ms: u64) -> Instant {
            self.start + Duration::from_millis(ms)
        }
    }

    fn batching(max: usize, preferred: &[usize], delay_ms: u64) -> SchedulerConfig {
        SchedulerConfig {
            batching: true,
            max_batch_size: max,
            preferred_batch_sizes: preferred.to_vec(),
            max_queue_delay: Duration::from_millis(delay_ms),
            ..SchedulerConfig::default_scheduler(1)
        }
    }

    #[test]
    fn without_delay_everything_waiting_goes_at_once_up_to_the_limit() {
        let mut f = Fixture::new();
        let config = batching(8, &[], 0);
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Idle);
        for (id, size) in [(1, 3), (2, 3), (3, 3)] {
            f.push(id, size, "a", 0);
        }
        // 3 + 3 fit in 8; the third would make 9.
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Send(2));
        let taken: Vec<u32> = f.queue.take_front(2).into_iter().map(|e| e.job).collect();
        assert_eq!(taken, vec![1, 2], "arrival order");
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Send(1));
    }

    #[test]
    fn a_preferred_size_is_sent_at_once_otherwise_the_delay_is_awaited() {
        let mut f = Fixture::new();
        let config = batching(8, &[2, 4], 100);
        f.push(1, 1, "a", 0);
        assert_eq!(decide(&f.queue, &config, f.at(10)), Decision::Wait(f.at(100)));
        f.push(2, 1, "a", 20);
        // 2 is preferred: sent without waiting for the delay.
        assert_eq!(decide(&f.queue, &config, f.at(20)), Decision::Send(2));
        f.push(3, 1, "a", 30);
        // 3 is not preferred; 2 is the largest preferred batch that can be formed.
        assert_eq!(decide(&f.queue, &config, f.at(30)), Decision::Send(2));
        f.push(4, 1, "a", 40);
        assert_eq!(decide(&f.queue, &config, f.at(40)), Decision::Send(4));
    }

    #[test]
    fn after_the_delay_whatever_is_waiting_is_sent() {
        let mut f = Fixture::new();
        let config = batching(8, &[4], 100);
        f.push(1, 1, "a", 0);
        f.push(2, 2, "a", 50);
        assert_eq!(decide(&f.queue, &config, f.at(99)), Decision::Wait(f.at(100)));
        assert_eq!(decide(&f.queue, &config, f.at(100)), Decision::Send(2));
    }

    #[test]
    fn the_largest_preferred_size_caps_a_batch() {
        let mut f = Fixture::new();
        let config = batching(16, &[2, 4], 1000);
        for id in 0..6 {
            f.push(id, 1, "a", 0);
        }
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Send(4));
        // A request bigger than every preferred size still runs, alone.
        let mut f = Fixture::new();
        f.push(1, 8, "a", 0);
        f.push(2, 1, "a", 0);
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Send(1));
    }

    #[test]
    fn requests_with_other_shapes_are_not_batched_together() {
        let mut f = Fixture::new();
        let config = batching(8, &[], 100);
        f.push(1, 1, "a", 0);
        f.push(2, 1, "b", 0);
        f.push(3, 1, "a", 0);
        // The batch stops at the first request that differs, without waiting.
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Send(1));
        f.queue.take_front(1);
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Send(1));
        f.queue.take_front(1);
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Wait(f.at(100)));
    }

    #[test]
    fn without_batching_each_request_runs_alone() {
        let mut f = Fixture::new();
        let config = SchedulerConfig::default_scheduler(2);
        f.push(1, 1, "a", 0);
        f.push(2, 1, "a", 0);
        assert_eq!(decide(&f.queue, &config, f.at(0)), Decision::Send(1));
    }
}
