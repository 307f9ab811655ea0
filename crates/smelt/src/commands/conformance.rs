//! `smelt conformance`: runs ONNX backend test cases (the classic on-disk layout:
//! `<suite>/<case>/model.onnx` + `test_data_set_N/{input,output}_K.pb`) and compares
//! Smelt's outputs with the expected ones at each case's tolerance.
//!
//! Cases run in worker processes (`--jobs`), each a copy of this command with the
//! hidden `--worker` flag that reads case ids on stdin and answers one result line
//! per case. A process, not a thread, because what can go wrong in a case cannot
//! all be caught in-process: a hang inside a GPU driver, an abort, a panic on one
//! of wgpu's own threads, a lost device. The parent kills a worker whose case runs
//! past `--case-timeout` (or that dies), fails that case with the reason, and
//! starts a fresh worker for the rest.

use anyhow::{bail, Context, Result};
use smelt_ir::{DType, Tensor};
use smelt_runtime::gpu::GpuContext;
use smelt_runtime::{Backend, CpuBackend, Device, GpuBackend, Session, SessionOptions};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Folder holding `<suite>/<case>/model.onnx` cases.
    cases: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    threads: Option<usize>,
    /// Only cases whose `suite/case` id contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Fail if any case listed in this file (one `suite/case` per line) does not pass.
    #[arg(long, value_name = "FILE")]
    expect_pass: Option<PathBuf>,
    /// Write the ids of passing cases here.
    #[arg(long, value_name = "FILE")]
    write_pass: Option<PathBuf>,
    /// Write a Markdown report (per-op pass/total, every failure with its reason).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Worker processes running cases side by side (each runs one case at a time;
    /// `--threads` applies to each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: u64,
    /// A case still running after this many seconds fails as timed out; its worker
    /// is killed and a fresh one runs the remaining cases.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    case_timeout: u64,
    /// Do not run cases whose model needs more than this many GFLOP per run
    /// (counted from the first data set's input shapes); the report lists them.
    /// For slow devices: on lavapipe (about 1 GFLOP/s at best) the largest model
    /// cases would take minutes each.
    #[arg(long, value_name = "GFLOP")]
    max_gflop: Option<f64>,
    /// Internal: run as a worker (case ids on stdin, one `RESULT <json>` line per
    /// case on stdout).
    #[arg(long, hide = true)]
    worker: bool,
}

/// Prefix of a worker's result lines; anything else it prints goes to stderr.
const RESULT_PREFIX: &str = "RESULT ";

/// Lines of a dead worker's stderr quoted in its case's failure.
const STDERR_TAIL_LINES: usize = 8;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "why", rename_all = "lowercase")]
enum Outcome {
    Pass,
    /// The model uses ops Smelt does not run; not counted.
    Unsupported(String),
    /// Needs more compute than `--max-gflop` allows; not run, not counted.
    TooLarge(String),
    Fail(String),
}

impl Outcome {
    /// Whether the case ran and counts towards the pass rate.
    fn counted(&self) -> bool {
        matches!(self, Outcome::Pass | Outcome::Fail(_))
    }
}

