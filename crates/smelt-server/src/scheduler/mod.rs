//! The scheduler of one model version: requests wait in a priority queue, a
//! batcher task forms executions from them (one request each, or dynamic batches)
//! and hands each to a free instance (an execution slot) on a blocking thread.
//!
//! - [`policy`]: the scheduling fields of the configuration.
//! - [`queue`]: the waiting requests by priority level.
//! - [`batcher`]: which requests go next, and when.
//! - [`tensors`]: merging request tensors along the batch dimension and back.
//!
//! The model run itself is behind [`Executor`], so the scheduling rules are
//! tested with a stand-in for the model.

pub mod batcher;
pub mod policy;
pub mod queue;
pub mod tensors;

use crate::error::ServerError;
use crate::stats::FailureReason;
use batcher::{decide, Decision};
use policy::{SchedulerConfig, TimeoutAction};
use queue::{Entry, PendingQueue};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

pub use policy::QueuePolicy;

/// Runs executions of a model: one call per batch, one result per job, in order.
/// Called on a blocking thread.
pub trait Executor: Send + Sync + 'static {
    type Job: Send + 'static;
    type Output: Send + 'static;
    fn execute(&self, jobs: Vec<Self::Job>) -> Vec<Result<Self::Output, Failure>>;
}

/// Requests batch together only when their keys are equal: the names, datatypes
/// and shapes (without the batch dimension) of their inputs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchKey(Vec<(String, String, Vec<usize>)>);

impl BatchKey {
    pub fn new(mut inputs: Vec<(String, String, Vec<usize>)>) -> BatchKey {
        inputs.sort();
        BatchKey(inputs)
    }
}

/// Why a request got no result, and how Triton's metrics count it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub error: ServerError,
    pub reason: FailureReason,
}

impl Failure {
    pub fn new(error: ServerError, reason: FailureReason) -> Failure {
        Failure { error, reason }
    }

    fn timeout() -> Failure {
        Failure::new(ServerError::unavailable("Request timeout expired"), FailureReason::Rejected)
    }
}

/// A job's result and how long it waited in the queue.
#[derive(Debug)]
pub struct Executed<R> {
    pub output: R,
    pub queue: Duration,
}

pub type Reply<R> = oneshot::Sender<Result<Executed<R>, Failure>>;

/// How one request asks to be scheduled.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// Its batch size (1 when the model does not batch).
    pub batch_size: usize,
    pub key: BatchKey,
    /// The request's `priority` parameter (0: none).
    pub priority: u64,
    /// The request's `timeout` parameter.
    pub timeout: Option<Duration>,
}

struct Shared<J, R> {
    config: SchedulerConfig,
    queue: Mutex<PendingQueue<J, R>>,
    /// Wakes the batcher: a request arrived, or the scheduler is closing.
    arrived: Notify,
    instances: Arc<Semaphore>,
    closed: AtomicBool,
    next_id: AtomicU64,
}

impl<J, R> Shared<J, R> {
    fn lock(&self) -> MutexGuard<'_, PendingQueue<J, R>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The scheduler of one model version.
pub struct Scheduler<E: Executor> {
    shared: Arc<Shared<E::Job, E::Output>>,
    executor: Arc<E>,
    /// The batcher task is started by the first request, so that a scheduler can
    /// be made outside an async runtime (model loads run on blocking threads).
    started: Once,
    /// Names the model in errors.
    model: String,
}

impl<E: Executor> Drop for Scheduler<E> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.instances.close();
        self.shared.arrived.notify_one();
    }
}

