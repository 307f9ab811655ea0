//! The requests of one model version waiting for an execution, by priority level
//! (1 first), each level in arrival order followed by its delayed requests
//! (those whose timeout passed under a DELAY policy).

use super::policy::{QueuePolicy, TimeoutAction};
use super::{BatchKey, Reply};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// One waiting request.
pub struct Entry<J, R> {
    pub id: u64,
    pub job: J,
    /// Its batch size (1 when the model does not batch).
    pub batch_size: usize,
    /// Requests batch together only when their keys are equal.
    pub key: BatchKey,
    pub enqueued: Instant,
    /// When it stops waiting (what happens then is its level's timeout action).
    pub deadline: Option<Instant>,
    pub reply: Reply<R>,
}

impl<J, R> Entry<J, R> {
    /// Whoever awaited the answer has gone (the client disconnected).
    pub fn cancelled(&self) -> bool {
        self.reply.is_closed()
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}

struct Level<J, R> {
    action: TimeoutAction,
    waiting: VecDeque<Entry<J, R>>,
    delayed: VecDeque<Entry<J, R>>,
}

impl<J, R> Level<J, R> {
    fn len(&self) -> usize {
        self.waiting.len() + self.delayed.len()
    }
}

/// What [`PendingQueue::sweep`] took out of the queue.
pub struct Swept<J, R> {
    /// Timed out under a REJECT policy: to be answered with a timeout error.
    pub rejected: Vec<Entry<J, R>>,
    /// Nobody waits for them any more: to be dropped unanswered.
    pub cancelled: Vec<Entry<J, R>>,
}

pub struct PendingQueue<J, R> {
    levels: BTreeMap<u64, Level<J, R>>,
    len: usize,
}

impl<J, R> Default for PendingQueue<J, R> {
    fn default() -> Self {
        PendingQueue { levels: BTreeMap::new(), len: 0 }
    }
}

impl<J, R> PendingQueue<J, R> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `entry` at `level`, or gives it back when the level is full.
    pub fn push(&mut self, level: u64, policy: &QueuePolicy, entry: Entry<J, R>) -> Result<(), Entry<J, R>> {
        let queue = self.levels.entry(level).or_insert_with(|| Level {
            action: policy.timeout_action,
            waiting: VecDeque::new(),
            delayed: VecDeque::new(),
        });
        if policy.max_queue_size.is_some_and(|max| queue.len() >= max) {
            return Err(entry);
        }
        queue.waiting.push_back(entry);
        self.len += 1;
        Ok(())
    }

    /// Takes out cancelled requests and those whose timeout passed under REJECT;
    /// moves those whose timeout passed under DELAY behind their level.
    pub fn sweep(&mut self, now: Instant) -> Swept<J, R> {
        let mut swept = Swept { rejected: Vec::new(), cancelled: Vec::new() };
        for level in self.levels.values_mut() {
            let mut kept = VecDeque::with_capacity(level.waiting.len());
            for entry in level.waiting.drain(..) {
                if entry.cancelled() {
                    swept.cancelled.push(entry);
                } else if entry.expired(now) {
                    match level.action {
                        TimeoutAction::Reject => swept.rejected.push(entry),
                        TimeoutAction::Delay => level.delayed.push_back(entry),
                    }
                } else {
                    kept.push_back(entry);
                }
            }
            level.waiting = kept;
            let (cancelled, delayed): (Vec<_>, Vec<_>) = level.delayed.drain(..).partition(Entry::cancelled);
            level.delayed = delayed.into();
            swept.cancelled.extend(cancelled);
        }
        self.len -= swept.rejected.len() + swept.cancelled.len();
        self.levels.retain(|_, l| l.len() > 0);
        swept
    }

    /// Every waiting request in the order batches take them.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<J, R>> {
        self.levels.values().flat_map(|l| l.waiting.iter().chain(l.delayed.iter()))
    }

    /// Takes the first `n` requests of [`iter`](Self::iter)'s order.
    pub fn take_front(&mut self, n: usize) -> Vec<Entry<J, R>> {
        let mut taken = Vec::with_capacity(n);
        for level in self.levels.values_mut() {
            while taken.len() < n {
                match level.waiting.pop_front().or_else(|| level.delayed.pop_front()) {
                    Some(entry) => taken.push(entry),
                    None => break,
                }
            }
        }
        self.len -= taken.len();
        self.levels.retain(|_, l| l.len() > 0);
        taken
    }

    /// Takes out the request `id` if it is still waiting.
    pub fn remove(&mut self, id: u64) -> Option<Entry<J, R>> {
        let mut found = None;
        'levels: for level in self.levels.values_mut() {
            for queue in [&mut level.waiting, &mut level.delayed] {
                if let Some(at) = queue.iter().position(|e| e.id == id) {
                    found = queue.remove(at);
                    break 'levels;
                }
            }
        }
        if found.is_some() {
            self.len -= 1;
            self.levels.retain(|_, l| l.len() > 0);
        }
        found
    }

    /// Empties the queue (the model version is going away).
    pub fn drain(&mut self) -> Vec<Entry<J, R>> {
        let levels = std::mem::take(&mut self.levels);
        self.len = 0;
        levels.into_values().flat_map(|l| l.waiting.into_iter().chain(l.delayed)).collect()
    }
}