struct CaseResult {
    id: String,
    ops: Vec<String>,
    outcome: Outcome,
    seconds: f64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WorkerReply {
    id: String,
    outcome: Outcome,
}

struct Tolerance {
    rtol: f64,
    atol: f64,
}

pub fn main(args: Args) -> Result<()> {
    let device: Device = args.device.parse()?;
    let options = SessionOptions { device, threads: args.threads, optimize: true };
    if args.worker {
        return worker(&args.cases, &options, args.max_gflop);
    }
    let cases: Vec<(String, PathBuf)> = find_cases(&args.cases)?
        .into_iter()
        .filter(|(id, _)| args.filter.as_deref().is_none_or(|f| id.contains(f)))
        .collect();
    if cases.is_empty() {
        match &args.filter {
            Some(f) => bail!("no case under {} matches --filter '{f}'", args.cases.display()),
            None => bail!("no cases under {} (expected <suite>/<case>/model.onnx)", args.cases.display()),
        }
    }
    let started = Instant::now();
    let exe = std::env::current_exe().context("cannot find the smelt executable to start workers")?;
    let worker_command = || {
        let mut command = Command::new(&exe);
        command.arg("conformance").arg(&args.cases).args(["--device", &args.device, "--worker"]);
        if let Some(t) = args.threads {
            command.args(["--threads", &t.to_string()]);
        }
        if let Some(g) = args.max_gflop {
            command.args(["--max-gflop", &g.to_string()]);
        }
        command
    };
    let ids: Vec<&str> = cases.iter().map(|(id, _)| id.as_str()).collect();
    let outcomes = run_in_workers(&ids, args.jobs as usize, Duration::from_secs(args.case_timeout), &worker_command)?;
    let wall = started.elapsed().as_secs_f64();
    let results: Vec<CaseResult> = cases
        .into_iter()
        .zip(outcomes)
        .map(|((id, dir), (outcome, seconds))| CaseResult { id, ops: case_ops(&dir), outcome, seconds })
        .collect();
    let passed: BTreeSet<&str> = results.iter().filter(|r| r.outcome == Outcome::Pass).map(|r| r.id.as_str()).collect();
    let supported = results.iter().filter(|r| r.outcome.counted()).count();
    let too_large = results.iter().filter(|r| matches!(r.outcome, Outcome::TooLarge(_))).count();
    println!(
        "{} cases: {} supported, {} passed ({:.1}% of supported), {} unsupported, {} above --max-gflop",
        results.len(),
        supported,
        passed.len(),
        100.0 * passed.len() as f64 / supported.max(1) as f64,
        results.len() - supported - too_large,
        too_large
    );
    println!("ran in {wall:.0} s on {} ({} worker(s))", args.device, args.jobs);
    for r in &results {
        if let Outcome::Fail(why) = &r.outcome {
            println!("FAIL {}: {}", r.id, first_line(why));
        }
    }
    if let Some(path) = &args.report {
        std::fs::write(path, report(&results, &args.device, wall))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.write_pass {
        let text: String = passed.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.expect_pass {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let ran: BTreeSet<&str> = results.iter().map(|r| r.id.as_str()).collect();
        let regressions: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter(|id| ran.contains(id) && !passed.contains(id))
            .collect();
        let missing: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && args.filter.is_none() && !ran.contains(l))
            .collect();
        if !regressions.is_empty() || !missing.is_empty() {
            for id in &regressions {
                println!("REGRESSION {id}");
            }
            for id in &missing {
                println!("MISSING {id} (listed as passing, but no such case was found)");
            }
            bail!("{} listed case(s) no longer pass, {} missing", regressions.len(), missing.len());
        }
        println!("every listed case still passes");
    }
    Ok(())
}

/// The worker side: runs the cases named on stdin, one after another, and answers
/// each with one result line.
fn worker(root: &Path, options: &SessionOptions, max_gflop: Option<f64>) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut shared = None;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("worker: cannot read a case id")?;
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        let dir = root.join(id);
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_case(&dir, options, &mut shared, max_gflop)
        })) {
            Ok(o) => o,
            Err(p) => {
                // The panic may have left the backend's locks poisoned or its
                // state half-updated: the next case gets a fresh one.
                shared = None;
                Outcome::Fail(format!("PANIC: {}", panic_message(&p)))
            }
        };
        let reply = serde_json::to_string(&WorkerReply { id: id.to_string(), outcome })?;
        writeln!(stdout, "{RESULT_PREFIX}{reply}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// Runs the cases `ids` in `jobs` worker processes started with `worker_command`;
/// each case's outcome and seconds, in the order of `ids`.
fn run_in_workers(
    ids: &[&str],
    jobs: usize,
    timeout: Duration,
    worker_command: &(dyn Fn() -> Command + Sync),
) -> Result<Vec<(Outcome, f64)>> {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..ids.len()).collect());
    let results: Mutex<Vec<Option<(Outcome, f64)>>> = Mutex::new(vec![None; ids.len()]);
    let jobs = jobs.clamp(1, ids.len().max(1));
    let poisoned = || anyhow::anyhow!("a conformance worker thread panicked");
    std::thread::scope(|scope| -> Result<()> {
        let drivers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let mut worker: Option<Worker> = None;
                    loop {
                        let Some(i) = queue.lock().map_err(|_| poisoned())?.pop_front() else {
                            return Ok(());
                        };
                        let w = match &mut worker {
                            Some(w) => w,
                            None => worker.insert(Worker::start(worker_command())?),
                        };
                        let started = Instant::now();
                        let (outcome, reusable) = w.run(ids[i], timeout);
                        if !reusable {
                            worker = None;
                        }
                        results.lock().map_err(|_| poisoned())?[i] = Some((outcome, started.elapsed().as_secs_f64()));
                    }
                })
            })
            .collect();
        for d in drivers {
            d.join().map_err(|_| poisoned())??;
        }
        Ok(())
    })?;
    let results = results.into_inner().map_err(|_| poisoned())?;
    results.into_iter().zip(ids).map(|(r, id)| r.with_context(|| format!("no result for {id}"))).collect()
}

