//! A loaded model: the optimised graph, its compiled plan, and the checks that turn
//! a caller's named tensors into the plan's ordered inputs.

use crate::backend::{Backend, MemoryReport, Plan};
use crate::cpu::CpuBackend;
use crate::gpu::GpuBackend;
use crate::{Result, RuntimeError};
use smelt_ir::{DType, Dim, Graph, Shape, Tensor, TensorView};
use std::collections::HashMap;
use std::path::Path;

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
        let (graph, pass_report) = prepare_graph(graph, options.optimize)?;
        let backend: Box<dyn Backend> = match options.device {
            Device::Cpu => Box::new(CpuBackend::new(options.threads)?),
            Device::Gpu(ordinal) => Box::new(GpuBackend::new(ordinal)?),
        };
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
        let ordered = self.bind_inputs(inputs)?;
        let outputs = self.plan.run(&ordered)?;
        Ok(self.graph.outputs.iter().map(|&o| self.graph.name(o).to_string()).zip(outputs).collect())
    }

    /// Checks names, dtypes and shapes, and orders the inputs as the graph wants them.
    fn bind_inputs<'a>(&'a self, inputs: &[(&str, &'a Tensor)]) -> Result<Vec<TensorView<'a>>> {
        let names: Vec<&str> = self.graph.inputs.iter().map(|&v| self.graph.name(v)).collect();
        for (name, _) in inputs {
            if !names.contains(name) {
                return Err(RuntimeError::UnknownInput { name: name.to_string(), expected: names.join(", ") });
            }
        }
        let mut bound = Vec::with_capacity(names.len());
        // Symbolic dims must agree across inputs: `batch` is one number per run.
        let mut symbols: HashMap<&str, (usize, &str)> = HashMap::new();
        for &v in &self.graph.inputs {
            let name = self.graph.name(v);
            let fact = &self.graph.fact(v);
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
                for (d, &n) in dims.iter().zip(tensor.shape()) {
                    match d {
                        Dim::Fixed(m) if *m != n => return Err(shape_err()),
                        Dim::Sym(s) => match symbols.get(s.as_str()) {
                            Some(&(m, other)) if m != n => {
                                return Err(RuntimeError::Input {
                                    name: name.to_string(),
                                    message: format!(
                                        "has {s} = {n}, but input '{other}' has {s} = {m}; {s} must be the same for all inputs"
                                    ),
                                })
                            }
                            _ => {
                                symbols.insert(s.as_str(), (n, name));
                            }
                        },
                        _ => {}
                    }
                }
            }
            bound.push(tensor.view());
        }
        Ok(bound)
    }
}

fn io_info(graph: &Graph, v: usize) -> IoInfo {
    let fact = graph.fact(v);
    IoInfo { name: graph.name(v).to_string(), dtype: fact.dtype, shape: fact.shape.clone() }
}

/// Shape inference, then (optionally) the optimisation passes, then inference again
/// so every fact reflects the rewritten graph.
pub fn prepare_graph(mut graph: Graph, optimize: bool) -> Result<(Graph, Option<smelt_passes::PassReport>)> {
    graph.infer_facts()?;
    let mut report = None;
    if optimize {
        let r = smelt_passes::optimize(&mut graph, &CpuConstEval, &smelt_passes::OptimizeOptions::default())
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