impl<E: Executor> Scheduler<E> {
    pub fn new(model: &str, config: SchedulerConfig, executor: Arc<E>) -> Scheduler<E> {
        let instances = Arc::new(Semaphore::new(config.instances.max(1)));
        Scheduler {
            shared: Arc::new(Shared {
                config,
                queue: Mutex::new(PendingQueue::default()),
                arrived: Notify::new(),
                instances,
                closed: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
            }),
            executor,
            started: Once::new(),
            model: model.to_string(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.shared.config
    }

    /// Requests waiting for an execution.
    pub fn pending(&self) -> usize {
        self.shared.lock().len()
    }

    /// Queues `job` and waits for its result. Dropping the returned future takes
    /// the job out of consideration: a request whose client went away is skipped,
    /// not executed.
    pub async fn submit(&self, job: E::Job, admission: Admission) -> Result<Executed<E::Output>, Failure> {
        self.started.call_once(|| {
            tokio::spawn(run_batcher(self.shared.clone(), self.executor.clone()));
        });
        let shared = &self.shared;
        let config = &shared.config;
        let level = config.level_of(admission.priority);
        let policy = *config.policy_of(level);
        let now = Instant::now();
        let deadline = policy.timeout_for(admission.timeout).map(|t| now + t);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        let entry = Entry {
            id,
            job,
            batch_size: admission.batch_size.max(1),
            key: admission.key,
            enqueued: now,
            deadline,
            reply,
        };
        if shared.lock().push(level, &policy, entry).is_err() {
            return Err(Failure::new(ServerError::unavailable("Exceeds maximum queue size"), FailureReason::Rejected));
        }
        shared.arrived.notify_one();
        let rejecting = deadline.filter(|_| policy.timeout_action == TimeoutAction::Reject);
        if let Some(deadline) = rejecting {
            tokio::select! {
                answered = &mut answer => return answered.unwrap_or_else(|_| Err(self.unloaded())),
                () = tokio::time::sleep_until(deadline.into()) => {
                    // Still waiting: it times out here. Already taken into an
                    // execution: its result comes.
                    if shared.lock().remove(id).is_some() {
                        return Err(Failure::timeout());
                    }
                }
            }
        }
        answer.await.unwrap_or_else(|_| Err(self.unloaded()))
    }

    fn unloaded(&self) -> Failure {
        Failure::new(
            ServerError::unavailable(format!("model '{}' was unloaded before the request ran", self.model)),
            FailureReason::Other,
        )
    }
}

/// Forms executions for as long as the scheduler lives: takes a free instance,
/// waits until the queue yields a batch, and runs it on that instance.
async fn run_batcher<E: Executor>(shared: Arc<Shared<E::Job, E::Output>>, executor: Arc<E>) {
    'slots: while let Ok(permit) = shared.instances.clone().acquire_owned().await {
        let batch = loop {
            if shared.closed.load(Ordering::SeqCst) {
                break 'slots;
            }
            let now = Instant::now();
            let (batch, wait, swept) = {
                let mut queue = shared.lock();
                let swept = queue.sweep(now);
                match decide(&queue, &shared.config, now) {
                    Decision::Send(n) => (Some(queue.take_front(n)), None, swept),
                    Decision::Wait(until) => (None, Some(until), swept),
                    Decision::Idle => (None, None, swept),
                }
            };
            for entry in swept.rejected {
                let _ = entry.reply.send(Err(Failure::timeout()));
            }
            drop(swept.cancelled);
            if let Some(batch) = batch {
                break batch;
            }
            match wait {
                Some(until) => {
                    tokio::select! {
                        () = shared.arrived.notified() => {}
                        () = tokio::time::sleep_until(until.into()) => {}
                    }
                }
                None => shared.arrived.notified().await,
            }
        };
        tokio::spawn(execute(executor.clone(), batch, permit));
    }
    // Closing: nothing queued will run.
    let left = shared.lock().drain();
    for entry in left {
        let _ = entry.reply.send(Err(Failure::new(
            ServerError::unavailable("the model was unloaded before the request ran"),
            FailureReason::Other,
        )));
    }
}

/// Runs one batch on the instance `permit` holds and answers each request.
async fn execute<E: Executor>(executor: Arc<E>, batch: Vec<Entry<E::Job, E::Output>>, permit: OwnedSemaphorePermit) {
    let start = Instant::now();
    // A client may have gone while the batch formed.
    let batch: Vec<_> = batch.into_iter().filter(|e| !e.cancelled()).collect();
    if batch.is_empty() {
        return;
    }
    let mut jobs = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for entry in batch {
        replies.push((entry.reply, start.duration_since(entry.enqueued)));
        jobs.push(entry.job);
    }
    let count = jobs.len();
    let results = tokio::task::spawn_blocking(move || executor.execute(jobs)).await;
    drop(permit);
    let mut results = match results {
        Ok(results) => results.into_iter().map(Some).collect::<Vec<_>>(),
        Err(e) => {
            let failure =
                Failure::new(ServerError::internal(format!("the model run failed: {e}")), FailureReason::Backend);
            (0..count).map(|_| Some(Err(failure.clone()))).collect()
        }
    };
    results.resize_with(count, || None);
    for ((reply, queue), result) in replies.into_iter().zip(results) {
        let result = result.unwrap_or_else(|| {
            Err(Failure::new(ServerError::internal("the model gave no result for a request"), FailureReason::Backend))
        });
        let _ = reply.send(result.map(|output| Executed { output, queue }));
    }
}

#[cfg(test)]
mod tests {
    use super::policy::QueuePolicy;
    use super::*;
    use std::sync::Condvar;
    use tokio::task::JoinHandle;

    /// Stands in for the model: records each execution's jobs and answers each job
    /// with its own number. Job 0 holds its execution until `open` is called, so
    /// that the next requests queue up behind it.
    #[derive(Default)]
    struct FakeModel {
        executions: Mutex<Vec<Vec<u32>>>,
        gate: (Mutex<bool>, Condvar),
    }

