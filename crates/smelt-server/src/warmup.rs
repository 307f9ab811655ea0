//! model_warmup: sample requests a version runs before it is declared READY, so
//! that the first real requests do not pay for first-run costs. A sample that
//! fails fails the load, with the reason.
//!
//! Each sample (`ModelWarmup`) names a batch size and, per input, a datatype,
//! dims (without the batch dimension) and its data: zeros, random values, or a
//! raw little-endian file in the model's `warmup/` folder. It runs `count` times
//! (0 reads as 1), outside the queue and the statistics.

use crate::datatype::WireType;
use crate::infer::{InputTensor, ServedVersion, TensorData};
use crate::proto::inference::model_warmup::input::InputDataType;
use crate::proto::inference::model_warmup::Input;
use crate::proto::inference::ModelWarmup;
use smelt_ir::Tensor;
use std::path::Path;
use std::time::Instant;

/// The folder of a model's warmup data files, beside its version folders.
pub const WARMUP_FOLDER: &str = "warmup";

/// Runs every warmup sample of `served`'s configuration. `model_dir` is the
/// model's folder (where `warmup/` is).
pub fn run(served: &ServedVersion, model_dir: &Path) -> Result<(), String> {
    for (i, sample) in served.config.model_warmup.iter().enumerate() {
        let label = if sample.name.is_empty() { format!("model_warmup[{i}]") } else { format!("'{}'", sample.name) };
        let fail = |why: String| format!("warmup sample {label} of model '{}' failed: {why}", served.model);
        let inputs = sample_inputs(served, sample, model_dir).map_err(fail)?;
        let runs = sample.count.max(1);
        let start = Instant::now();
        for _ in 0..runs {
            served.run_unscheduled(inputs.clone()).map_err(|e| fail(e.message))?;
        }
        tracing::info!(
            "model '{}' version {}: warmup sample {label} ran {runs} time(s) in {:.1} ms",
            served.model,
            served.version,
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn sample_inputs(served: &ServedVersion, sample: &ModelWarmup, model_dir: &Path) -> Result<Vec<InputTensor>, String> {
    let batching = served.config.max_batch_size > 0;
    if batching && sample.batch_size == 0 {
        return Err("batch_size is 0; a batching model needs at least 1".to_string());
    }
    if batching && sample.batch_size as i64 > served.config.max_batch_size as i64 {
        return Err(format!(
            "batch_size {} exceeds the model's max_batch_size {}",
            sample.batch_size, served.config.max_batch_size
        ));
    }
    let mut names: Vec<&String> = sample.inputs.keys().collect();
    names.sort();
    let mut inputs = Vec::with_capacity(names.len());
    for name in names {
        let input = &sample.inputs[name];
        let wire = WireType::from_config(input.data_type)
            .ok_or_else(|| format!("input '{name}' has no valid data_type ({})", input.data_type))?;
        let dtype =
            wire.dtype().ok_or_else(|| format!("input '{name}' is {wire}, which Smelt's models cannot take"))?;
        let mut shape = Vec::with_capacity(input.dims.len() + 1);
        if batching {
            shape.push(sample.batch_size as usize);
        }
        for &d in &input.dims {
            let d = usize::try_from(d)
                .map_err(|_| format!("input '{name}' has dims {:?}; each must be 0 or more", input.dims))?;
            shape.push(d);
        }
        let tensor = sample_data(name, input, dtype, &shape, model_dir)?;
        inputs.push(InputTensor { name: name.clone(), wire, shape, data: TensorData::Tensor(tensor) });
    }
    Ok(inputs)
}

fn sample_data(
    name: &str,
    input: &Input,
    dtype: smelt_ir::DType,
    shape: &[usize],
    model_dir: &Path,
) -> Result<Tensor, String> {
    let elements: usize = shape.iter().product();
    let size = elements * dtype.size();
    let bytes = match &input.input_data_type {
        None | Some(InputDataType::ZeroData(_)) => vec![0u8; size],
        Some(InputDataType::RandomData(_)) => random_bytes(dtype, elements),
        Some(InputDataType::InputDataFile(file)) => {
            let path = model_dir.join(WARMUP_FOLDER).join(file);
            let bytes =
                std::fs::read(&path).map_err(|e| format!("input '{name}': cannot read {}: {e}", path.display()))?;
            // A file holding one sample's worth is repeated for each batch item.
            let per_item = if shape.is_empty() { size } else { size / shape[0].max(1) };
            if bytes.len() == size {
                bytes
            } else if bytes.len() == per_item && per_item > 0 {
                bytes.repeat(size / per_item)
            } else {
                return Err(format!(
                    "input '{name}': {} holds {} bytes, but {} {} elements of shape {shape:?} take {size}",
                    path.display(),
                    bytes.len(),
                    elements,
                    dtype.name()
                ));
            }
        }
    };
    Tensor::from_bytes(dtype, shape, &bytes).map_err(|e| format!("input '{name}': {e}"))
}

/// Values that are valid for every datatype: for floats in [0, 1), for integers
/// 0..=99, for booleans 0 or 1. A fixed seed keeps warmups reproducible.
fn random_bytes(dtype: smelt_ir::DType, elements: usize) -> Vec<u8> {
    use smelt_ir::DType;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(elements * dtype.size());
    for _ in 0..elements {
        let r = next();
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        let small = r % 100;
        match dtype {
            DType::F32 => out.extend_from_slice(&(unit as f32).to_le_bytes()),
            DType::F64 => out.extend_from_slice(&unit.to_le_bytes()),
            DType::F16 => out.extend_from_slice(&half::f16::from_f64(unit).to_le_bytes()),
            DType::BF16 => out.extend_from_slice(&half::bf16::from_f64(unit).to_le_bytes()),
            DType::Bool => out.push((r & 1) as u8),
            _ => out.extend_from_slice(&small.to_le_bytes()[..dtype.size()]),
        }
    }
    out
}
