//! Loads every model of the onnx Python package's backend test data, when the
//! package is installed in the workspace's virtual environment, and checks that
//! each model either loads or is refused only for operators Smelt does not run
//! or for an opset older than Smelt supports.

use smelt_onnx::{load_model, read_tensor_proto, OnnxError};
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib/python3.11/site-packages/onnx/backend/test/data")
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

#[test]
fn backend_test_models_load_or_fail_only_on_unsupported_ops() {
    let dir = data_dir();
    if !dir.is_dir() {
        eprintln!("skipped: {} does not exist", dir.display());
        return;
    }
    let mut models = Vec::new();
    models_under(&dir, &mut models);
    assert!(!models.is_empty());
    let mut loaded = 0;
    let mut unsupported = std::collections::BTreeMap::<String, usize>::new();
    let mut old_opsets = std::collections::BTreeMap::<i64, usize>::new();
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
            Err(e) => other_failures.push(format!("{}: {e}", path.display())),
        }
    }
    eprintln!(
        "{loaded} of {} models load; refused for their opset: {old_opsets:?}; unsupported ops in the rest: {unsupported:?}",
        models.len()
    );
    assert!(other_failures.is_empty(), "failures other than unsupported ops:\n{}", other_failures.join("\n"));
}
