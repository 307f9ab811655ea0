//! `smelt bench`: throughput and latency of one model on random inputs.
//!
//! Inputs are made up from the model's own input declarations:
//!
//! - shapes: fixed dims as declared; a symbolic dim whose name mentions "batch",
//!   or any symbolic dim in position 0, gets `--batch` (default 1); every other
//!   symbolic dim (sequence length, image size) gets [`DEFAULT_SYMBOLIC_DIM`]
//!   (128). `--shape NAME=d0,d1,...` sets an input's whole shape instead.
//! - values: floats uniform in [-1, 1); integer inputs that index an embedding
//!   table (a Gather whose data is a constant, possibly through Cast, Reshape,
//!   Squeeze, Unsqueeze or Flatten) are ids in [0, rows of the smallest such
//!   table); inputs named like masks ("mask") are all ones and like segment ids
//!   ("token_type", "segment") all zeros; other integers are in
//!   [0, [`DEFAULT_ID_RANGE`]); booleans are all true.
//!
//! `--input NAME=FILE.npy` gives an input's values (and shape) from a file instead.
//!
//! A run is one call of `Session::run_into` on the same inputs and outputs, so a
//! steady run measures the model, not the tool. Items per run = the batch.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use smelt_ir::{DType, Dim, Graph, Op, Tensor};
use smelt_runtime::{Device, Session, SessionOptions};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Size given to symbolic dims other than the batch (a sequence length of 128).
pub const DEFAULT_SYMBOLIC_DIM: usize = 128;
/// Range of integer inputs whose id range the model does not reveal.
pub const DEFAULT_ID_RANGE: u64 = 16;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model file.
    model: PathBuf,
    /// Where to run: cpu, gpu or gpu:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Batch size: the value of batch dims, and the items counted per run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Concrete shape for an input, as NAME=d0,d1,...; repeatable. Overrides the
    /// defaults for that input (batch dims from --batch, other symbolic dims 128).
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    shapes: Vec<String>,
    /// Use the values (and shape) of FILE.npy for input NAME instead of random
    /// ones, e.g. to run the same inputs as another engine; repeatable.
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    input_files: Vec<String>,
    /// CPU threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Seconds of warm-up runs before measuring (at least one run is made).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    warmup: f64,
    /// Seconds to measure for (runs continue until this much time has passed).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    duration: f64,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Runs in flight at once: this many threads share the one session, as a
    /// server's concurrent requests do (on a GPU, one run's transfers then overlap
    /// another's work).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
}

/// The results as written with --json.
#[derive(Serialize)]
struct Report {
    model: String,
    device: String,
    backend: String,
    batch: usize,
    threads: Option<u64>,
    concurrency: usize,
    inputs: Vec<InputReport>,
    warmup_s: f64,
    duration_s: f64,
    load_ms: f64,
    first_run_ms: f64,
    warmup_runs: usize,
    runs: usize,
    items: usize,
    items_per_s: f64,
    runs_per_s: f64,
    latency_ms: Latency,
    /// Peak resident memory of the process (VmHWM on Linux, ru_maxrss elsewhere).
    peak_rss_bytes: Option<u64>,
    /// What the plan reports about its memory (host memory on the CPU backend).
    plan_memory: PlanMemory,
    /// Device memory the plan holds on a GPU (weights + planned intermediates);
    /// null on the CPU.
    gpu_memory_bytes: Option<u64>,
}

#[derive(Serialize)]
struct InputReport {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    values: String,
}

#[derive(Serialize)]
struct Latency {
    mean: f64,
    min: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize)]
struct PlanMemory {
    arena_peak_bytes: usize,
    unplanned_bytes: usize,
    weight_bytes: usize,
    arenas: usize,
}

