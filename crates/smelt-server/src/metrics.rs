//! The Prometheus endpoint (`GET /metrics` on `--metrics-port`): Triton's
//! `nv_*` metric names, help texts, types and labels, in the text exposition
//! format, rendered at each scrape from the per-version statistics ([`crate::stats`])
//! and the latest CPU sample. No global registry: what is rendered is what the
//! model registry holds now.
//!
//! Other parts of the server add their own families through [`MetricSource`]
//! (the GPU backend's memory pools, for instance) with [`Metrics::add_source`].

use crate::models::ModelRegistry;
use crate::stats::{FailureReason, Snapshot, Stage, Tally};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::fmt::Write;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// What the metrics endpoint reports (`--metrics-config`, `--metrics-interval-ms`,
/// `--allow-cpu-metrics`).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsOptions {
    /// The cumulative `*_duration_us` latency counters (`counter_latencies`).
    pub counter_latencies: bool,
    /// The `*_summary_us` latency summaries (`summary_latencies`).
    pub summary_latencies: bool,
    /// The quantiles the summaries report (`summary_quantiles`).
    pub summary_quantiles: Vec<f64>,
    /// How often the CPU metrics are sampled.
    pub interval: Duration,
    pub cpu_metrics: bool,
    /// Address to bind; `None`: the HTTP address.
    pub address: Option<String>,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            counter_latencies: true,
            summary_latencies: false,
            summary_quantiles: vec![0.5, 0.9, 0.95, 0.99, 0.999],
            interval: Duration::from_millis(2000),
            cpu_metrics: true,
            address: None,
        }
    }
}

impl MetricsOptions {
    /// Applies one `--metrics-config <key>=<value>` setting.
    pub fn apply_setting(&mut self, setting: &str) -> Result<(), String> {
        let (key, value) =
            setting.split_once('=').ok_or_else(|| format!("--metrics-config '{setting}' must be <setting>=<value>"))?;
        let flag = |v: &str| match v {
            "true" | "1" | "on" => Ok(true),
            "false" | "0" | "off" => Ok(false),
            _ => Err(format!("--metrics-config {key} must be true or false, not '{v}'")),
        };
        match key {
            "counter_latencies" => self.counter_latencies = flag(value)?,
            "summary_latencies" => self.summary_latencies = flag(value)?,
            "summary_quantiles" => {
                // "<quantile>:<error>,...": the error bound is accepted and unused,
                // since Smelt computes exact quantiles over its window.
                let mut quantiles = Vec::new();
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let q = part.split(':').next().unwrap_or(part);
                    let q: f64 = q.parse().ok().filter(|q| (0.0..=1.0).contains(q)).ok_or_else(|| {
                        format!("--metrics-config summary_quantiles: '{part}' is not a quantile in [0, 1]")
                    })?;
                    quantiles.push(q);
                }
                if quantiles.is_empty() {
                    return Err("--metrics-config summary_quantiles lists no quantile".to_string());
                }
                self.summary_quantiles = quantiles;
            }
            _ => {
                return Err(format!(
                    "--metrics-config: unknown setting '{key}' (known: counter_latencies, summary_latencies, \
                     summary_quantiles)"
                ))
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One metric family from a [`MetricSource`].
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    /// (labels, value) per series.
    pub samples: Vec<(Vec<(String, String)>, f64)>,
}

/// Something outside the model statistics with metrics to report, asked at
/// each scrape.
pub trait MetricSource: Send + Sync {
    fn families(&self) -> Vec<Family>;
}

/// The latest CPU sample (`nv_cpu_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuSample {
    pub utilization: f64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
}

/// The metrics endpoint's state.
pub struct Metrics {
    registry: Arc<ModelRegistry>,
    options: MetricsOptions,
    cpu: Mutex<Option<CpuSample>>,
    sources: RwLock<Vec<Arc<dyn MetricSource>>>,
}

impl Metrics {
    pub fn new(registry: Arc<ModelRegistry>, options: MetricsOptions) -> Arc<Metrics> {
        Arc::new(Metrics { registry, options, cpu: Mutex::new(None), sources: RwLock::new(Vec::new()) })
    }

