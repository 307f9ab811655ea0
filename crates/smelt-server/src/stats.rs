//! Per model version statistics in Triton's schema (the `statistics` extension and
//! the `nv_inference_*` metrics): counts and cumulative nanoseconds per stage, per
//! batch size, failures by reason, and recent latencies for the summaries.
//!
//! With dynamic batching one execution serves several requests: the execution
//! count counts executions (batches), the inference count counts inferences
//! (batch items), and each request is counted once as a success or a failure.

use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often something happened and how long it took in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub ns: u64,
}

impl Tally {
    fn add(&mut self, d: Duration) {
        self.count += 1;
        self.ns = self.ns.saturating_add(nanos(d));
    }

    fn json(&self) -> Value {
        json!({ "count": self.count, "ns": self.ns })
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Why a request failed, as the `reason` label of `nv_inference_request_failure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureReason {
    /// Refused by the scheduler: queue full, or queue timeout expired.
    Rejected,
    /// The client went away before the request ran.
    Canceled,
    /// The model run failed.
    Backend,
    /// Anything else (a malformed request, an unloaded model).
    Other,
}

impl FailureReason {
    pub const ALL: [FailureReason; 4] =
        [FailureReason::Rejected, FailureReason::Canceled, FailureReason::Backend, FailureReason::Other];

    pub fn label(self) -> &'static str {
        match self {
            FailureReason::Rejected => "REJECTED",
            FailureReason::Canceled => "CANCELED",
            FailureReason::Backend => "BACKEND",
            FailureReason::Other => "OTHER",
        }
    }
}

/// The durations of one request that succeeded.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestTimes {
    /// Waiting in the scheduler's queue.
    pub queue: Duration,
    /// The compute stages of the execution that served it.
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
    /// From the request's arrival at the model to its response.
    pub total: Duration,
}

/// The durations of one execution (a batch of one or more requests).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecutionTimes {
    /// Inferences in the execution: the sum of its requests' batch sizes.
    pub batch_size: u64,
    /// Turning the requests' tensors into the model's inputs.
    pub compute_input: Duration,
    /// Running the model.
    pub compute_infer: Duration,
    /// Turning the model's outputs into the responses' tensors.
    pub compute_output: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchTally {
    pub compute_input: Tally,
    pub compute_infer: Tally,
    pub compute_output: Tally,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub last_inference_ms: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub success: Tally,
    pub fail: Tally,
    pub failures: BTreeMap<FailureReason, u64>,
    pub queue: Tally,
    pub compute_input: Tally,
    pub compute_infer: Tally,
    pub compute_output: Tally,
    pub batches: BTreeMap<u64, BatchTally>,
}

/// The stages whose latencies the summaries report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Request,
    Queue,
    ComputeInput,
    ComputeInfer,
    ComputeOutput,
}

impl Stage {
    pub const ALL: [Stage; 5] =
        [Stage::Request, Stage::Queue, Stage::ComputeInput, Stage::ComputeInfer, Stage::ComputeOutput];

    fn index(self) -> usize {
        self as usize
    }
}

/// How long the summaries look back, and how many latencies they keep at most
/// per stage (the oldest go first), which bounds memory under any load.
const WINDOW_AGE: Duration = Duration::from_secs(60);
const WINDOW_CAPACITY: usize = 4096;

/// The latencies (microseconds) of one stage over the last [`WINDOW_AGE`].
#[derive(Debug, Default)]
struct LatencyWindow {
    samples: VecDeque<(Instant, f64)>,
}

impl LatencyWindow {
    fn push(&mut self, at: Instant, d: Duration) {
        if self.samples.len() == WINDOW_CAPACITY {
            self.samples.pop_front();
        }
        self.samples.push_back((at, d.as_nanos() as f64 / 1000.0));
    }

    /// The `quantiles` (nearest rank) of the window at `now`; NaN when empty.
    fn quantiles(&mut self, now: Instant, quantiles: &[f64]) -> Vec<f64> {
        while self.samples.front().is_some_and(|(at, _)| now.duration_since(*at) > WINDOW_AGE) {
            self.samples.pop_front();
        }
        let mut values: Vec<f64> = self.samples.iter().map(|(_, v)| *v).collect();
        values.sort_by(f64::total_cmp);
        quantiles
            .iter()
            .map(|&q| {
                if values.is_empty() {
                    return f64::NAN;
                }
                let rank = (q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
                values[rank.clamp(1, values.len()) - 1]
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Inner {
    snapshot: Snapshot,
    windows: [LatencyWindow; 5],
}

/// The statistics of one model version; updated by every request, read by
/// `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct VersionStats {
    inner: Mutex<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl VersionStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One execution of the model, of `batch_size` inferences.
    pub fn record_execution(&self, e: &ExecutionTimes) {
        let mut inner = self.lock();
        let s = &mut inner.snapshot;
        s.inference_count += e.batch_size;
        s.execution_count += 1;
        let batch = s.batches.entry(e.batch_size).or_default();
        batch.compute_input.add(e.compute_input);
        batch.compute_infer.add(e.compute_infer);
        batch.compute_output.add(e.compute_output);
    }

    /// One request answered successfully.
    pub fn record_success(&self, t: &RequestTimes) {
        let now = Instant::now();
        let mut inner = self.lock();
        let s = &mut inner.snapshot;
        s.last_inference_ms = now_ms();
        s.success.add(t.total);
        s.queue.add(t.queue);
        s.compute_input.add(t.compute_input);
        s.compute_infer.add(t.compute_infer);
        s.compute_output.add(t.compute_output);
        let stages = [t.total, t.queue, t.compute_input, t.compute_infer, t.compute_output];
        for (window, d) in inner.windows.iter_mut().zip(stages) {
            window.push(now, d);
        }
    }

    /// A request that reached this version and failed after `total`.
    pub fn record_failure(&self, reason: FailureReason, total: Duration) {
        let mut inner = self.lock();
        let s = &mut inner.snapshot;
        s.last_inference_ms = now_ms();
        s.fail.add(total);
        *s.failures.entry(reason).or_default() += 1;
    }

    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    /// The `quantiles` of a stage's latencies (microseconds) over the last minute.
    pub fn latency_quantiles(&self, stage: Stage, quantiles: &[f64]) -> Vec<f64> {
        self.lock().windows[stage.index()].quantiles(Instant::now(), quantiles)
    }
}

impl Snapshot {
    /// Failed requests counted under `reason`.
    pub fn failures_of(&self, reason: FailureReason) -> u64 {
        self.failures.get(&reason).copied().unwrap_or(0)
    }

    /// One `model_stats` entry of Triton's statistics response.
    pub fn json(&self, name: &str, version: &str) -> Value {
        let batch_stats: Vec<Value> = self
            .batches
            .iter()
            .map(|(size, b)| {
                json!({
                    "batch_size": size,
                    "compute_input": b.compute_input.json(),
                    "compute_infer": b.compute_infer.json(),
                    "compute_output": b.compute_output.json(),
                })
            })
            .collect();
        json!({
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.json(),
                "fail": self.fail.json(),
                "queue": self.queue.json(),
                "compute_input": self.compute_input.json(),
                "compute_infer": self.compute_infer.json(),
                "compute_output": self.compute_output.json(),
                "cache_hit": Tally::default().json(),
                "cache_miss": Tally::default().json(),
            },
            "response_stats": {},
            "batch_stats": batch_stats,
            "memory_usage": [],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_executions_inferences_requests_and_batches() {
        let stats = VersionStats::default();
        let ms = Duration::from_millis;
        // One batch of 4 inferences made of two requests (1 + 3), then one alone.
        let batch = ExecutionTimes { batch_size: 4, compute_input: ms(2), compute_infer: ms(3), compute_output: ms(4) };
        stats.record_execution(&batch);
        stats.record_execution(&ExecutionTimes { batch_size: 1, ..batch });
        let request = RequestTimes {
            queue: ms(1),
            compute_input: ms(2),
            compute_infer: ms(3),
            compute_output: ms(4),
            total: ms(10),
        };
        for _ in 0..3 {
            stats.record_success(&request);
        }
        stats.record_failure(FailureReason::Rejected, ms(5));
        stats.record_failure(FailureReason::Rejected, ms(5));
        stats.record_failure(FailureReason::Backend, ms(1));
        let s = stats.snapshot();
        assert_eq!(s.inference_count, 5);
        assert_eq!(s.execution_count, 2);
        assert_eq!(s.success, Tally { count: 3, ns: 30_000_000 });
        assert_eq!(s.fail, Tally { count: 3, ns: 11_000_000 });
        assert_eq!(s.failures_of(FailureReason::Rejected), 2);
        assert_eq!(s.failures_of(FailureReason::Backend), 1);
        assert_eq!(s.failures_of(FailureReason::Canceled), 0);
        assert_eq!(s.batches.len(), 2);
        assert!(s.last_inference_ms > 0);
        let j = s.json("m", "1");
        assert_eq!(j["inference_stats"]["compute_infer"]["count"], 3);
        assert_eq!(j["inference_stats"]["compute_infer"]["ns"], 9_000_000);
        assert_eq!(j["batch_stats"][0]["batch_size"], 1);
        assert_eq!(j["batch_stats"][1]["batch_size"], 4);
        assert_eq!(j["batch_stats"][1]["compute_infer"]["count"], 1);
        assert_eq!(j["execution_count"], 2);
        assert_eq!(j["version"], "1");
    }

    #[test]
    fn quantiles_come_from_the_recent_window() {
        let stats = VersionStats::default();
        let q = [0.5, 0.9, 1.0];
        assert!(stats.latency_quantiles(Stage::Queue, &q).iter().all(|v| v.is_nan()));
        for us in 1..=10 {
            let queue = Duration::from_micros(us * 100);
            stats.record_success(&RequestTimes { queue, ..Default::default() });
        }
        assert_eq!(stats.latency_quantiles(Stage::Queue, &q), vec![500.0, 900.0, 1000.0]);
        assert_eq!(stats.latency_quantiles(Stage::ComputeInfer, &[0.5]), vec![0.0]);

        let mut window = LatencyWindow::default();
        let then = Instant::now();
        window.push(then, Duration::from_micros(7));
        assert_eq!(window.quantiles(then + WINDOW_AGE, &[0.5]), vec![7.0]);
        assert!(window.quantiles(then + WINDOW_AGE + Duration::from_secs(1), &[0.5])[0].is_nan());
    }
}
