//! One inference, independent of the protocol it arrived by: the request's tensors
//! are checked against the model's configuration, queued by the version's
//! scheduler (which may batch it with others), run on a free instance, and the
//! outputs it asked for are returned.

use crate::datatype::WireType;
use crate::error::{Result, ServerError};
use crate::proto::inference::ModelConfig;
use crate::scheduler::policy::SchedulerConfig;
use crate::scheduler::tensors::{concat_batch, split_batch};
use crate::scheduler::{Admission, BatchKey, Executor, Failure, Scheduler};
use crate::stats::{ExecutionTimes, FailureReason, RequestTimes, VersionStats};
use smelt_ir::Tensor;
use smelt_runtime::gpu::GpuContext;
use smelt_runtime::{RuntimeError, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// How long the request may wait in the queue (`timeout` parameter).
    pub timeout: Option<Duration>,
    /// The request's priority level (`priority` parameter; 0: the model's default).
    pub priority: u64,
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
    runner: Arc<ModelRunner>,
    scheduler: Scheduler<ModelRunner>,
    pub stats: Arc<VersionStats>,
    /// How long loading (and warming up) took, for `nv_model_load_duration_secs`.
    pub load_duration: Duration,
    /// The adapter a KIND_GPU version runs on (the `gpu_uuid` label of its metrics).
    pub gpu_uuid: Option<String>,
}

/// Runs executions of the model: the part of a version the scheduler drives.
struct ModelRunner {
    model: String,
    session: Session,
    batching: bool,
    inputs: Vec<TensorPlan>,
    outputs: Vec<TensorPlan>,
    stats: Arc<VersionStats>,
    /// The GPU context of a KIND_GPU version (to tell a lost device apart).
    gpu: Option<Arc<GpuContext>>,
}

/// A checked request in the form the model takes: its tensors (reshaped, with
/// the batch dimension first when batching) and the outputs it wants.
struct Job {
    feeds: Vec<(String, Tensor)>,
    /// Indices into the configured outputs, in the order asked for.
    wanted: Vec<usize>,
    batch_size: usize,
}

/// A job's outputs and the compute stages of the execution that served it.
struct JobOutput {
    outputs: Vec<OutputTensor>,
    times: ExecutionTimes,
}

/// Counts a request whose caller stopped waiting (the client went away) as
/// CANCELED; disarmed once the request is answered.
struct CancelWatch {
    stats: Arc<VersionStats>,
    arrived: Instant,
    armed: bool,
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        if self.armed {
            self.stats.record_failure(FailureReason::Canceled, self.arrived.elapsed());
        }
    }
}

