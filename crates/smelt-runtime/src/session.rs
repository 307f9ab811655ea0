//! A loaded model: the optimised graph, its compiled plan, and the checks that turn
//! a caller's named tensors into the plan's ordered inputs.

use crate::backend::{Backend, MemoryReport, Plan};
use crate::cpu::CpuBackend;
use crate::gpu::GpuBackend;
use crate::{Result, RuntimeError};
use smelt_ir::{DType, Dim, Graph, Shape, Tensor, TensorView};
use std::path::Path;

/// Models with up to this many inputs bind them in an array on the stack, so that
/// [`Session::run_into`] allocates nothing; more inputs use a heap vector.
const INLINE_INPUTS: usize = 16;

/// Where a session runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// A GPU through wgpu: adapter N (`gpu:N`), or the most capable one (`gpu`).
    Gpu(Option<usize>),
}

impl std::str::FromStr for Device {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu(None)),
            other if other.starts_with("gpu:") => other[4..]
                .parse()
                .map(|n| Device::Gpu(Some(n)))
                .map_err(|_| RuntimeError::UnknownDevice(other.to_string())),
            other => Err(RuntimeError::UnknownDevice(other.to_string())),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub device: Device,
    /// CPU threads; `None` = one per core.
    pub threads: Option<usize>,
    /// Run the graph passes (constant folding, fusion, ...) before compiling.
    pub optimize: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { device: Device::Cpu, threads: None, optimize: true }
    }
}

/// A model input or output as callers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct IoInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Shape,
}

/// A compiled model. `Send + Sync`: one session serves concurrent runs.
pub struct Session {
    graph: Graph,
    plan: Box<dyn Plan>,
    backend: String,
    pass_report: Option<smelt_passes::PassReport>,
}

impl Session {
    pub fn load(path: &Path, options: &SessionOptions) -> Result<Session> {
        let model = smelt_onnx::load_model(path)?;
        Session::from_graph(model.graph, options)
    }

    /// Prepares a graph: shape inference, passes, compilation.
    pub fn from_graph(graph: Graph, options: &SessionOptions) -> Result<Session> {
        let backend: Box<dyn Backend> = match options.device {
            Device::Cpu => Box::new(CpuBackend::new(options.threads)?),
            Device::Gpu(ordinal) => Box::new(GpuBackend::new(ordinal)?),
        };
        Session::from_graph_on(graph, backend.as_ref(), options)
    }

    /// Prepares a graph for a backend the caller keeps, so that many models share
    /// one opened GPU (its device, buffer pool and compiled pipelines) instead of
    /// opening their own; `options.device` is not consulted.
    pub fn from_graph_on(graph: Graph, backend: &dyn Backend, options: &SessionOptions) -> Result<Session> {
        let passes = options.optimize.then(|| backend.optimize_options());
        let (graph, pass_report) = prepare_graph(graph, passes.as_ref())?;
        Session::compile(graph, pass_report, backend)
    }

    /// Loads a model and compiles it for `backend`, as [`from_graph_on`](Self::from_graph_on).
    pub fn load_on(path: &Path, backend: &dyn Backend, options: &SessionOptions) -> Result<Session> {
        let model = smelt_onnx::load_model(path)?;
        Session::from_graph_on(model.graph, backend, options)
    }