/// One worker process (`smelt conformance --worker`) and the threads reading its
/// output.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    /// Result lines, without the prefix; disconnected once the worker's stdout ends.
    replies: mpsc::Receiver<String>,
    /// The last lines the worker wrote to stderr (also passed on to ours).
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Signalled when the worker's stderr ends, so a crash report has its last words.
    stderr_closed: mpsc::Receiver<()>,
}

impl Worker {
    fn start(mut command: Command) -> Result<Worker> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start a conformance worker process")?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("conformance worker started without its pipes");
        };
        let (reply_tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                match line.strip_prefix(RESULT_PREFIX) {
                    Some(reply) => {
                        if reply_tx.send(reply.to_string()).is_err() {
                            return;
                        }
                    }
                    None => eprintln!("{line}"),
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (closed_tx, stderr_closed) = mpsc::channel();
        let tail = stderr_tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                eprintln!("{line}");
                if let Ok(mut t) = tail.lock() {
                    if t.len() == STDERR_TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
            let _ = closed_tx.send(());
        });
        Ok(Worker { child, stdin, replies, stderr_tail, stderr_closed })
    }

    /// Runs case `id`. The flag is false when the worker cannot take another case
    /// (it timed out, died or answered nonsense) and must be replaced.
    fn run(&mut self, id: &str, timeout: Duration) -> (Outcome, bool) {
        if let Err(e) = writeln!(self.stdin, "{id}").and_then(|_| self.stdin.flush()) {
            return (
                Outcome::Fail(format!(
                    "CRASH: the worker process was gone before the case started ({e}){}",
                    self.last_words()
                )),
                false,
            );
        }
        match self.replies.recv_timeout(timeout) {
            Ok(line) => match serde_json::from_str::<WorkerReply>(&line) {
                Ok(reply) if reply.id == id => (reply.outcome, true),
                Ok(reply) => (Outcome::Fail(format!("the worker answered for '{}' instead", reply.id)), false),
                Err(e) => (Outcome::Fail(format!("unreadable worker reply ({e}): {line}")), false),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => (
                Outcome::Fail(format!(
                    "TIMEOUT: still running after {} s (--case-timeout); its worker was killed",
                    timeout.as_secs()
                )),
                false,
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = match self.child.wait() {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("status unknown: {e}"),
                };
                (
                    Outcome::Fail(format!(
                        "CRASH: the worker process ended ({status}) during the case{}",
                        self.last_words()
                    )),
                    false,
                )
            }
        }
    }

    /// The tail of the worker's stderr, for a failure message ("" when empty).
    fn last_words(&self) -> String {
        let _ = self.stderr_closed.recv_timeout(Duration::from_secs(5));
        let tail =
            self.stderr_tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join(" / ")).unwrap_or_default();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ended: {tail}")
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Idle or stuck, the process has nothing left to do for us.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// `suite/case` ids and folders, sorted.
fn find_cases(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let read = |p: &Path| std::fs::read_dir(p).with_context(|| format!("cannot read {}", p.display()));
    for suite in read(root)? {
        let suite = suite?.path();
        if !suite.is_dir() {
            continue;
        }
        for case in read(&suite)? {
            let case = case?.path();
            if case.join("model.onnx").is_file() {
                let id = format!(
                    "{}/{}",
                    suite.file_name().unwrap_or_default().to_string_lossy(),
                    case.file_name().unwrap_or_default().to_string_lossy()
                );
                out.push((id, case));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Op types the case's model uses (from `meta.json` when present, else the model).
fn case_ops(dir: &Path) -> Vec<String> {
    let from_meta = std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|m| m.get("op_types").and_then(|o| o.as_array().cloned()))
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect::<Vec<_>>());
    if let Some(ops) = from_meta {
        return ops;
    }
    std::fs::read(dir.join("model.onnx"))
        .ok()
        .and_then(|b| smelt_onnx::summarize(&b).ok())
        .map(|s| s.op_histogram.iter().map(|h| h.op_type.clone()).collect())
        .unwrap_or_default()
}

fn tolerance(dir: &Path) -> Tolerance {
    let meta = std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let get = |k: &str, d: f64| meta.as_ref().and_then(|m| m.get(k)).and_then(|v| v.as_f64()).unwrap_or(d);
    Tolerance { rtol: get("rtol", 1e-3), atol: get("atol", 1e-7) }
}

/// The backend a worker's cases share: one opened GPU serves them all (device,
/// buffer pool, compiled pipelines), as it would serve a server's models. Opened
/// at the first case that needs it, and again after the device was lost.
struct SharedBackend {
    backend: Box<dyn Backend>,
    gpu: Option<Arc<GpuContext>>,
}

impl SharedBackend {
    fn open(options: &SessionOptions) -> smelt_runtime::Result<SharedBackend> {
        Ok(match options.device {
            Device::Cpu => SharedBackend { backend: Box::new(CpuBackend::new(options.threads)?), gpu: None },
            Device::Gpu(ordinal) => {
                let backend = GpuBackend::new(ordinal)?;
                let gpu = Some(backend.context().clone());
                SharedBackend { backend: Box::new(backend), gpu }
            }
        })
    }
}

fn load_error(e: smelt_runtime::RuntimeError) -> Outcome {
    match e {
        smelt_runtime::RuntimeError::Onnx(e) if outside_scope(&e) => Outcome::Unsupported(e.to_string()),
        e => Outcome::Fail(format!("load: {e}")),
    }
}

fn run_case(
    dir: &Path,
    options: &SessionOptions,
    shared: &mut Option<SharedBackend>,
    max_gflop: Option<f64>,
) -> Outcome {
    let model = match smelt_onnx::load_model(&dir.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return load_error(e.into()),
    };
    if shared.as_ref().is_some_and(|s| s.gpu.as_ref().is_some_and(|g| g.is_lost())) {
        *shared = None;
    }
    let backend = match shared {
        Some(s) => s,
        None => match SharedBackend::open(options) {
            Ok(s) => shared.insert(s),
            Err(e) => return Outcome::Fail(format!("cannot open the device: {e}")),
        },
    };
    let session = match Session::from_graph_on(model.graph, backend.backend.as_ref(), options) {
        Ok(s) => s,
        Err(e) => return load_error(e),
    };
    let tol = tolerance(dir);
    let mut sets: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect(),
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    sets.sort();
    if sets.is_empty() {
        return Outcome::Fail("no test_data_set_* folder".into());
    }
    if let Some(limit) = max_gflop {
        // Counted before anything runs on the device; a case whose FLOPs cannot
        // be counted (inputs bound differently) runs.
        let gflop = read_pbs(&sets[0], "input")
            .ok()
            .and_then(|inputs| smelt_runtime::analysis::analyse(session.graph(), &inputs).ok())
            .map(|a| a.total_flops as f64 / 1e9);
        if let Some(g) = gflop.filter(|&g| g > limit) {
            return Outcome::TooLarge(format!("needs {g:.1} GFLOP per run, above --max-gflop {limit}"));
        }
    }
    for set in sets {
        if let Err(e) = run_set(&session, &set, &tol) {
            return Outcome::Fail(format!("{}: {e:#}", set.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    Outcome::Pass
}

/// Whether a load error says the model needs something Smelt does not claim to
/// run: ops outside its op set, opsets before 7, element types outside its dtype
/// set (float8, int4, strings, ...), sequence/optional values, or training-mode ops. Such cases are reported
/// as not run, not as failures; every other load error is a failure.
fn outside_scope(e: &smelt_onnx::OnnxError) -> bool {
    use smelt_onnx::OnnxError::*;
    match e {
        UnsupportedOps(_) | UnsupportedOpset { .. } | NoDefaultOpset { .. } => true,
        BadAttribute { message, .. }
        | BadNode { message, .. }
        | BadValue { message, .. }
        | BadTensor { message, .. } => {
            message.contains("which Smelt does not support")
                || message.contains("inference mode only")
                || message.contains("Smelt supports dense tensors only")
        }
        _ => false,
    }
}

fn read_pbs(set: &Path, prefix: &str) -> Result<Vec<Tensor>> {
    let mut out = Vec::new();
    for k in 0.. {
        let path = set.join(format!("{prefix}_{k}.pb"));
        if !path.exists() {
            break;
        }
        let bytes = std::fs::read(&path)?;
        let (_, t) = smelt_onnx::read_tensor_proto(&bytes).with_context(|| format!("{}", path.display()))?;
        out.push(t);
    }
    Ok(out)
}

fn run_set(session: &Session, set: &Path, tol: &Tolerance) -> Result<()> {
    let inputs = read_pbs(set, "input")?;
    let expected = read_pbs(set, "output")?;
    // Inputs bind by position: to the inputs without defaults first (what the
    // suite's own runner does), or to all inputs when every one is given.
    let graph = session.graph();
    let all: Vec<usize> = graph.inputs.clone();
    let required: Vec<usize> = all.iter().copied().filter(|v| !graph.input_defaults.contains_key(v)).collect();
    let targets = if inputs.len() == required.len() { required } else { all };
    if inputs.len() != targets.len() {
        bail!("{} input files for {} model inputs", inputs.len(), targets.len());
    }
    let named: Vec<(&str, &Tensor)> = targets.iter().map(|&v| graph.name(v)).zip(inputs.iter()).collect();
    let outputs = session.run(&named)?;
    if outputs.len() < expected.len() {
        bail!("{} outputs, expected {}", outputs.len(), expected.len());
    }
    for ((name, got), want) in outputs.iter().zip(&expected) {
        compare(got, want, tol).with_context(|| format!("output '{name}'"))?;
    }
    Ok(())
}

/// numpy's `assert_allclose`: |got - want| <= atol + rtol * |want|, NaNs equal.
fn compare(got: &Tensor, want: &Tensor, tol: &Tolerance) -> Result<()> {
    if got.dtype() != want.dtype() {
        bail!("dtype {} but expected {}", got.dtype(), want.dtype());
    }
    if got.shape() != want.shape() {
        bail!("shape {:?} but expected {:?}", got.shape(), want.shape());
    }
    let exact = !got.dtype().is_float();
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut worst: Option<(usize, f64)> = None;
    let mut bad = 0usize;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok = if exact {
            a == b
        } else if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if a.is_infinite() || b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= tol.atol + tol.rtol * b.abs()
        };
        if !ok {
            bad += 1;
            let err = (a - b).abs();
            if worst.is_none_or(|(_, e)| err > e || err.is_nan()) {
                worst = Some((i, err));
            }
        }
    }
    if let Some((i, _)) = worst {
        let kind = if got.dtype() == DType::Bool || exact { "exact" } else { "rtol/atol" };
        bail!(
            "{bad} of {} elements differ ({kind} rtol={} atol={}); worst at {i}: got {} expected {}",
            g.len(),
            tol.rtol,
            tol.atol,
            g[i],
            w[i]
        );
    }
    Ok(())
}

/// Cases listed in the report's "slowest" table.
const SLOWEST_SHOWN: usize = 15;

fn report(results: &[CaseResult], device: &str, wall: f64) -> String {
    let mut per_op: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in results.iter().filter(|r| r.outcome.counted()) {
        for op in &r.ops {
            let e = per_op.entry(op.as_str()).or_default();
            e.1 += 1;
            if r.outcome == Outcome::Pass {
                e.0 += 1;
            }
        }
    }
    let supported = results.iter().filter(|r| r.outcome.counted()).count();
    let passed = results.iter().filter(|r| r.outcome == Outcome::Pass).count();
    let mut s = String::new();
    let _ = writeln!(s, "# ONNX backend test suite\n");
    let _ = writeln!(
        s,
        "{} cases; {supported} use only ops Smelt supports (and fit --max-gflop), of which {passed} pass ({:.1}%).\n",
        results.len(),
        100.0 * passed as f64 / supported.max(1) as f64
    );
    let _ = writeln!(s, "Device `{device}`; {wall:.0} s wall time.\n");
    let _ = writeln!(s, "## Per op (cases containing the op)\n\n| op | pass | total |\n| --- | --- | --- |");
    for (op, (p, t)) in &per_op {
        let _ = writeln!(s, "| {op} | {p} | {t} |");
    }
    let _ = writeln!(s, "\n## Failures\n");
    for r in results {
        if let Outcome::Fail(why) = &r.outcome {
            let _ = writeln!(s, "- `{}`: {}", r.id, first_line(why).replace('|', "\\|"));
        }
    }
    let _ = writeln!(s, "\n## Slowest cases\n\n| case | seconds |\n| --- | --- |");
    let mut by_time: Vec<&CaseResult> = results.iter().collect();
    by_time.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    for r in by_time.iter().take(SLOWEST_SHOWN) {
        let _ = writeln!(s, "| `{}` | {:.1} |", r.id, r.seconds);
    }
    let _ = writeln!(s, "\n## Not run: above --max-gflop\n");
    for r in results {
        if let Outcome::TooLarge(why) = &r.outcome {
            let _ = writeln!(s, "- `{}`: {}", r.id, why);
        }
    }
    let _ = writeln!(s, "\n## Not run: unsupported ops\n");
    for r in results {
        if let Outcome::Unsupported(why) = &r.outcome {
            let _ = writeln!(s, "- `{}`: {}", r.id, first_line(why));
        }
    }
    s
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A stand-in worker: a shell loop that answers every case as passed, except
    /// `hang` (sleeps past the timeout) and `crash` (dies with a message).
    fn fake_worker() -> Command {
        let script = r#"while read id; do
            case "$id" in
                hang) exec sleep 30 ;;
                crash) echo "fake worker: lost the device" >&2; exit 3 ;;
            esac
            echo "RESULT {\"id\":\"$id\",\"outcome\":{\"kind\":\"pass\"}}"
        done"#;
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    fn outcomes(ids: &[&str], jobs: usize) -> Vec<Outcome> {
        let timeout = Duration::from_secs(2);
        run_in_workers(ids, jobs, timeout, &fake_worker).unwrap().into_iter().map(|(o, _)| o).collect()
    }

    fn failure(o: &Outcome) -> &str {
        match o {
            Outcome::Fail(why) => why,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_hung_case_times_out_and_the_rest_still_run() {
        let got = outcomes(&["a", "hang", "b", "c"], 1);
        assert_eq!(got[0], Outcome::Pass);
        assert!(failure(&got[1]).starts_with("TIMEOUT: still running after 2 s"), "{got:?}");
        assert_eq!(&got[2..], &[Outcome::Pass, Outcome::Pass]);
    }

    #[test]
    fn a_crashed_worker_fails_its_case_with_its_last_words() {
        let got = outcomes(&["a", "crash", "b"], 2);
        let why = failure(&got[1]);
        assert!(why.starts_with("CRASH: the worker process ended (exit status: 3)"), "{why}");
        assert!(why.contains("fake worker: lost the device"), "{why}");
        assert_eq!([&got[0], &got[2]], [&Outcome::Pass, &Outcome::Pass]);
    }
}