    pub fn options(&self) -> &MetricsOptions {
        &self.options
    }

    /// Adds families rendered after Smelt's own at every scrape.
    pub fn add_source(&self, source: Arc<dyn MetricSource>) {
        self.sources.write().unwrap_or_else(|p| p.into_inner()).push(source);
    }

    /// The endpoint: `GET /metrics`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route("/metrics", get(scrape)).with_state(self)
    }

    /// Samples the CPU every interval until `stop` turns true (Linux only).
    pub async fn sample_cpu(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if !self.options.cpu_metrics {
            return;
        }
        let mut sampler = cpu::Sampler::default();
        loop {
            if let Some(sample) = sampler.sample() {
                *self.cpu.lock().unwrap_or_else(|p| p.into_inner()) = Some(sample);
            }
            tokio::select! {
                () = tokio::time::sleep(self.options.interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Every family, in the text exposition format.
    pub fn render(&self) -> String {
        let versions: Vec<VersionRow> = self
            .registry
            .ready_set(None)
            .iter()
            .map(|v| VersionRow {
                // GPU instances carry the adapter, as Triton labels them.
                labels: match &v.gpu_uuid {
                    Some(uuid) => {
                        format!(
                            "gpu_uuid=\"{}\",model=\"{}\",version=\"{}\"",
                            escape(uuid),
                            escape(&v.model),
                            v.version
                        )
                    }
                    None => format!("model=\"{}\",version=\"{}\"", escape(&v.model), v.version),
                },
                snapshot: v.stats.snapshot(),
                pending: v.pending_requests() as f64,
                load_secs: v.load_duration.as_secs_f64(),
                quantiles: if self.options.summary_latencies {
                    Stage::ALL.map(|s| v.stats.latency_quantiles(s, &self.options.summary_quantiles)).to_vec()
                } else {
                    Vec::new()
                },
            })
            .collect();
        let mut out = String::new();
        render_models(&mut out, &versions, &self.options);
        if let Some(cpu) = *self.cpu.lock().unwrap_or_else(|p| p.into_inner()) {
            render_cpu(&mut out, &cpu);
        }
        for source in self.sources.read().unwrap_or_else(|p| p.into_inner()).iter() {
            for family in source.families() {
                render_family(&mut out, &family);
            }
        }
        out
    }
}

/// Binds `address:port` and serves `GET /metrics` (and samples the CPU) until
/// `stop` turns true.
pub async fn listen(
    metrics: Arc<Metrics>,
    address: &str,
    port: u16,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let at: std::net::SocketAddr = format!("{address}:{port}")
        .parse()
        .map_err(|e| format!("bad metrics address '{address}:{port}' (--metrics-address/--metrics-port): {e}"))?;
    let listener =
        tokio::net::TcpListener::bind(at).await.map_err(|e| format!("cannot listen for metrics on {at}: {e}"))?;
    tokio::spawn(metrics.clone().sample_cpu(stop.clone()));
    let app = metrics.router();
    let mut stop = stop;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!("the metrics endpoint failed: {e}");
        }
    });
    tracing::info!("metrics endpoint listening on {at}");
    Ok(())
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

/// What one ready version contributes to a scrape.
struct VersionRow {
    labels: String,
    snapshot: Snapshot,
    pending: f64,
    load_secs: f64,
    /// Per [`Stage::ALL`], the configured quantiles (empty without summaries).
    quantiles: Vec<Vec<f64>>,
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn micros(t: &Tally) -> f64 {
    (t.ns / 1000) as f64
}

/// A per-version family: one series per ready version.
fn per_version(
    out: &mut String,
    rows: &[VersionRow],
    name: &str,
    help: &str,
    kind: MetricKind,
    value: impl Fn(&VersionRow) -> f64,
) {
    header(out, name, help, kind.name());
    for row in rows {
        let _ = writeln!(out, "{name}{{{}}} {}", row.labels, number(value(row)));
    }
}

fn render_models(out: &mut String, rows: &[VersionRow], options: &MetricsOptions) {
    use MetricKind::{Counter, Gauge};
    per_version(
        out,
        rows,
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
        Counter,
        |r| r.snapshot.success.count as f64,
    );
    header(out, "nv_inference_request_failure", "Number of failed inference requests, all batch sizes", "counter");
    for row in rows {
        for reason in FailureReason::ALL {
            // Labels in name order, as Triton writes them: model, reason, version.
            let labels = row.labels.replacen(",version=", &format!(",reason=\"{}\",version=", reason.label()), 1);
            let _ = writeln!(out, "nv_inference_request_failure{{{labels}}} {}", row.snapshot.failures_of(reason));
        }
    }
    per_version(
        out,
        rows,
        "nv_inference_count",
        "Number of inferences performed (does not include cached requests)",
        Counter,
        |r| r.snapshot.inference_count as f64,
    );
    per_version(
        out,
        rows,
        "nv_inference_exec_count",
        "Number of model executions performed (does not include cached requests)",
        Counter,
        |r| r.snapshot.execution_count as f64,
    );
    if options.counter_latencies {
        per_version(
            out,
            rows,
            "nv_inference_request_duration_us",
            "Cumulative inference request duration in microseconds (includes cached requests)",
            Counter,
            |r| micros(&r.snapshot.success),
        );
        per_version(
            out,
            rows,
            "nv_inference_queue_duration_us",
            "Cumulative inference queuing duration in microseconds (includes cached requests)",
            Counter,
            |r| micros(&r.snapshot.queue),
        );
        per_version(
            out,
            rows,
            "nv_inference_compute_input_duration_us",
            "Cumulative compute input duration in microseconds (does not include cached requests)",
            Counter,
            |r| micros(&r.snapshot.compute_input),
        );
        per_version(
            out,
            rows,
            "nv_inference_compute_infer_duration_us",
            "Cumulative compute inference duration in microseconds (does not include cached requests)",
            Counter,
            |r| micros(&r.snapshot.compute_infer),
        );
        per_version(
            out,
            rows,
            "nv_inference_compute_output_duration_us",
            "Cumulative inference compute output duration in microseconds (does not include cached requests)",
            Counter,
            |r| micros(&r.snapshot.compute_output),
        );
    }
    if options.summary_latencies {
        // Triton's help texts, word for word (its compute summaries reuse the
        // counters' wording).
        type TallyOf = fn(&Snapshot) -> &Tally;
        let summaries: [(&str, &str, TallyOf); 5] = [
            (
                "nv_inference_request_summary_us",
                "Summary of inference request duration in microseconds (includes cached requests)",
                |s| &s.success,
            ),
            (
                "nv_inference_queue_summary_us",
                "Summary of inference queuing duration in microseconds (includes cached requests)",
                |s| &s.queue,
            ),
            (
                "nv_inference_compute_input_summary_us",
                "Cumulative compute input duration in microseconds (does not include cached requests)",
                |s| &s.compute_input,
            ),
            (
                "nv_inference_compute_infer_summary_us",
                "Cumulative compute inference duration in microseconds (does not include cached requests)",
                |s| &s.compute_infer,
            ),
            (
                "nv_inference_compute_output_summary_us",
                "Cumulative inference compute output duration in microseconds (does not include cached requests)",
                |s| &s.compute_output,
            ),
        ];
        for (stage, (name, help, tally)) in summaries.iter().enumerate() {
            header(out, name, help, "summary");
            for row in rows {
                let t = tally(&row.snapshot);
                let _ = writeln!(out, "{name}_count{{{}}} {}", row.labels, t.count);
                let _ = writeln!(out, "{name}_sum{{{}}} {}", row.labels, number(micros(t)));
                for (q, v) in options.summary_quantiles.iter().zip(&row.quantiles[stage]) {
                    let _ = writeln!(out, "{name}{{{},quantile=\"{q}\"}} {}", row.labels, number(*v));
                }
            }
        }
    }
    per_version(
        out,
        rows,
        "nv_inference_pending_request_count",
        "Instantaneous number of pending requests awaiting execution per-model.",
        Gauge,
        |r| r.pending,
    );
    per_version(out, rows, "nv_model_load_duration_secs", "Model load time in seconds", Gauge, |r| r.load_secs);
}

fn render_cpu(out: &mut String, cpu: &CpuSample) {
    header(out, "nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", "gauge");
    let _ = writeln!(out, "nv_cpu_utilization {}", number(cpu.utilization));
    header(out, "nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", "gauge");
    let _ = writeln!(out, "nv_cpu_memory_total_bytes {}", cpu.memory_total_bytes);
    header(out, "nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", "gauge");
    let _ = writeln!(out, "nv_cpu_memory_used_bytes {}", cpu.memory_used_bytes);
}

fn render_family(out: &mut String, family: &Family) {
    header(out, &family.name, &family.help, family.kind.name());
    for (labels, value) in &family.samples {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        if labels.is_empty() {
            let _ = writeln!(out, "{} {}", family.name, number(*value));
        } else {
            let _ = writeln!(out, "{}{{{}}} {}", family.name, labels.join(","), number(*value));
        }
    }
}

/// CPU utilization and memory from /proc (Linux). Elsewhere the CPU metrics are
/// left out, as Triton does: macOS has no /proc, and its equivalents (host
/// statistics through mach calls) are not wired up yet.
mod cpu {
    use super::CpuSample;

    /// Busy and total jiffies of the aggregate `cpu` line of /proc/stat.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct CpuTimes {
        pub busy: u64,
        pub total: u64,
    }

    pub fn parse_stat(text: &str) -> Option<CpuTimes> {
        let line = text.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = line.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal (guest time is already
        // inside user and nice).
        let field = |i: usize| v.get(i).copied().unwrap_or(0);
        let idle = field(3) + field(4);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
        Some(CpuTimes { busy, total: busy + idle })
    }

    /// (total, used) bytes from /proc/meminfo: used is total less available.
    pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
        let kib = |key: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
            line[key.len() + 1..].split_whitespace().next()?.parse().ok()
        };
        let total = kib("MemTotal")? * 1024;
        let available = kib("MemAvailable")? * 1024;
        Some((total, total.saturating_sub(available)))
    }

    #[derive(Default)]
    pub struct Sampler {
        last: Option<CpuTimes>,
    }

    impl Sampler {
        /// Utilization since the previous sample (0 on the first), and memory.
        pub fn sample(&mut self) -> Option<CpuSample> {
            if !cfg!(target_os = "linux") {
                return None;
            }
            let times = parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)?;
            let (memory_total_bytes, memory_used_bytes) =
                parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
            let utilization = match self.last {
                Some(last) if times.total > last.total => {
                    times.busy.saturating_sub(last.busy) as f64 / (times.total - last.total) as f64
                }
                _ => 0.0,
            };
            self.last = Some(times);
            Some(CpuSample { utilization: utilization.clamp(0.0, 1.0), memory_total_bytes, memory_used_bytes })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ExecutionTimes, RequestTimes, VersionStats};

    #[test]
    fn settings_are_parsed_and_bad_ones_named() {
        let mut o = MetricsOptions::default();
        o.apply_setting("summary_latencies=true").unwrap();
        o.apply_setting("counter_latencies=false").unwrap();
        o.apply_setting("summary_quantiles=0.5:0.05,0.99:0.001").unwrap();
        assert!(o.summary_latencies && !o.counter_latencies);
        assert_eq!(o.summary_quantiles, vec![0.5, 0.99]);
        assert!(o.apply_setting("summary_latencies").unwrap_err().contains("<setting>=<value>"));
        assert!(o.apply_setting("colour=blue").unwrap_err().contains("'colour'"));
        assert!(o.apply_setting("summary_quantiles=2").unwrap_err().contains("'2'"));
    }

    fn row(stats: &VersionStats, quantiles: &[f64]) -> VersionRow {
        VersionRow {
            labels: "model=\"m\",version=\"1\"".to_string(),
            snapshot: stats.snapshot(),
            pending: 2.0,
            load_secs: 0.25,
            quantiles: Stage::ALL.map(|s| stats.latency_quantiles(s, quantiles)).to_vec(),
        }
    }

    #[test]
    fn renders_triton_names_labels_and_values() {
        let stats = VersionStats::default();
        stats.record_execution(&ExecutionTimes { batch_size: 3, ..Default::default() });
        let t =
            RequestTimes { queue: Duration::from_micros(40), total: Duration::from_micros(1500), ..Default::default() };
        stats.record_success(&t);
        stats.record_success(&t);
        stats.record_failure(FailureReason::Rejected, Duration::from_micros(1));
        let options = MetricsOptions { summary_latencies: true, ..MetricsOptions::default() };
        let mut out = String::new();
        render_models(&mut out, &[row(&stats, &options.summary_quantiles)], &options);
        for line in [
            "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes",
            "# TYPE nv_inference_request_success counter",
            "nv_inference_request_success{model=\"m\",version=\"1\"} 2",
            "nv_inference_request_failure{model=\"m\",reason=\"REJECTED\",version=\"1\"} 1",
            "nv_inference_request_failure{model=\"m\",reason=\"BACKEND\",version=\"1\"} 0",
            "nv_inference_count{model=\"m\",version=\"1\"} 3",
            "nv_inference_exec_count{model=\"m\",version=\"1\"} 1",
            "nv_inference_request_duration_us{model=\"m\",version=\"1\"} 3000",
            "nv_inference_queue_duration_us{model=\"m\",version=\"1\"} 80",
            "# TYPE nv_inference_queue_summary_us summary",
            "nv_inference_queue_summary_us_count{model=\"m\",version=\"1\"} 2",
            "nv_inference_queue_summary_us_sum{model=\"m\",version=\"1\"} 80",
            "nv_inference_queue_summary_us{model=\"m\",version=\"1\",quantile=\"0.5\"} 40",
            "nv_inference_request_summary_us{model=\"m\",version=\"1\",quantile=\"0.999\"} 1500",
            "# TYPE nv_inference_pending_request_count gauge",
            "nv_inference_pending_request_count{model=\"m\",version=\"1\"} 2",
            "nv_model_load_duration_secs{model=\"m\",version=\"1\"} 0.25",
        ] {
            assert!(out.lines().any(|l| l == line), "missing line {line:?} in:\n{out}");
        }
        let without = MetricsOptions { counter_latencies: false, ..MetricsOptions::default() };
        let mut out = String::new();
        render_models(&mut out, &[row(&stats, &[])], &without);
        assert!(!out.contains("_duration_us") && !out.contains("_summary_us"), "{out}");
    }

    #[test]
    fn extra_families_and_cpu_render() {
        let mut out = String::new();
        render_family(
            &mut out,
            &Family {
                name: "smelt_gpu_pool_used_bytes".into(),
                help: "Bytes in use".into(),
                kind: MetricKind::Gauge,
                samples: vec![(vec![("device".into(), "a\"b".into())], 42.0)],
            },
        );
        assert!(out.contains("# TYPE smelt_gpu_pool_used_bytes gauge\n"), "{out}");
        assert!(out.contains("smelt_gpu_pool_used_bytes{device=\"a\\\"b\"} 42\n"), "{out}");
        render_cpu(&mut out, &CpuSample { utilization: 0.5, memory_total_bytes: 10, memory_used_bytes: 4 });
        assert!(out.contains("nv_cpu_utilization 0.5\n") && out.contains("nv_cpu_memory_used_bytes 4\n"), "{out}");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn proc_files_are_parsed() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(cpu::parse_stat(stat), Some(cpu::CpuTimes { busy: 150, total: 1000 }));
        assert_eq!(cpu::parse_stat("intr 1 2"), None);
        let meminfo = "MemTotal:       1000 kB\nMemFree:   100 kB\nMemAvailable:    250 kB\n";
        assert_eq!(cpu::parse_meminfo(meminfo), Some((1_024_000, 768_000)));
        assert_eq!(cpu::parse_meminfo("MemTotal: 5 kB\n"), None);
    }
}
