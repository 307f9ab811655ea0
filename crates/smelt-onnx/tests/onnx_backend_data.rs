//! Loads every model of the onnx Python package's backend test data, when the
//! package is installed in the workspace's virtual environment, and checks that
//! each model either loads or is refused only for operators Smelt does not run
//! or for an opset older than Smelt supports, or for a feature it deliberately
//! lacks (float8/int4 element types, training mode, sequences).
//!
//! `SMELT_ONNX_TEST_DATA` may name more directories (separated by `:`), such as the
//! per-operator models `tools/gen_node_tests.py` writes.

use smelt_onnx::{load_model, read_tensor_proto, OnnxError};
use std::path::{Path, PathBuf};

fn data_dirs() -> Vec<PathBuf> {
    let mut dirs =
        vec![Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.venv/lib/python3.11/site-packages/onnx/backend/test/data")];
    if let Ok(extra) = std::env::var("SMELT_ONNX_TEST_DATA") {
        dirs.extend(extra.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

fn models_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            models_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "onnx") {
            out.push(path);
        }
    }
}

/// Refusals for things Smelt deliberately does not run (element types, training
/// mode, non-tensor values, one layout), as opposed to import bugs.
fn unsupported_feature(message: &str) -> bool {
    ["which Smelt does not support", "inference mode only", "dense tensors only", "implements DCR only"]
        .iter()
        .any(|m| message.contains(m))
}

#[test]
fn backend_test_models_load_or_fail_only_on_unsupported_ops() {
    let dirs = data_dirs();
    if dirs.is_empty() {
        eprintln!("skipped: no ONNX test data directory exists");
        return;
    }
    let mut models = Vec::new();
    for dir in &dirs {
        models_under(dir, &mut models);
    }
    assert!(!models.is_empty());
    let mut loaded = 0;
    let mut unsupported = std::collections::BTreeMap::<String, usize>::new();
    let mut old_opsets = std::collections::BTreeMap::<i64, usize>::new();
    let mut features = std::collections::BTreeMap::<String, usize>::new();
    let mut other_failures = Vec::new();
    for path in &models {
        match load_model(path) {
            Ok(model) => {
                loaded += 1;
                // The test inputs beside the model must read as tensors too.
                let data_set = path.parent().unwrap().join("test_data_set_0");
                for i in 0..model.graph.inputs.len() {
                    let file = data_set.join(format!("input_{i}.pb"));
                    if let Ok(bytes) = std::fs::read(&file) {
                        if let Err(e) = read_tensor_proto(&bytes) {
                            other_failures.push(format!("{}: {e}", file.display()));
                        }
                    }
                }
            }
            Err(OnnxError::UnsupportedOps(nodes)) => {
                for n in nodes {
                    *unsupported.entry(format!("{}::{}", n.domain, n.op_type)).or_default() += 1;
                }
            }
            Err(OnnxError::UnsupportedOpset { found, .. }) => *old_opsets.entry(found).or_default() += 1,
            Err(e) if unsupported_feature(&e.to_string()) => {
                *features.entry(e.to_string().split(": ").last().unwrap_or_default().to_string()).or_default() += 1
            }
            Err(e) => other_failures.push(format!("{}: {e}", path.display())),
        }
    }
    eprintln!("{loaded} of {} models load", models.len());
    eprintln!("refused for their opset: {old_opsets:?}");
    eprintln!("refused for unsupported ops: {unsupported:?}");
    eprintln!("refused for features Smelt lacks: {features:#?}");
    assert!(other_failures.is_empty(), "failures other than unsupported ops:\n{}", other_failures.join("\n"));
}