pub fn main(args: Args) -> Result<()> {
    check_seconds("--warmup", args.warmup, true)?;
    check_seconds("--duration", args.duration, false)?;
    let device: Device = args.device.parse()?;
    let batch = usize::try_from(args.batch).context("--batch is too large")?;
    let options = SessionOptions { device, threads: args.threads.map(|t| t as usize), optimize: true };
    let explicit = parse_shapes(&args.shapes)?;
    let mut from_files: HashMap<String, (Tensor, String)> = HashMap::new();
    for spec in &args.input_files {
        let (name, file) = super::split_pair(spec, "--input")?;
        if explicit.contains_key(name) {
            bail!("input '{name}' is given by both --shape and --input");
        }
        let tensor = crate::npy::read(file.as_ref()).with_context(|| format!("--input {name}"))?;
        if from_files.insert(name.to_string(), (tensor, format!("from {file}"))).is_some() {
            bail!("--input gives input '{name}' twice");
        }
    }

    let load_start = Instant::now();
    let session = Session::load(&args.model, &options).with_context(|| format!("loading {}", args.model.display()))?;
    let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
    let graph = session.graph();
    for (flag, name) in explicit.keys().map(|n| ("--shape", n)).chain(from_files.keys().map(|n| ("--input", n))) {
        if !graph.inputs.iter().any(|&v| graph.name(v) == name) {
            let names: Vec<&str> = graph.inputs.iter().map(|&v| graph.name(v)).collect();
            bail!("{flag} names '{name}', but the model has no such input (its inputs: {})", names.join(", "));
        }
    }
    let mut rng = SplitMix64(args.seed);
    let mut inputs = Vec::new();
    let mut input_reports = Vec::new();
    for &v in &graph.inputs {
        let name = graph.name(v).to_string();
        let (tensor, values) = match from_files.remove(&name) {
            Some(given) => given,
            None => {
                let shape = match explicit.get(&name) {
                    Some(s) => s.clone(),
                    None => default_shape(graph, v, batch)?,
                };
                random_input(graph, v, &shape, &mut rng)?
            }
        };
        let shape = tensor.shape().to_vec();
        input_reports.push(InputReport { name: name.clone(), dtype: tensor.dtype().to_string(), shape, values });
        inputs.push((name, tensor));
    }
    let named: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for r in &input_reports {
        eprintln!("input {} {} {:?}: {}", r.name, r.dtype, r.shape, r.values);
    }

    let mut outputs = Vec::new();
    let first = Instant::now();
    session.run_into(&named, &mut outputs).context("first run")?;
    let first_run_ms = first.elapsed().as_secs_f64() * 1e3;

    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let bar = progress_bar(warmup + duration);
    bar.set_message("warm-up");
    let mut warmup_runs = 1;
    let warmup_start = Instant::now();
    while warmup_start.elapsed() < warmup {
        session.run_into(&named, &mut outputs)?;
        warmup_runs += 1;
        bar.set_position(warmup_start.elapsed().as_millis() as u64);
    }
    bar.set_message("measuring");
    let concurrency = args.concurrency as usize;
    let measure_start = Instant::now();
    let mut latencies_ms: Vec<f64> = std::thread::scope(|scope| -> Result<Vec<f64>> {
        let (session, named) = (&session, &named);
        let workers: Vec<_> = (1..concurrency)
            .map(|_| {
                scope.spawn(move || -> Result<Vec<f64>> {
                    let mut outputs = Vec::new();
                    measure_runs(session, named, &mut outputs, measure_start, duration, |_| {})
                })
            })
            .collect();
        let mut all = measure_runs(session, named, &mut outputs, measure_start, duration, |elapsed| {
            bar.set_position((warmup + elapsed).as_millis() as u64)
        })?;
        for w in workers {
            all.extend(w.join().map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))??);
        }
        Ok(all)
    })?;
    let measured_s = measure_start.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let memory = session.memory_report();
    let runs = latencies_ms.len();
    let on_gpu = matches!(options.device, Device::Gpu(_));
    let report = Report {
        model: args.model.display().to_string(),
        device: args.device.clone(),
        backend: session.backend().to_string(),
        batch,
        threads: args.threads,
        concurrency,
        inputs: input_reports,
        warmup_s: args.warmup,
        duration_s: measured_s,
        load_ms,
        first_run_ms,
        warmup_runs,
        runs,
        items: runs * batch,
        items_per_s: (runs * batch) as f64 / measured_s,
        runs_per_s: runs as f64 / measured_s,
        latency_ms: latency(&mut latencies_ms),
        peak_rss_bytes: peak_rss_bytes(),
        gpu_memory_bytes: on_gpu.then(|| (memory.weight_bytes + memory.arena_peak_bytes) as u64),
        plan_memory: PlanMemory {
            arena_peak_bytes: memory.arena_peak_bytes,
            unplanned_bytes: memory.unplanned_bytes,
            weight_bytes: memory.weight_bytes,
            arenas: memory.arenas,
        },
    };
    print_report(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs until `duration` after `start` has passed, returning each run's latency
/// in milliseconds; `progress` sees the elapsed time after each run.
fn measure_runs(
    session: &Session,
    inputs: &[(&str, &Tensor)],
    outputs: &mut Vec<Tensor>,
    start: Instant,
    duration: Duration,
    progress: impl Fn(Duration),
) -> Result<Vec<f64>> {
    let mut latencies_ms = Vec::with_capacity(1024);
    loop {
        let run = Instant::now();
        session.run_into(inputs, outputs)?;
        latencies_ms.push(run.elapsed().as_secs_f64() * 1e3);
        let elapsed = start.elapsed();
        progress(elapsed);
        if elapsed >= duration {
            return Ok(latencies_ms);
        }
    }
}

fn check_seconds(flag: &str, value: f64, zero_ok: bool) -> Result<()> {
    if !value.is_finite() || value < 0.0 || (!zero_ok && value == 0.0) {
        let want = if zero_ok { "zero or more" } else { "more than zero" };
        bail!("{flag} must be {want} seconds, got {value}");
    }
    Ok(())
}

fn parse_shapes(specs: &[String]) -> Result<HashMap<String, Vec<usize>>> {
    let mut shapes = HashMap::new();
    for spec in specs {
        let (name, dims) = super::split_pair(spec, "--shape")?;
        let dims = super::parse_dims(dims).with_context(|| format!("--shape {spec}"))?;
        if shapes.insert(name.to_string(), dims).is_some() {
            bail!("--shape gives input '{name}' twice");
        }
    }
    Ok(shapes)
}

/// An input's declared shape with symbolic dims filled in (see the module docs).
fn default_shape(graph: &Graph, v: usize, batch: usize) -> Result<Vec<usize>> {
    let name = graph.name(v);
    let fact = graph.fact(v);
    let Some(dims) = fact.shape.dims() else {
        bail!("input '{name}' has no declared shape: give it with --shape {name}=d0,d1,...");
    };
    Ok(dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(n) => *n,
            Dim::Sym(s) if i == 0 || s.to_lowercase().contains("batch") => batch,
            Dim::Sym(_) | Dim::Unknown if i == 0 => batch,
            Dim::Sym(_) | Dim::Unknown => DEFAULT_SYMBOLIC_DIM,
        })
        .collect())
}