/// A shape from `dims` (-1: any size) for `elements` elements; at most one -1.
pub fn solve_shape(dims: &[i64], elements: usize) -> Option<Vec<usize>> {
    let known: usize = dims.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
    let unknown = dims.iter().filter(|&&d| d < 0).count();
    match unknown {
        0 if known == elements => Some(dims.iter().map(|&d| d as usize).collect()),
        1 if known > 0 && elements.is_multiple_of(known) => {
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
    /// Wraps a loaded session; `config` is complete and checked against it. The
    /// error names the scheduling field at fault.
    pub fn new(
        model: &str,
        version: i64,
        config: Arc<ModelConfig>,
        session: Session,
        gpu: Option<Arc<GpuContext>>,
    ) -> std::result::Result<ServedVersion, String> {
        let scheduling = SchedulerConfig::from_model_config(&config)?;
        let plan = |name: &str, data_type: i32, dims: &[i64], reshape: Option<&Vec<i64>>, optional: bool| {
            Some(TensorPlan {
                name: name.to_string(),
                wire: WireType::from_config(data_type)?,
                dims: dims.to_vec(),
                reshape: reshape.cloned(),
                optional,
            })
        };
        let inputs = (config.input.iter())
            .filter_map(|c| plan(&c.name, c.data_type, &c.dims, c.reshape.as_ref().map(|r| &r.shape), c.optional))
            .collect();
        let outputs = (config.output.iter())
            .filter_map(|c| plan(&c.name, c.data_type, &c.dims, c.reshape.as_ref().map(|r| &r.shape), false))
            .collect();
        let stats = Arc::new(VersionStats::default());
        let runner = Arc::new(ModelRunner {
            model: model.to_string(),
            session,
            batching: config.max_batch_size > 0,
            inputs,
            outputs,
            stats: stats.clone(),
            gpu: gpu.clone(),
        });
        Ok(ServedVersion {
            model: model.to_string(),
            version,
            scheduler: Scheduler::new(model, scheduling, runner.clone()),
            runner,
            config,
            stats,
            load_duration: Duration::ZERO,
            gpu_uuid: gpu.as_deref().map(crate::gpu::gpu_uuid),
        })
    }

    fn batching(&self) -> bool {
        self.config.max_batch_size > 0
    }

    /// How the scheduler runs this version.
    pub fn scheduling(&self) -> &SchedulerConfig {
        self.scheduler.config()
    }

    /// Requests waiting in the queue for an execution.
    pub fn pending_requests(&self) -> usize {
        self.scheduler.pending()
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
        self.runner.inputs.iter().map(|p| (p.name.clone(), p.wire, self.metadata_shape(p))).collect()
    }

    pub fn output_metadata(&self) -> Vec<(String, WireType, Vec<i64>)> {
        self.runner.outputs.iter().map(|p| (p.name.clone(), p.wire, self.metadata_shape(p))).collect()
    }

    /// The configured datatype and dims of an input, for decoders that need them
    /// (the raw binary request, whose only input has no JSON description).
    pub fn only_input(&self) -> Option<(String, WireType, Vec<i64>)> {
        match self.runner.inputs.as_slice() {
            [only] => Some((only.name.clone(), only.wire, self.metadata_shape(only))),
            _ => None,
        }
    }

    /// Runs one request. Errors carry Triton's `[request id: ...]` prefix. If the
    /// returned future is dropped (the client went away) while the request waits
    /// in the queue, the request is skipped, never executed.
    pub async fn infer(self: Arc<Self>, request: InferRequest) -> Result<InferResponse> {
        let arrived = Instant::now();
        let id_text = request.id.clone().unwrap_or_else(|| "<id_unknown>".to_string());
        let mut watch = CancelWatch { stats: self.stats.clone(), arrived, armed: true };
        let result = self.infer_inner(request, arrived).await;
        watch.armed = false;
        match result {
            Ok((response, times)) => {
                self.stats.record_success(&times);
                Ok(response)
            }
            Err(failure) => {
                self.stats.record_failure(failure.reason, arrived.elapsed());
                let e = failure.error;
                Err(ServerError::new(e.kind, format!("[request id: {id_text}] {}", e.message)))
            }
        }
    }

    async fn infer_inner(
        &self,
        request: InferRequest,
        arrived: Instant,
    ) -> std::result::Result<(InferResponse, RequestTimes), Failure> {
        let invalid = |e: ServerError| Failure::new(e, FailureReason::Other);
        let batch_size = self.check(&request).map_err(invalid)?;
        let wanted = self.outputs_wanted(&request).map_err(invalid)?;
        let key = self.batch_key(&request.inputs);
        let feeds = self.model_inputs(request.inputs, batch_size).map_err(invalid)?;
        let admission = Admission { batch_size, key, priority: request.priority, timeout: request.timeout };
        let executed = self.scheduler.submit(Job { feeds, wanted, batch_size }, admission).await?;
        let JobOutput { outputs, times } = executed.output;
        let times = RequestTimes {
            queue: executed.queue,
            compute_input: times.compute_input,
            compute_infer: times.compute_infer,
            compute_output: times.compute_output,
            total: arrived.elapsed(),
        };
        let response = InferResponse {
            model_name: self.model.clone(),
            model_version: self.version.to_string(),
            id: request.id,
            outputs,
        };
        Ok((response, times))
    }

    /// Runs `inputs` once outside the queue and the statistics (model warmup).
    pub(crate) fn run_unscheduled(&self, inputs: Vec<InputTensor>) -> Result<()> {
        let request = InferRequest { inputs, ..Default::default() };
        let batch_size = self.check(&request)?;
        let wanted = self.outputs_wanted(&request)?;
        let feeds = self.model_inputs(request.inputs, batch_size)?;
        self.runner.run_batch(vec![Job { feeds, wanted, batch_size }], false).map(drop).map_err(|f| f.error)
    }

    /// What must agree for requests to share an execution: the datatype and the
    /// shape past the batch dimension of every input given.
    fn batch_key(&self, inputs: &[InputTensor]) -> BatchKey {
        let skip = usize::from(self.batching());
        BatchKey::new(
            inputs
                .iter()
                .map(|i| (i.name.clone(), i.wire.to_string(), i.shape.iter().skip(skip).copied().collect()))
                .collect(),
        )
    }

    /// The request's tensors as the model takes them: reshaped where the
    /// configuration says so.
    fn model_inputs(&self, inputs: Vec<InputTensor>, batch_size: usize) -> Result<Vec<(String, Tensor)>> {
        let mut feeds = Vec::with_capacity(inputs.len());
        for input in inputs {
            let plan = self.runner.inputs.iter().find(|p| p.name == input.name).expect("checked before");
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
        Ok(feeds)
    }

    /// Checks names, datatypes and shapes against the configuration; returns the
    /// batch size (1 when the model does not batch).
    fn check(&self, request: &InferRequest) -> Result<usize> {
        let model = &self.model;
        for (i, input) in request.inputs.iter().enumerate() {
            if request.inputs[..i].iter().any(|o| o.name == input.name) {
                return Err(ServerError::invalid(format!("input '{}' is given more than once", input.name)));
            }
            if !self.runner.inputs.iter().any(|p| p.name == input.name) {
                return Err(ServerError::invalid(format!(
                    "unexpected inference input '{}' for model '{model}'",
                    input.name
                )));
            }
        }
        let required: Vec<&TensorPlan> = self.runner.inputs.iter().filter(|p| !p.optional).collect();
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
            let plan = self.runner.inputs.iter().find(|p| p.name == input.name).expect("checked above");
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
        Ok(batch.map_or(1, |(n, _)| n))
    }

    fn outputs_wanted(&self, request: &InferRequest) -> Result<Vec<usize>> {
        match &request.outputs {
            None => Ok((0..self.runner.outputs.len()).collect()),
            Some(names) => names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    if names[..i].contains(name) {
                        return Err(ServerError::invalid(format!("output '{name}' is requested more than once")));
                    }
                    self.runner.outputs.iter().position(|p| p.name == *name).ok_or_else(|| {
                        ServerError::invalid(format!("unexpected inference output '{name}' for model '{}'", self.model))
                    })
                })
                .collect(),
        }
    }
}

impl Executor for ModelRunner {
    type Job = Job;
    type Output = JobOutput;

    fn execute(&self, jobs: Vec<Job>) -> Vec<std::result::Result<JobOutput, Failure>> {
        let count = jobs.len();
        match self.run_batch(jobs, true) {
            Ok(outputs) => outputs.into_iter().map(Ok).collect(),
            Err(failure) => (0..count).map(|_| Err(failure.clone())).collect(),
        }
    }
}

impl ModelRunner {
    /// Runs `jobs` as one execution: their inputs stacked along the batch
    /// dimension, the outputs cut back into each job's rows. Every job has the
    /// same inputs with the same shapes past the batch dimension (the scheduler
    /// batches only such requests).
    fn run_batch(&self, jobs: Vec<Job>, record: bool) -> std::result::Result<Vec<JobOutput>, Failure> {
        let backend = |e: String| {
            Failure::new(ServerError::internal(format!("model '{}': {e}", self.model)), FailureReason::Backend)
        };
        let start = Instant::now();
        let rows: Vec<usize> = jobs.iter().map(|j| j.batch_size).collect();
        let mut columns: Vec<(String, Vec<Tensor>)> = Vec::new();
        let mut wanted = Vec::with_capacity(jobs.len());
        for job in jobs {
            for (name, tensor) in job.feeds {
                match columns.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, parts)) => parts.push(tensor),
                    None => columns.push((name, vec![tensor])),
                }
            }
            wanted.push(job.wanted);
        }
        if columns.iter().any(|(_, parts)| parts.len() != rows.len()) {
            return Err(backend("the requests of a batch give different inputs".to_string()));
        }
        let mut feeds = Vec::with_capacity(columns.len());
        for (name, parts) in columns {
            let tensor = concat_batch(&name, parts).map_err(backend)?;
            feeds.push((name, tensor));
        }
        let named: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let compute_input = start.elapsed();

        let infer_start = Instant::now();
        let results = self.session.run(&named).map_err(|e| match e {
            RuntimeError::Input { .. } | RuntimeError::UnknownInput { .. } | RuntimeError::MissingInput { .. } => {
                Failure::new(ServerError::invalid(format!("model '{}': {e}", self.model)), FailureReason::Other)
            }
            other => match &self.gpu {
                Some(ctx) if ctx.is_lost() => Failure::new(
                    ServerError::internal(format!(
                        "model '{}' failed: GPU device lost on gpu:{} '{}': {other}. Reload the model (unload and \
                         load it, with --model-control-mode=explicit, or restart the server) to open a fresh device",
                        self.model,
                        ctx.summary.ordinal,
                        ctx.name()
                    )),
                    FailureReason::Backend,
                ),
                _ => Failure::new(
                    ServerError::internal(format!("model '{}' failed: {other}", self.model)),
                    FailureReason::Backend,
                ),
            },
        })?;
        let compute_infer = infer_start.elapsed();

        let output_start = Instant::now();
        // Each output any job asked for, cut into the jobs' rows.
        let mut pieces: Vec<Option<Vec<Option<Tensor>>>> = vec![None; self.outputs.len()];
        let mut results: Vec<Option<(String, Tensor)>> = results.into_iter().map(Some).collect();
        for (index, plan) in self.outputs.iter().enumerate() {
            if !wanted.iter().any(|w| w.contains(&index)) {
                continue;
            }
            let slot = results.iter_mut().find(|r| r.as_ref().is_some_and(|(n, _)| *n == plan.name));
            let Some((_, tensor)) = slot.and_then(Option::take) else {
                return Err(backend(format!("did not produce output '{}'", plan.name)));
            };
            let parts =
                if self.batching { split_batch(&plan.name, tensor, &rows).map_err(backend)? } else { vec![tensor] };
            pieces[index] = Some(parts.into_iter().map(Some).collect());
        }
        let mut answers = Vec::with_capacity(rows.len());
        for (job, (want, &batch_size)) in wanted.iter().zip(&rows).enumerate() {
            let mut outputs = Vec::with_capacity(want.len());
            for &index in want {
                let plan = &self.outputs[index];
                let tensor = pieces[index].as_mut().and_then(|p| p[job].take()).expect("cut above for every job");
                let tensor = match &plan.reshape {
                    Some(_) => {
                        let mut dims = plan.dims.clone();
                        if self.batching {
                            dims.insert(0, batch_size as i64);
                        }
                        let shape = solve_shape(&dims, tensor.len()).ok_or_else(|| {
                            backend(format!(
                                "output '{}' of shape {} does not fit its configured dims {}",
                                plan.name,
                                format_shape(tensor.shape()),
                                format_dims(&dims)
                            ))
                        })?;
                        tensor.reshaped(&shape).map_err(|e| backend(e.to_string()))?
                    }
                    None => tensor,
                };
                outputs.push(OutputTensor {
                    name: plan.name.clone(),
                    wire: WireType::from_dtype(tensor.dtype()),
                    tensor,
                });
            }
            answers.push(outputs);
        }
        let times = ExecutionTimes {
            batch_size: rows.iter().sum::<usize>() as u64,
            compute_input,
            compute_infer,
            compute_output: output_start.elapsed(),
        };
        if record {
            self.stats.record_execution(&times);
        }
        Ok(answers.into_iter().map(|outputs| JobOutput { outputs, times }).collect())
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
