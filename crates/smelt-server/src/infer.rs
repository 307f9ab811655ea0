//! One inference, independent of the protocol it arrived by: the request's tensors
//! are checked against the model's configuration, run on a free instance of the
//! model version, and the outputs it asked for are returned.

use crate::datatype::WireType;
use crate::error::{Result, ServerError};
use crate::proto::inference::ModelConfig;
use crate::repository::instance_count;
use crate::stats::{Execution, VersionStats};
use smelt_ir::Tensor;
use smelt_runtime::{RuntimeError, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The elements of a request tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Tensor(Tensor),
    /// BYTES elements, each a byte string.
    Bytes(Vec<Vec<u8>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputTensor {
    pub name: String,
    pub wire: WireType,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

#[derive(Clone, Debug, Default)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
    /// The outputs to return, in this order; `None`: every output of the config.
    pub outputs: Option<Vec<String>>,
    /// How long the request may wait for a free instance (`timeout` parameter).
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutputTensor {
    pub name: String,
    pub wire: WireType,
    pub tensor: Tensor,
}

#[derive(Clone, Debug)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

/// A configured input or output, as requests see it.
#[derive(Clone, Debug)]
struct TensorPlan {
    name: String,
    wire: WireType,
    /// Config dims (without the batch dimension when batching).
    dims: Vec<i64>,
    /// The shape the model takes or gives, if it differs from `dims`.
    reshape: Option<Vec<i64>>,
    optional: bool,
}

/// One loaded, ready model version.
pub struct ServedVersion {
    pub model: String,
    pub version: i64,
    pub config: Arc<ModelConfig>,
    session: Session,
    instances: Semaphore,
    pub stats: VersionStats,
    inputs: Vec<TensorPlan>,
    outputs: Vec<TensorPlan>,
}

/// A shape from `dims` (-1: any size) for `elements` elements; at most one -1.
pub fn solve_shape(dims: &[i64], elements: usize) -> Option<Vec<usize>> {
    let known: usize = dims.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
    let unknown = dims.iter().filter(|&&d| d < 0).count();
    match unknown {
        0 if known == elements => Some(dims.iter().map(|&d| d as usize).collect()),
        1 if known > 0 && elements % known == 0 => {
            Some(dims.iter().map(|&d| if d < 0 { elements / known } else { d as usize }).collect())
        }
        1 if known == 0 && elements == 0 => Some(dims.iter().map(|&d| d.max(0) as usize).collect()),
        _ => None,
    }
}

fn shape_fits(dims: &[i64], shape: &[usize]) -> bool {
    dims.len() == shape.len() && dims.iter().zip(shape).all(|(&d, &n)| d < 0 || d as usize == n)
}

fn format_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn format_dims(dims: &[i64]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

impl ServedVersion {
    /// Wraps a loaded session; `config` is complete and checked against it.
    pub fn new(model: &str, version: i64, config: Arc<ModelConfig>, session: Session) -> ServedVersion {
        let inputs = config
            .input
            .iter()
            .filter_map(|c| {
                Some(TensorPlan {
                    name: c.name.clone(),
                    wire: WireType::from_config(c.data_type)?,
                    dims: c.dims.clone(),
                    reshape: c.reshape.as_ref().map(|r| r.shape.clone()),
                    optional: c.optional,
                })
            })
            .collect();
        let outputs = config
            .output
            .iter()
            .filter_map(|c| {
                Some(TensorPlan {
                    name: c.name.clone(),
                    wire: WireType::from_config(c.data_type)?,
                    dims: c.dims.clone(),
                    reshape: c.reshape.as_ref().map(|r| r.shape.clone()),
                    optional: false,
                })
            })
            .collect();
        ServedVersion {
            model: model.to_string(),
            version,
            instances: Semaphore::new(instance_count(&config)),
            config,
            session,
            stats: VersionStats::default(),
            inputs,
            outputs,
        }
    }

    fn batching(&self) -> bool {
        self.config.max_batch_size > 0
    }

    /// The metadata shape of a configured tensor: -1 first when batching.
    fn metadata_shape(&self, plan: &TensorPlan) -> Vec<i64> {
        let mut shape = Vec::with_capacity(plan.dims.len() + 1);
        if self.batching() {
            shape.push(-1);
        }
        shape.extend(&plan.dims);
        shape
    }

    /// (name, datatype, shape) of each configured input.
    pub fn input_metadata(&self) -> Vec<(String, WireType, Vec<i64>)> {
        self.inputs.iter().map(|p| (p.name.clone(), p.wire, self.metadata_shape(p))).collect()
    }

    pub fn output_metadata(&self) -> Vec<(String, WireType, Vec<i64>)> {
        self.outputs.iter().map(|p| (p.name.clone(), p.wire, self.metadata_shape(p))).collect()
    }

    /// The configured datatype and dims of an input, for decoders that need them
    /// (the raw binary request, whose only input has no JSON description).
    pub fn only_input(&self) -> Option<(String, WireType, Vec<i64>)> {
        match self.inputs.as_slice() {
            [only] => Some((only.name.clone(), only.wire, self.metadata_shape(only))),
            _ => None,
        }
    }

    /// Runs one request. Errors carry Triton's `[request id: ...]` prefix.
    pub async fn infer(self: Arc<Self>, request: InferRequest) -> Result<InferResponse> {
        let arrived = Instant::now();
        let id_text = request.id.clone().unwrap_or_else(|| "<id_unknown>".to_string());
        let result = self.clone().infer_inner(request, arrived).await;
        match result {
            Ok((response, execution)) => {
                self.stats.record_success(&execution);
                Ok(response)
            }
            Err(e) => {
                self.stats.record_failure(arrived.elapsed());
                Err(ServerError::new(e.kind, format!("[request id: {id_text}] {}", e.message)))
            }
        }
    }

    async fn infer_inner(
        self: Arc<Self>,
        request: InferRequest,
        arrived: Instant,
    ) -> Result<(InferResponse, Execution)> {
        let batch_size = self.check(&request)?;
        let wanted = self.outputs_wanted(&request)?;
        let permit = match request.timeout {
            Some(limit) => tokio::time::timeout(limit, self.instances.acquire()).await.map_err(|_| {
                ServerError::unavailable(format!(
                    "request timed out after {} us waiting for a free instance of model '{}'",
                    limit.as_micros(),
                    self.model
                ))
            })?,
            None => self.instances.acquire().await,
        }
        .map_err(|_| ServerError::unavailable(format!("model '{}' is being unloaded", self.model)))?;
        let queue = arrived.elapsed();
        let this = self.clone();
        let id = request.id.clone();
        let worker = tokio::task::spawn_blocking(move || this.run_blocking(request.inputs, &wanted, batch_size));
        let outcome =
            worker.await.map_err(|e| ServerError::internal(format!("model '{}' run failed: {e}", self.model)));
        drop(permit);
        let (outputs, mut execution) = outcome??;
        execution.queue = queue;
        execution.total = arrived.elapsed();
        let response =
            InferResponse { model_name: self.model.clone(), model_version: self.version.to_string(), id, outputs };
        Ok((response, execution))
    }

    /// Checks names, datatypes and shapes against the configuration; returns the
    /// batch size (1 when the model does not batch).
    fn check(&self, request: &InferRequest) -> Result<u64> {
        let model = &self.model;
        for (i, input) in request.inputs.iter().enumerate() {
            if request.inputs[..i].iter().any(|o| o.name == input.name) {
                return Err(ServerError::invalid(format!("input '{}' is given more than once", input.name)));
            }
            if !self.inputs.iter().any(|p| p.name == input.name) {
                return Err(ServerError::invalid(format!(
                    "unexpected inference input '{}' for model '{model}'",
                    input.name
                )));
            }
        }
        let required: Vec<&TensorPlan> = self.inputs.iter().filter(|p| !p.optional).collect();
        let missing: Vec<&str> = required
            .iter()
            .filter(|p| !request.inputs.iter().any(|i| i.name == p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            let given: Vec<String> = request.inputs.iter().map(|i| format!("'{}'", i.name)).collect();
            let missing: Vec<String> = missing.iter().map(|n| format!("'{n}'")).collect();
            return Err(ServerError::invalid(format!(
                "expected {} inputs but got {} inputs for model '{model}'. Got input(s) [{}], but missing required \
                 input(s) [{}]. Please provide all required input(s).",
                required.len(),
                request.inputs.len(),
                given.join(", "),
                missing.join(", ")
            )));
        }
        let mut batch: Option<(usize, &str)> = None;
        for input in &request.inputs {
            let plan = self.inputs.iter().find(|p| p.name == input.name).expect("checked above");
            if input.wire != plan.wire {
                return Err(ServerError::invalid(format!(
                    "inference input '{}' data-type is '{}', but model '{model}' expects '{}'",
                    input.name, input.wire, plan.wire
                )));
            }
            let shape = if self.batching() {
                let Some((&n, rest)) = input.shape.split_first() else {
                    return Err(ServerError::invalid(format!(
                        "input '{}' has no batch dimension, but model '{model}' takes a batch (max_batch_size {})",
                        input.name, self.config.max_batch_size
                    )));
                };
                if n == 0 || n > self.config.max_batch_size as usize {
                    return Err(ServerError::invalid(format!(
                        "inference request batch-size must be <= {} for '{model}' (input '{}' has batch size {n})",
                        self.config.max_batch_size, input.name
                    )));
                }
                match batch {
                    Some((m, other)) if m != n => {
                        return Err(ServerError::invalid(format!(
                            "input '{}' has batch size {n} but input '{other}' has {m}; all inputs of a request \
                             share the batch size",
                            input.name
                        )))
                    }
                    _ => batch = Some((n, &input.name)),
                }
                rest
            } else {
                &input.shape[..]
            };
            if !shape_fits(&plan.dims, shape) {
                let expected = format_dims(&self.metadata_shape(plan));
                return Err(ServerError::invalid(format!(
                    "unexpected shape for input '{}' for model '{model}'. Expected {expected}, got {}",
                    input.name,
                    format_shape(&input.shape)
                )));
            }
        }
        Ok(batch.map_or(1, |(n, _)| n as u64))
    }

    fn outputs_wanted(&self, request: &InferRequest) -> Result<Vec<usize>> {
        match &request.outputs {
            None => Ok((0..self.outputs.len()).collect()),
            Some(names) => names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    if names[..i].contains(name) {
                        return Err(ServerError::invalid(format!("output '{name}' is requested more than once")));
                    }
                    self.outputs.iter().position(|p| p.name == *name).ok_or_else(|| {
                        ServerError::invalid(format!("unexpected inference output '{name}' for model '{}'", self.model))
                    })
                })
                .collect(),
        }
    }

    fn run_blocking(
        &self,
        inputs: Vec<InputTensor>,
        wanted: &[usize],
        batch_size: u64,
    ) -> Result<(Vec<OutputTensor>, Execution)> {
        let start = Instant::now();
        let mut feeds: Vec<(String, Tensor)> = Vec::with_capacity(inputs.len());
        for input in inputs {
            let plan = self.inputs.iter().find(|p| p.name == input.name).expect("checked before the run");
            let TensorData::Tensor(tensor) = input.data else {
                return Err(ServerError::invalid(format!(
                    "input '{}' holds BYTES, which model '{}' cannot take",
                    input.name, self.model
                )));
            };
            let tensor = match &plan.reshape {
                Some(reshape) => {
                    let mut dims = reshape.clone();
                    if self.batching() {
                        dims.insert(0, batch_size as i64);
                    }
                    let shape = solve_shape(&dims, tensor.len()).ok_or_else(|| {
                        ServerError::invalid(format!(
                            "input '{}' of shape {} cannot be reshaped to {} as model '{}' configures",
                            input.name,
                            format_shape(tensor.shape()),
                            format_dims(&dims),
                            self.model
                        ))
                    })?;
                    tensor.reshaped(&shape).map_err(|e| ServerError::internal(e.to_string()))?
                }
                None => tensor,
            };
            feeds.push((input.name, tensor));
        }
        let named: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let compute_input = start.elapsed();

        let infer_start = Instant::now();
        let results = self.session.run(&named).map_err(|e| match e {
            RuntimeError::Input { .. } | RuntimeError::UnknownInput { .. } | RuntimeError::MissingInput { .. } => {
                ServerError::invalid(format!("model '{}': {e}", self.model))
            }
            other => ServerError::internal(format!("model '{}' failed: {other}", self.model)),
        })?;
        let compute_infer = infer_start.elapsed();

        let output_start = Instant::now();
        let mut results: Vec<Option<(String, Tensor)>> = results.into_iter().map(Some).collect();
        let mut outputs = Vec::with_capacity(wanted.len());
        for &index in wanted {
            let plan = &self.outputs[index];
            let slot = results.iter_mut().find(|r| r.as_ref().is_some_and(|(n, _)| *n == plan.name));
            let Some((_, tensor)) = slot.and_then(Option::take) else {
                return Err(ServerError::internal(format!(
                    "model '{}' did not produce output '{}'",
                    self.model, plan.name
                )));
            };
            let tensor = match &plan.reshape {
                Some(_) => {
                    let mut dims = plan.dims.clone();
                    if self.batching() {
                        dims.insert(0, batch_size as i64);
                    }
                    let shape = solve_shape(&dims, tensor.len()).ok_or_else(|| {
                        ServerError::internal(format!(
                            "output '{}' of shape {} does not fit its configured dims {}",
                            plan.name,
                            format_shape(tensor.shape()),
                            format_dims(&dims)
                        ))
                    })?;
                    tensor.reshaped(&shape).map_err(|e| ServerError::internal(e.to_string()))?
                }
                None => tensor,
            };
            outputs.push(OutputTensor { name: plan.name.clone(), wire: WireType::from_dtype(tensor.dtype()), tensor });
        }
        let execution = Execution {
            compute_input,
            compute_infer,
            compute_output: output_start.elapsed(),
            batch_size,
            ..Default::default()
        };
        Ok((outputs, execution))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_solved_with_one_unknown() {
        assert_eq!(solve_shape(&[2, -1], 6), Some(vec![2, 3]));
        assert_eq!(solve_shape(&[2, 3], 6), Some(vec![2, 3]));
        assert_eq!(solve_shape(&[2, 3], 5), None);
        assert_eq!(solve_shape(&[4, -1], 6), None);
        assert_eq!(solve_shape(&[-1, -1], 6), None);
        assert_eq!(solve_shape(&[0, -1], 0), Some(vec![0, 0]));
        assert!(shape_fits(&[-1, 4], &[7, 4]));
        assert!(!shape_fits(&[-1, 4], &[7, 5]));
        assert!(!shape_fits(&[4], &[1, 4]));
    }
}