/// A random tensor for input `v` and a few words on how its values were chosen.
fn random_input(graph: &Graph, v: usize, shape: &[usize], rng: &mut SplitMix64) -> Result<(Tensor, String)> {
    let name = graph.name(v);
    let lower = name.to_lowercase();
    let dtype = graph.fact(v).dtype;
    let n: usize = shape.iter().product();
    if dtype.is_float() {
        let values: Vec<f32> = (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect();
        let t = Tensor::from_vec(shape, values)?;
        let t = if dtype == DType::F32 {
            t
        } else {
            smelt_cpu::eval_alloc(&Op::Cast { to: dtype }, &[Some(&t)], 1)?.remove(0)
        };
        return Ok((t, "uniform in [-1, 1)".to_string()));
    }
    let mut integer = |range: u64| -> Result<Tensor> {
        let values: Vec<i64> = (0..n).map(|_| (rng.next() % range.max(1)) as i64).collect();
        cast_ints(Tensor::from_vec(shape, values)?, dtype)
    };
    if dtype == DType::Bool {
        return Ok((Tensor::from_bools(shape, &vec![true; n])?, "all true".to_string()));
    }
    if !dtype.is_int() {
        bail!("input '{name}' is {dtype}: smelt bench makes up float, integer and bool inputs only");
    }
    if lower.contains("mask") {
        return Ok((ones(shape, dtype)?, "all ones (mask)".to_string()));
    }
    if lower.contains("token_type") || lower.contains("segment") {
        return Ok((integer(1)?, "all zeros (segment ids)".to_string()));
    }
    match embedding_rows(graph, v) {
        Some(rows) => Ok((integer(rows as u64)?, format!("ids in [0, {rows}) (the embedding table's rows)"))),
        None => Ok((integer(DEFAULT_ID_RANGE)?, format!("in [0, {DEFAULT_ID_RANGE}) (no embedding table found)"))),
    }
}

/// All ones of an integer dtype.
fn ones(shape: &[usize], dtype: DType) -> Result<Tensor> {
    cast_ints(Tensor::from_vec(shape, vec![1i64; shape.iter().product()])?, dtype)
}

/// `values` (i64) as `dtype`.
fn cast_ints(values: Tensor, dtype: DType) -> Result<Tensor> {
    if dtype == DType::I64 {
        return Ok(values);
    }
    Ok(smelt_cpu::eval_alloc(&Op::Cast { to: dtype }, &[Some(&values)], 1)?.remove(0))
}

/// Rows of the smallest constant table that value `v` indexes through a Gather,
/// following it through ops that keep index values (Cast, reshapes).
fn embedding_rows(graph: &Graph, v: usize) -> Option<usize> {
    let mut rows: Option<usize> = None;
    let mut frontier = vec![v];
    let mut seen = vec![false; graph.values.len()];
    while let Some(value) = frontier.pop() {
        if std::mem::replace(&mut seen[value], true) {
            continue;
        }
        for node in &graph.nodes {
            let Some(position) = node.inputs.iter().position(|i| *i == Some(value)) else { continue };
            match &node.op {
                Op::Gather { axis } if position == 1 => {
                    let Some(table) = node.inputs[0].and_then(|t| graph.constant(t)) else { continue };
                    let rank = table.rank() as i64;
                    let axis = if *axis < 0 { axis + rank } else { *axis };
                    if let Some(&n) = usize::try_from(axis).ok().and_then(|a| table.shape().get(a)) {
                        rows = Some(rows.map_or(n, |r| r.min(n)));
                    }
                }
                Op::Cast { .. }
                | Op::Reshape { .. }
                | Op::Squeeze
                | Op::Unsqueeze
                | Op::Flatten { .. }
                | Op::Identity
                    if position == 0 =>
                {
                    frontier.extend(&node.outputs)
                }
                _ => {}
            }
        }
    }
    rows
}

/// Latency summary; percentiles by nearest rank.
fn latency(samples: &mut [f64]) -> Latency {
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[i.clamp(1, samples.len()) - 1]
    };
    Latency {
        mean: samples.iter().sum::<f64>() / samples.len() as f64,
        min: samples[0],
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: samples[samples.len() - 1],
    }
}

