//! Per model version statistics in Triton's schema (the `statistics` extension):
//! counts and cumulative nanoseconds per stage, and per batch size.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often something happened and how long it took in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub ns: u64,
}

impl Tally {
    fn add(&mut self, d: Duration) {
        self.count += 1;
        self.ns = self.ns.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    fn json(&self) -> Value {
        json!({ "count": self.count, "ns": self.ns })
    }
}

/// The durations of one successful model execution.
#[derive(Clone, Copy, Debug, Default)]
pub struct Execution {
    /// Waiting for a free instance.
    pub queue: Duration,
    /// Turning the request's tensors into the model's inputs.
    pub compute_input: Duration,
    /// Running the model.
    pub compute_infer: Duration,
    /// Turning the model's outputs into the response's tensors.
    pub compute_output: Duration,
    /// From the request's arrival at the model to its response.
    pub total: Duration,
    /// Inferences in the execution (the batch size; 1 for non-batching models).
    pub batch_size: u64,
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
    pub queue: Tally,
    pub compute_input: Tally,
    pub compute_infer: Tally,
    pub compute_output: Tally,
    pub batches: BTreeMap<u64, BatchTally>,
}

/// The statistics of one model version; updated by every request, read by
/// `/stats`.
#[derive(Debug, Default)]
pub struct VersionStats {
    inner: Mutex<Snapshot>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl VersionStats {
    pub fn record_success(&self, e: &Execution) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.last_inference_ms = now_ms();
        s.inference_count += e.batch_size;
        s.execution_count += 1;
        s.success.add(e.total);
        s.queue.add(e.queue);
        s.compute_input.add(e.compute_input);
        s.compute_infer.add(e.compute_infer);
        s.compute_output.add(e.compute_output);
        let batch = s.batches.entry(e.batch_size).or_default();
        batch.compute_input.add(e.compute_input);
        batch.compute_infer.add(e.compute_infer);
        batch.compute_output.add(e.compute_output);
    }

    /// A request that reached this version and failed after `total`.
    pub fn record_failure(&self, total: Duration) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.last_inference_ms = now_ms();
        s.fail.add(total);
    }

    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Snapshot {
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
    fn counts_inferences_executions_and_batches() {
        let stats = VersionStats::default();
        let ms = Duration::from_millis;
        let e = Execution {
            queue: ms(1),
            compute_input: ms(2),
            compute_infer: ms(3),
            compute_output: ms(4),
            total: ms(10),
            batch_size: 4,
        };
        stats.record_success(&e);
        stats.record_success(&Execution { batch_size: 1, ..e });
        stats.record_failure(ms(5));
        let s = stats.snapshot();
        assert_eq!(s.inference_count, 5);
        assert_eq!(s.execution_count, 2);
        assert_eq!(s.success, Tally { count: 2, ns: 20_000_000 });
        assert_eq!(s.fail, Tally { count: 1, ns: 5_000_000 });
        assert_eq!(s.batches.len(), 2);
        assert!(s.last_inference_ms > 0);
        let j = s.json("m", "1");
        assert_eq!(j["inference_stats"]["compute_infer"]["count"], 2);
        assert_eq!(j["inference_stats"]["compute_infer"]["ns"], 6_000_000);
        assert_eq!(j["batch_stats"][0]["batch_size"], 1);
        assert_eq!(j["batch_stats"][1]["batch_size"], 4);
        assert_eq!(j["version"], "1");
    }
}