    impl FakeModel {
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }

        fn executions(&self) -> Vec<Vec<u32>> {
            self.executions.lock().unwrap().clone()
        }
    }

    impl Executor for FakeModel {
        type Job = u32;
        type Output = u32;

        fn execute(&self, jobs: Vec<u32>) -> Vec<Result<u32, Failure>> {
            self.executions.lock().unwrap().push(jobs.clone());
            if jobs.contains(&0) {
                let mut open = self.gate.0.lock().unwrap();
                while !*open {
                    open = self.gate.1.wait(open).unwrap();
                }
            }
            jobs.into_iter().map(Ok).collect()
        }
    }

    fn batching(max: usize) -> SchedulerConfig {
        SchedulerConfig { batching: true, max_batch_size: max, ..SchedulerConfig::default_scheduler(1) }
    }

    fn admission(batch_size: usize) -> Admission {
        Admission { batch_size, key: BatchKey::new(vec![("x".into(), "FP32".into(), vec![2])]), ..Default::default() }
    }

    struct Harness {
        model: Arc<FakeModel>,
        scheduler: Arc<Scheduler<FakeModel>>,
    }

    impl Harness {
        fn new(config: SchedulerConfig) -> Harness {
            let model = Arc::new(FakeModel::default());
            Harness { scheduler: Arc::new(Scheduler::new("fake", config, model.clone())), model }
        }

        fn submit(&self, job: u32, admission: Admission) -> JoinHandle<Result<u32, Failure>> {
            let scheduler = self.scheduler.clone();
            tokio::spawn(async move { scheduler.submit(job, admission).await.map(|e| e.output) })
        }

        /// Starts job 0, which keeps the only instance busy until `open`.
        async fn occupy(&self) -> JoinHandle<Result<u32, Failure>> {
            let busy = self.submit(0, admission(1));
            self.until(|h| !h.model.executions().is_empty()).await;
            busy
        }

        /// Submits jobs one after another, each queued before the next arrives.
        async fn queue(&self, jobs: &[(u32, Admission)]) -> Vec<JoinHandle<Result<u32, Failure>>> {
            let mut handles = Vec::new();
            for (job, admission) in jobs {
                let before = self.scheduler.pending();
                handles.push(self.submit(*job, admission.clone()));
                self.until(|h| h.scheduler.pending() > before).await;
            }
            handles
        }