    fn compile(graph: Graph, pass_report: Option<smelt_passes::PassReport>, backend: &dyn Backend) -> Result<Session> {
        let plan = backend.compile(&graph)?;
        Ok(Session { graph, plan, backend: backend.name(), pass_report })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn backend(&self) -> &str {
        &self.backend
    }

    pub fn pass_report(&self) -> Option<&smelt_passes::PassReport> {
        self.pass_report.as_ref()
    }

    pub fn memory_report(&self) -> MemoryReport {
        self.plan.memory_report()
    }

    pub fn inputs(&self) -> Vec<IoInfo> {
        self.graph.inputs.iter().map(|&v| io_info(&self.graph, v)).collect()
    }

    pub fn outputs(&self) -> Vec<IoInfo> {
        self.graph.outputs.iter().map(|&v| io_info(&self.graph, v)).collect()
    }

    /// Runs the model on named inputs; returns outputs by name in the model's order.
    pub fn run(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<(String, Tensor)>> {
        let outputs = self.with_bound_inputs(inputs, |ordered| self.plan.run(ordered))?;
        Ok(self.graph.outputs.iter().map(|&o| self.graph.name(o).to_string()).zip(outputs).collect())
    }

    /// Runs the model on named inputs and writes the outputs into `outputs`, in the
    /// model's output order (names as [`Session::outputs`] lists them). A tensor
    /// already there with its output's dtype and shape is overwritten in place, any
    /// other is replaced, so a caller that keeps `outputs` between runs of the same
    /// shapes gets runs that allocate nothing (on the CPU backend).
    pub fn run_into(&self, inputs: &[(&str, &Tensor)], outputs: &mut Vec<Tensor>) -> Result<()> {
        self.with_bound_inputs(inputs, |ordered| self.plan.run_into(ordered, outputs))
    }

    /// Checks names, dtypes and shapes, orders the inputs as the graph wants them,
    /// and hands them to `f`. Allocates only to report an error (or for models with
    /// more than [`INLINE_INPUTS`] inputs).
    fn with_bound_inputs<R>(
        &self,
        inputs: &[(&str, &Tensor)],
        f: impl FnOnce(&[TensorView]) -> Result<R>,
    ) -> Result<R> {
        for (name, _) in inputs {
            if !self.graph.inputs.iter().any(|&v| self.graph.name(v) == *name) {
                let expected: Vec<&str> = self.graph.inputs.iter().map(|&v| self.graph.name(v)).collect();
                return Err(RuntimeError::UnknownInput { name: name.to_string(), expected: expected.join(", ") });
            }
        }
        let count = self.graph.inputs.len();
        let placeholder = TensorView { dtype: DType::U8, shape: &[], data: &[] };
        let mut inline = [placeholder; INLINE_INPUTS];
        let mut heap: Vec<TensorView> = Vec::new();
        if count > INLINE_INPUTS {
            heap = vec![placeholder; count];
        }
        let bound: &mut [TensorView] = if count <= INLINE_INPUTS { &mut inline[..count] } else { &mut heap };
        for (k, &v) in self.graph.inputs.iter().enumerate() {
            let tensor = self.checked_input(inputs, v, &bound[..k])?;
            bound[k] = tensor.view();
        }
        f(bound)
    }

    /// The tensor for graph input `v`: the caller's, else the model's default, after
    /// checking its dtype and shape. `earlier` holds the inputs bound before it, in
    /// graph order, so symbolic dims can be checked against them.
    fn checked_input<'a>(
        &'a self,
        inputs: &[(&str, &'a Tensor)],
        v: usize,
        earlier: &[TensorView],
    ) -> Result<&'a Tensor> {
        let name = self.graph.name(v);
        let fact = self.graph.fact(v);
        let given = inputs.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let tensor = match (given, self.graph.input_defaults.get(&v)) {
            (Some(t), _) => t,
            (None, Some(default)) => default.as_ref(),
            (None, None) => {
                return Err(RuntimeError::MissingInput {
                    name: name.to_string(),
                    dtype: fact.dtype,
                    shape: fact.shape.to_string(),
                })
            }
        };
        if tensor.dtype() != fact.dtype {
            return Err(RuntimeError::Input {
                name: name.to_string(),
                message: format!("got {} data, the model wants {}", tensor.dtype(), fact.dtype),
            });
        }
        if let Some(dims) = fact.shape.dims() {
            let shape_err = || RuntimeError::Input {
                name: name.to_string(),
                message: format!("got shape {:?}, the model wants {}", tensor.shape(), fact.shape),
            };
            if dims.len() != tensor.rank() {
                return Err(shape_err());
            }
            for (i, (d, &n)) in dims.iter().zip(tensor.shape()).enumerate() {
                match d {
                    Dim::Fixed(m) if *m != n => return Err(shape_err()),
                    Dim::Sym(s) => {
                        // Symbolic dims must agree across inputs: `batch` is one
                        // number per run. The first use of the symbol (earlier
                        // inputs, then earlier dims of this one) decides it.
                        let in_this = || {
                            dims[..i]
                                .iter()
                                .zip(tensor.shape())
                                .find(|(e, _)| matches!(e, Dim::Sym(x) if x == s))
                                .map(|(_, &m)| (name, m))
                        };
                        if let Some((other, m)) = self.symbol_in(earlier, s).or_else(in_this) {
                            if m != n {
                                return Err(RuntimeError::Input {
                                        name: name.to_string(),
                                        message: format!(
                                            "has {s} = {n}, but input '{other}' has {s} = {m}; {s} must be the same for all inputs"
                                        ),
                                    });
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(tensor)
    }

    /// The first of the inputs bound so far (graph order) that has symbolic dim
    /// `symbol`: its name and its size there.
    fn symbol_in(&self, earlier: &[TensorView], symbol: &str) -> Option<(&str, usize)> {
        self.graph.inputs.iter().zip(earlier).find_map(|(&v, view)| {
            let dims = self.graph.fact(v).shape.dims()?;
            dims.iter()
                .zip(view.shape)
                .find(|(d, _)| matches!(d, Dim::Sym(x) if x == symbol))
                .map(|(_, &n)| (self.graph.name(v), n))
        })
    }
}

fn io_info(graph: &Graph, v: usize) -> IoInfo {
    let fact = graph.fact(v);
    IoInfo { name: graph.name(v).to_string(), dtype: fact.dtype, shape: fact.shape.clone() }
}

/// Shape inference, then the optimisation passes `passes` selects (none for
/// `None`; a backend's choice is [`Backend::optimize_options`]), then inference
/// again so every fact reflects the rewritten graph.
pub fn prepare_graph(
    mut graph: Graph,
    passes: Option<&smelt_passes::OptimizeOptions>,
) -> Result<(Graph, Option<smelt_passes::PassReport>)> {
    graph.infer_facts()?;
    let mut report = None;
    if let Some(passes) = passes {
        let r = smelt_passes::optimize(&mut graph, &CpuConstEval, passes)
            .map_err(|e| RuntimeError::Passes(e.to_string()))?;
        graph.infer_facts()?;
        report = Some(r);
    }
    Ok((graph, report))
}

/// Constant folding evaluates ops with the CPU reference kernels.
struct CpuConstEval;

impl smelt_passes::ConstEval for CpuConstEval {
    fn eval(
        &self,
        op: &smelt_ir::Op,
        inputs: &[Option<&Tensor>],
        n_outputs: usize,
    ) -> std::result::Result<Vec<Tensor>, String> {
        smelt_cpu::eval_alloc(op, inputs, n_outputs).map_err(|e| e.to_string())
    }
}
