//! `smelt conformance`: runs ONNX backend test cases (the classic on-disk layout:
//! `<suite>/<case>/model.onnx` + `test_data_set_N/{input,output}_K.pb`) and compares
//! Smelt's outputs with the expected ones at each case's tolerance.

use anyhow::{bail, Context, Result};
use smelt_ir::{DType, Tensor};
use smelt_runtime::{Device, Session, SessionOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pass,
    /// The model uses ops Smelt does not run; not counted.
    Unsupported(String),
    Fail(String),
}

struct CaseResult {
    id: String,
    ops: Vec<String>,
    outcome: Outcome,
}

struct Tolerance {
    rtol: f64,
    atol: f64,
}

pub fn main(args: Args) -> Result<()> {
    let device: Device = args.device.parse()?;
    let options = SessionOptions { device, threads: args.threads, optimize: true };
    let cases = find_cases(&args.cases)?;
    if cases.is_empty() {
        bail!("no cases under {} (expected <suite>/<case>/model.onnx)", args.cases.display());
    }
    let mut results = Vec::new();
    for (id, dir) in cases {
        if args.filter.as_deref().is_some_and(|f| !id.contains(f)) {
            continue;
        }
        let ops = case_ops(&dir);
        let outcome = match std::panic::catch_unwind(|| run_case(&dir, &options)) {
            Ok(o) => o,
            Err(p) => Outcome::Fail(format!("PANIC: {}", panic_message(&p))),
        };
        results.push(CaseResult { id, ops, outcome });
    }
    let passed: BTreeSet<&str> = results.iter().filter(|r| r.outcome == Outcome::Pass).map(|r| r.id.as_str()).collect();
    let supported = results.iter().filter(|r| !matches!(r.outcome, Outcome::Unsupported(_))).count();
    println!(
        "{} cases: {} supported, {} passed ({:.1}% of supported), {} unsupported",
        results.len(),
        supported,
        passed.len(),
        100.0 * passed.len() as f64 / supported.max(1) as f64,
        results.len() - supported
    );
    for r in &results {
        if let Outcome::Fail(why) = &r.outcome {
            println!("FAIL {}: {}", r.id, first_line(why));
        }
    }
    if let Some(path) = &args.report {
        std::fs::write(path, report(&results)).with_context(|| format!("cannot write {}", path.display()))?;
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

fn run_case(dir: &Path, options: &SessionOptions) -> Outcome {
    let session = match Session::load(&dir.join("model.onnx"), options) {
        Ok(s) => s,
        Err(smelt_runtime::RuntimeError::Onnx(e)) if outside_scope(&e) => return Outcome::Unsupported(e.to_string()),
        Err(e) => return Outcome::Fail(format!("load: {e}")),
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

fn report(results: &[CaseResult]) -> String {
    let mut per_op: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in results.iter().filter(|r| !matches!(r.outcome, Outcome::Unsupported(_))) {
        for op in &r.ops {
            let e = per_op.entry(op.as_str()).or_default();
            e.1 += 1;
            if r.outcome == Outcome::Pass {
                e.0 += 1;
            }
        }
    }
    let supported = results.iter().filter(|r| !matches!(r.outcome, Outcome::Unsupported(_))).count();
    let passed = results.iter().filter(|r| r.outcome == Outcome::Pass).count();
    let mut s = String::new();
    let _ = writeln!(s, "# ONNX backend test suite\n");
    let _ = writeln!(
        s,
        "{} cases; {supported} use only ops Smelt supports, of which {passed} pass ({:.1}%).\n",
        results.len(),
        100.0 * passed as f64 / supported.max(1) as f64
    );
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
    let _ = writeln!(s, "\n## Not run: unsupported ops\n");
    for r in results {
        if let Outcome::Unsupported(why) = &r.outcome {
            let _ = writeln!(s, "- `{}`: {}", r.id, first_line(why));
        }
    }
    s
}