        async fn until(&self, condition: impl Fn(&Harness) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !condition(self) {
                assert!(Instant::now() < deadline, "condition not reached in 10 s");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    async fn results(handles: Vec<JoinHandle<Result<u32, Failure>>>) -> Vec<Result<u32, Failure>> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_queued_behind_a_busy_instance_form_one_batch_in_arrival_order() {
        let h = Harness::new(batching(8));
        let busy = h.occupy().await;
        let queued = h.queue(&[(1, admission(2)), (2, admission(1)), (3, admission(3))]).await;
        h.model.open();
        assert_eq!(busy.await.unwrap().unwrap(), 0);
        // Every request gets its own answer.
        let answers: Vec<u32> = results(queued).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, vec![1, 2, 3]);
        assert_eq!(h.model.executions(), vec![vec![0], vec![1, 2, 3]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_never_exceeds_max_batch_size_and_requests_are_never_split() {
        let h = Harness::new(batching(4));
        let busy = h.occupy().await;
        let queued = h.queue(&[(1, admission(3)), (2, admission(3)), (3, admission(1))]).await;
        h.model.open();
        busy.await.unwrap().unwrap();
        assert!(results(queued).await.iter().all(Result::is_ok));
        assert_eq!(h.model.executions(), vec![vec![0], vec![1], vec![2, 3]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_with_other_shapes_run_apart() {
        let h = Harness::new(batching(8));
        let busy = h.occupy().await;
        let other = Admission { key: BatchKey::new(vec![("x".into(), "FP32".into(), vec![3])]), ..admission(1) };
        let queued = h.queue(&[(1, admission(1)), (2, other), (3, admission(1))]).await;
        h.model.open();
        busy.await.unwrap().unwrap();
        assert!(results(queued).await.iter().all(Result::is_ok));
        assert_eq!(h.model.executions(), vec![vec![0], vec![1], vec![2], vec![3]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_request_waits_for_the_queue_delay_and_a_preferred_batch_does_not() {
        let delay = Duration::from_millis(300);
        let config = SchedulerConfig { preferred_batch_sizes: vec![2], max_queue_delay: delay, ..batching(8) };
        let h = Harness::new(config);
        let start = Instant::now();
        assert_eq!(h.submit(7, admission(1)).await.unwrap().unwrap(), 7);
        assert!(start.elapsed() >= delay, "sent after {:?}, before the delay", start.elapsed());

        let start = Instant::now();
        let pair = [h.submit(8, admission(1)), h.submit(9, admission(1))];
        for handle in pair {
            handle.await.unwrap().unwrap();
        }
        assert!(start.elapsed() < delay, "a preferred batch waited {:?}", start.elapsed());
        assert_eq!(h.model.executions().last().map(Vec::len), Some(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_rejects() {
        let policy = QueuePolicy { max_queue_size: Some(1), ..QueuePolicy::unbounded() };
        let h = Harness::new(SchedulerConfig { default_policy: policy, ..batching(8) });
        let busy = h.occupy().await;
        let queued = h.queue(&[(1, admission(1))]).await;
        let refused = h.submit(2, admission(1)).await.unwrap().unwrap_err();
        assert_eq!(refused.reason, FailureReason::Rejected);
        assert_eq!(refused.error.kind, crate::error::ErrorKind::Unavailable);
        assert_eq!(refused.error.message, "Exceeds maximum queue size");
        h.model.open();
        busy.await.unwrap().unwrap();
        assert_eq!(results(queued).await[0].as_ref().unwrap(), &1);
        assert_eq!(h.model.executions(), vec![vec![0], vec![1]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_times_out_in_the_queue_is_rejected_and_never_runs() {
        let h = Harness::new(SchedulerConfig::default_scheduler(1));
        let busy = h.occupy().await;
        let timeout = Duration::from_millis(30);
        let start = Instant::now();
        let expired = h.submit(1, Admission { timeout: Some(timeout), ..admission(1) }).await.unwrap().unwrap_err();
        assert!(start.elapsed() >= timeout && start.elapsed() < Duration::from_secs(5));
        assert_eq!(expired.error.message, "Request timeout expired");
        assert_eq!(expired.error.kind, crate::error::ErrorKind::Unavailable);
        assert_eq!(expired.reason, FailureReason::Rejected);
        assert_eq!(h.scheduler.pending(), 0);
        h.model.open();
        busy.await.unwrap().unwrap();
        assert_eq!(h.submit(2, admission(1)).await.unwrap().unwrap(), 2);
        assert_eq!(h.model.executions(), vec![vec![0], vec![2]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delayed_request_runs_after_those_that_did_not_time_out() {
        let policy = QueuePolicy {
            default_timeout: Some(Duration::from_millis(20)),
            timeout_action: policy::TimeoutAction::Delay,
            allow_timeout_override: false,
            max_queue_size: None,
        };
        let h = Harness::new(SchedulerConfig { default_policy: policy, ..SchedulerConfig::default_scheduler(1) });
        let busy = h.occupy().await;
        let mut queued = h.queue(&[(1, admission(1))]).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        queued.extend(h.queue(&[(2, admission(1))]).await);
        h.model.open();
        busy.await.unwrap().unwrap();
        let answers: Vec<u32> = results(queued).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, vec![1, 2], "a delayed request still runs");
        assert_eq!(h.model.executions(), vec![vec![0], vec![2], vec![1]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn higher_priority_levels_run_first() {
        let config =
            SchedulerConfig { priority_levels: 2, default_priority_level: 2, ..SchedulerConfig::default_scheduler(1) };
        let h = Harness::new(config);
        let busy = h.occupy().await;
        let at = |priority| Admission { priority, ..admission(1) };
        // Priority 0 takes the default level (2); 9 is out of range, also level 2.
        let queued = h.queue(&[(1, at(2)), (2, at(0)), (3, at(1)), (4, at(9))]).await;
        h.model.open();
        busy.await.unwrap().unwrap();
        assert!(results(queued).await.iter().all(Result::is_ok));
        assert_eq!(h.model.executions(), vec![vec![0], vec![3], vec![1], vec![2], vec![4]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_whose_caller_went_away_is_skipped() {
        let h = Harness::new(batching(8));
        let busy = h.occupy().await;
        let gone = h.queue(&[(1, admission(1))]).await.remove(0);
        // The client disconnects: the future awaiting the answer is dropped.
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        let kept = h.queue(&[(2, admission(1))]).await;
        h.model.open();
        busy.await.unwrap().unwrap();
        assert_eq!(results(kept).await[0].as_ref().unwrap(), &2);
        assert_eq!(h.model.executions(), vec![vec![0], vec![2]]);
        assert_eq!(h.scheduler.pending(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_run_side_by_side() {
        let h = Harness::new(SchedulerConfig::default_scheduler(2));
        let busy = h.occupy().await;
        // The second instance serves while the first is held.
        assert_eq!(h.submit(5, admission(1)).await.unwrap().unwrap(), 5);
        h.model.open();
        busy.await.unwrap().unwrap();
    }
}