/// Peak resident set size of this process, in bytes.
fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        // SAFETY: getrusage writes one rusage struct into the zeroed one we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        // ru_maxrss is in bytes on macOS and in KiB on the BSDs.
        let scale = if cfg!(target_os = "macos") { 1 } else { 1024 };
        Some(usage.ru_maxrss as u64 * scale)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// A bar over the whole warm-up + measurement time, on stderr, shown only on a
/// terminal (scripts and logs get no control characters).
fn progress_bar(total: Duration) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.as_millis() as u64);
    let style = ProgressStyle::with_template("{msg:>10} [{bar:40}] {elapsed}/{duration}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

fn print_report(r: &Report) {
    println!("model        {}", r.model);
    println!("device       {} (backend {})", r.device, r.backend);
    println!("batch        {}", r.batch);
    if r.concurrency > 1 {
        println!("concurrency  {} runs in flight", r.concurrency);
    }
    println!(
        "runs         {} in {:.2} s after {} warm-up runs (load {:.0} ms, first run {:.1} ms)",
        r.runs, r.duration_s, r.warmup_runs, r.load_ms, r.first_run_ms
    );
    println!("throughput   {:.2} items/s ({:.2} runs/s)", r.items_per_s, r.runs_per_s);
    let l = &r.latency_ms;
    println!(
        "latency ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (mean {:.2}, min {:.2})",
        l.p50, l.p90, l.p99, l.max, l.mean, l.min
    );
    match r.peak_rss_bytes {
        Some(b) => println!("peak RSS     {}", super::inspect::human_bytes(b)),
        None => println!("peak RSS     not available on this platform"),
    }
    if let Some(b) = r.gpu_memory_bytes {
        println!("GPU memory   {} (weights + planned intermediates)", super::inspect::human_bytes(b));
    }
}

/// SplitMix64: a small, well-mixed generator; enough for benchmark inputs and
/// keeps the tool free of a random-number dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::{Fact, Shape};

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let l = latency(&mut samples);
        assert_eq!((l.min, l.p50, l.p90, l.p99, l.max), (1.0, 50.0, 90.0, 99.0, 100.0));
        assert_eq!(l.mean, 50.5);
        let one = latency(&mut [3.0]);
        assert_eq!((one.p50, one.p99), (3.0, 3.0));
    }

    #[test]
    fn ids_stay_inside_the_embedding_table_through_a_cast() {
        let mut g = Graph::new(17);
        let sym = |s: &str| Dim::Sym(s.into());
        let ids = g.add_value("ids", Fact::new(DType::I32, Shape::new(vec![sym("batch"), sym("seq")])));
        g.inputs.push(ids);
        let cast = g.add_value("cast", Fact::new(DType::I64, Shape::unknown()));
        g.add_node("cast", Op::Cast { to: DType::I64 }, vec![Some(ids)], vec![cast]);
        let table = g.add_constant("table", Tensor::zeros(DType::F32, &[7, 4]));
        let out = g.add_value("out", Fact::new(DType::F32, Shape::unknown()));
        g.add_node("embed", Op::Gather { axis: 0 }, vec![Some(table), Some(cast)], vec![out]);
        g.outputs.push(out);
        assert_eq!(embedding_rows(&g, ids), Some(7));
        assert_eq!(default_shape(&g, ids, 3).unwrap(), vec![3, DEFAULT_SYMBOLIC_DIM]);
        let (t, _) = random_input(&g, ids, &[2, 50], &mut SplitMix64(1)).unwrap();
        assert_eq!(t.dtype(), DType::I32);
        let values = t.as_slice::<i32>().unwrap();
        assert!(values.iter().all(|&v| (0..7).contains(&v)));
        assert!(values.contains(&6), "the whole range is used");
    }

    #[test]
    fn refuses_bad_seconds() {
        assert!(check_seconds("--duration", 0.0, false).is_err());
        assert!(check_seconds("--warmup", 0.0, true).is_ok());
        assert!(check_seconds("--warmup", f64::NAN, true).is_err());
        assert!(check_seconds("--duration", -1.0, false).is_err());
    }
}
