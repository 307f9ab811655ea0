//! The GPU backend: places each node (GPU kernel, host shape arithmetic, alias, or
//! CPU fallback), uploads weights once, and per distinct set of input shapes plans
//! one arena from tensor lifetimes and records every kernel once. A run uploads the
//! inputs, replays the recorded dispatches in one submission (split only where a
//! node runs on the CPU), and reads the outputs back once.

mod placement;
mod transfer;

use crate::backend::{Backend, MemoryReport, Plan};
use crate::{Result, RuntimeError};
use placement::{alias_root, data_dependent, fold_constants, host_read_inputs, is_alias, Placement};
use smelt_gpu::wgpu;
use smelt_gpu::{GpuError, GpuTensor, InputInfo, KernelRequest, NodeIo, Program, Recorder};
use smelt_ir::{infer, Fact, Graph, Shape, Tensor, TensorView, ValueId};
use smelt_passes::memory::{plan_memory, BufferLifetime};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use transfer::StagingRing;

pub use placement::Placement as NodePlacement;
pub use smelt_gpu::{list_adapters, AdapterSummary, GpuConfig, GpuContext, PoolStats};

/// Input-shape sets whose recorded programs and arenas are kept per plan. Each
/// holds device memory, so fewer than the CPU keeps.
const MAX_CACHED_LAYOUTS: usize = 16;

impl From<GpuError> for RuntimeError {
    fn from(e: GpuError) -> Self {
        RuntimeError::Other(e.to_string())
    }
}

/// GPU contexts opened by this process, for [`device_memory`].
static OPEN_CONTEXTS: Mutex<Vec<std::sync::Weak<GpuContext>>> = Mutex::new(Vec::new());

/// Device memory held by Smelt on each open GPU: for `smelt bench` and the
/// server's metrics.
#[derive(Clone, Debug)]
pub struct DeviceMemory {
    /// `gpu:N name`.
    pub device: String,
    /// Weights plus every pool buffer (in use or idle).
    pub bytes_in_use: u64,
    pub weight_bytes: u64,
    pub pool: PoolStats,
}

/// Memory of every GPU context still open in this process.
pub fn device_memory() -> Vec<DeviceMemory> {
    let open = OPEN_CONTEXTS.lock().map(|o| o.iter().filter_map(|c| c.upgrade()).collect::<Vec<_>>());
    open.unwrap_or_default()
        .iter()
        .map(|c| DeviceMemory {
            device: format!("gpu:{} {}", c.summary.ordinal, c.name()),
            bytes_in_use: c.memory_in_use(),
            weight_bytes: c.weight_bytes(),
            pool: c.pool_stats(),
        })
        .collect()
}

/// Runs graphs on one GPU through wgpu.
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
}

impl GpuBackend {
    /// Opens adapter `ordinal` (`gpu:N`; the best one when `None`) with settings
    /// from the environment.
    pub fn new(ordinal: Option<usize>) -> Result<GpuBackend> {
        Self::with_config(ordinal, GpuConfig::from_env()?)
    }

    pub fn with_config(ordinal: Option<usize>, config: GpuConfig) -> Result<GpuBackend> {
        Ok(Self::on_context(GpuContext::new(ordinal, config)?))
    }

    /// A backend on a context opened elsewhere (the server shares one context per
    /// adapter among its models, so they share one buffer pool).
    pub fn on_context(ctx: Arc<GpuContext>) -> GpuBackend {
        if let Ok(mut open) = OPEN_CONTEXTS.lock() {
            open.retain(|c| c.strong_count() > 0);
            if !open.iter().any(|c| std::ptr::eq(c.as_ptr(), Arc::as_ptr(&ctx))) {
                open.push(Arc::downgrade(&ctx));
            }
        }
        GpuBackend { ctx }
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Where each node of `graph` would run, with the transfers that implies, one
    /// line per node (for `smelt inspect --device gpu`).
    pub fn placement_report(&self, graph: &Graph) -> Result<Vec<String>> {
        let compiled = Compiled::new(&self.ctx, graph)?;
        Ok(compiled.report(graph))
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        format!("gpu:{} ({}, {})", self.ctx.summary.ordinal, self.ctx.name(), self.ctx.summary.backend)
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Plan>> {
        let compiled = Compiled::new(&self.ctx, graph)?;
        Ok(Box::new(GpuPlan {
            ctx: self.ctx.clone(),
            graph: graph.clone(),
            compiled,
            layouts: RwLock::new(HashMap::new()),
            layout_count: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            unplanned: AtomicUsize::new(0),
        }))
    }
}

/// Placement, folded constants and uploaded weights of one graph.
struct Compiled {
    placements: Vec<Placement>,
    /// Values known at compile time.
    consts: Vec<Option<Arc<Tensor>>>,
    /// Device copies of constants that some kernel reads on the device.
    weights: HashMap<ValueId, wgpu::Buffer>,
    weight_bytes: usize,
    /// For aliases: the value whose bytes they share (themselves otherwise).
    roots: Vec<ValueId>,
    /// Positions (in `graph.inputs`) of inputs whose values decide shapes: read
    /// on the host at each run and part of the layout key.
    host_inputs: Vec<usize>,
}

impl Compiled {
    fn new(ctx: &GpuContext, graph: &Graph) -> Result<Compiled> {
        let consts = fold_constants(graph)?;
        let host_read = host_read_inputs(graph);
        let data_dep = data_dependent(graph, &host_read);
        let host_inputs: Vec<usize> =
            graph.inputs.iter().enumerate().filter(|(_, v)| host_read.contains(v)).map(|(k, _)| k).collect();
        // Values whose contents decide shapes must be known on the host.
        for node in &graph.nodes {
            for &k in node.op.shape_inputs() {
                if let Some(Some(v)) = node.inputs.get(k) {
                    if data_dep[*v] {
                        return Err(RuntimeError::Node {
                            node: node.name.clone(),
                            op: node.op.name(),
                            message: format!(
                                "its shape depends on the values of the model's inputs ('{}'), which the GPU backend does not support; run this model on the CPU",
                                graph.name(*v)
                            ),
                        });
                    }
                }
            }
        }
        let mut roots: Vec<ValueId> = (0..graph.values.len()).collect();
        let mut placements = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let placement = if node.outputs.iter().all(|&o| consts[o].is_some()) {
                Placement::Folded
            } else if !node.outputs.iter().any(|&o| data_dep[o]) {
                Placement::Host
            } else if is_alias(&node.op, node.outputs.len()) && node.inputs.first().copied().flatten().is_some() {
                let input = node.inputs[0].expect("checked");
                if data_dep[input] {
                    roots[node.outputs[0]] = input;
                    Placement::Alias
                } else {
                    Placement::Cpu { forced: false }
                }
            } else if ctx.config.cpu_ops.iter().any(|op| op == node.op.name()) {
                Placement::Cpu { forced: true }
            } else {
                let request = KernelRequest {
                    op: &node.op,
                    inputs: node
                        .inputs
                        .iter()
                        .map(|v| {
                            v.map(|v| InputInfo {
                                dtype: graph.fact(v).dtype,
                                shape: graph.fact(v).shape.clone(),
                                constant: consts[v].clone(),
                            })
                        })
                        .collect(),
                    outputs: node.outputs.iter().map(|&o| graph.fact(o).dtype).collect(),
                    ctx,
                };
                match smelt_gpu::ops::build_kernel(&request) {
                    Some(kernel) => Placement::Gpu(kernel.map_err(|e| RuntimeError::Node {
                        node: node.name.clone(),
                        op: node.op.name(),
                        message: e.to_string(),
                    })?),
                    None => Placement::Cpu { forced: false },
                }
            };
            placements.push(placement);
        }
        // Weights: constants some kernel reads on the device, uploaded once.
        let mut weights = HashMap::new();
        let mut weight_bytes = 0;
        for (node, placement) in graph.nodes.iter().zip(&placements) {
            let Placement::Gpu(kernel) = placement else { continue };
            for (i, v) in node.inputs.iter().enumerate() {
                let Some(v) = *v else { continue };
                if !kernel.reads_on_device(i) || weights.contains_key(&v) {
                    continue;
                }
                if let Some(t) = &consts[v] {
                    let buffer = ctx.upload(graph.name(v), t.bytes())?;
                    weight_bytes += buffer.size() as usize;
                    weights.insert(v, buffer);
                }
            }
        }
        Ok(Compiled { placements, consts, weights, weight_bytes, roots, host_inputs })
    }

    fn report(&self, graph: &Graph) -> Vec<String> {
        let mut lines = Vec::new();
        let on_device = |v: ValueId| -> bool {
            graph.inputs.contains(&v)
                || graph.nodes.iter().zip(&self.placements).any(|(n, p)| {
                    n.outputs.contains(&v) && matches!(p, Placement::Gpu(_) | Placement::Alias | Placement::Cpu { .. })
                })
        };
        for (node, placement) in graph.nodes.iter().zip(&self.placements) {
            let mut line = format!("  {:<40} {:<18} {}", node.name, node.op.name(), placement.describe());
            match placement {
                Placement::Cpu { .. } => {
                    let down: Vec<&str> =
                        node.inputs.iter().flatten().filter(|&&v| on_device(v)).map(|&v| graph.name(v)).collect();
                    if !down.is_empty() {
                        line.push_str(&format!("\n      transfer gpu->cpu: {}", down.join(", ")));
                    }
                    let up: Vec<&str> = node.outputs.iter().map(|&v| graph.name(v)).collect();
                    line.push_str(&format!("\n      transfer cpu->gpu: {}", up.join(", ")));
                }
                Placement::Gpu(kernel) => {
                    let host: Vec<&str> = node
                        .inputs
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (i, v)))
                        .filter(|&(i, v)| kernel.reads_on_device(i) && self.consts[v].is_none() && !on_device(v))
                        .map(|(_, v)| graph.name(v))
                        .collect();
                    if !host.is_empty() {
                        line.push_str(&format!(
                            "\n      transfer host->gpu once per input shapes: {}",
                            host.join(", ")
                        ));
                    }
                }
                _ => {}
            }
            lines.push(line);
        }
        lines
    }
}

/// Where a value's bytes are during runs of one layout.
#[derive(Clone)]
enum Loc {
    /// Only on the host (constants and shape arithmetic nobody reads on the device).
    HostOnly,
    Device {
        buffer: wgpu::Buffer,
        offset: u64,
    },
}

enum Step {
    Gpu(Program),
    Cpu(usize),
}

/// Everything one set of input shapes needs: shapes, host values, device places,
/// the arena, and the recorded steps.
struct Layout {
    shapes: Vec<Vec<usize>>,
    host: Vec<Option<Arc<Tensor>>>,
    locs: Vec<Loc>,
    steps: Vec<Step>,
    arena_bytes: usize,
    unplanned_bytes: usize,
    /// Pool buffers (arena, inputs, host uploads), given back when the layout goes.
    pooled: Vec<smelt_gpu::pool::PooledBuffer<wgpu::Buffer>>,
    io: Io,
    /// (index in `steps`, offset in the status read-back) of each program's
    /// status words.
    status_ranges: Vec<(usize, u64)>,
    /// Some node runs on the CPU: a run submits in several pieces and reads values
    /// back mid-graph, so runs of the layout take turns.
    has_cpu_steps: bool,
    /// Held by runs that must not interleave their submissions with another run of
    /// this layout (see [`Io`]).
    busy: Mutex<()>,
    ctx: Arc<GpuContext>,
}

/// How a layout's runs move inputs in and outputs out.
enum Io {
    /// Unified memory: inputs and outputs have their own buffers the host maps;
    /// status words come back through a small read-back buffer. Runs take turns
    /// (the mapped buffers are the layout's).
    Mapped {
        /// Distinct buffers holding graph outputs.
        outputs: Vec<wgpu::Buffer>,
        /// Sizes of every mapped buffer the layout made (for the memory count).
        owned_bytes: Vec<u64>,
        status: wgpu::Buffer,
    },
    /// Staging copies through a ring of pairs: a run holds no lock while its
    /// work is in flight; the queue orders runs on the shared arena, since each
    /// submits its input copies, kernels and output copies in one command buffer.
    Staging {
        ring: StagingRing,
        /// Offset of each graph input in the upload buffer.
        input_offsets: Vec<u64>,
        /// (offset, bytes) of each graph output in the download buffer.
        output_ranges: Vec<(u64, u64)>,
    },
}

impl Drop for Layout {
    fn drop(&mut self) {
        for b in self.pooled.drain(..) {
            self.ctx.release(b);
        }
        if let Io::Mapped { owned_bytes, .. } = &self.io {
            for &bytes in owned_bytes {
                self.ctx.forget_mapped(bytes);
            }
        }
    }
}

/// What selects a layout: the input shapes, and the values of the inputs that
/// decide shapes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct LayoutKey {
    shapes: Vec<Vec<usize>>,
    values: Vec<Vec<u8>>,
}

struct GpuPlan {
    ctx: Arc<GpuContext>,
    graph: Graph,
    compiled: Compiled,
    layouts: RwLock<HashMap<LayoutKey, Arc<Layout>>>,
    layout_count: AtomicUsize,
    peak: AtomicUsize,
    unplanned: AtomicUsize,
}

/// The threads that ops the GPU cannot run split their loops across on the
/// host: one per core, shared by every GPU plan, started on first use (none if
/// they cannot start: the ops then run on the calling thread alone).
fn host_team() -> Option<&'static smelt_cpu::team::Team> {
    static TEAM: std::sync::OnceLock<Option<smelt_cpu::team::Team>> = std::sync::OnceLock::new();
    TEAM.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        smelt_cpu::team::Team::new(threads, "smelt-host").ok()
    })
    .as_ref()
}

fn node_err(node: &smelt_ir::Node, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Node { node: node.name.clone(), op: node.op.name(), message: message.into() }
}

fn poisoned() -> RuntimeError {
    RuntimeError::Other("a previous GPU run panicked while holding the plan's state".into())
}

/// Arena and binding offsets are multiples of this (every GPU's storage offset
/// alignment divides 256).
const ALIGN: usize = 256;

impl GpuPlan {
    fn layout_for(&self, inputs: &[TensorView]) -> Result<Arc<Layout>> {
        let key = LayoutKey {
            shapes: inputs.iter().map(|t| t.shape.to_vec()).collect(),
            values: self.compiled.host_inputs.iter().map(|&k| inputs[k].data.to_vec()).collect(),
        };
        if let Some(l) = self.layouts.read().map_err(|_| poisoned())?.get(&key) {
            return Ok(l.clone());
        }
        let layout = Arc::new(self.build_layout(inputs)?);
        self.layout_count.fetch_add(1, Ordering::Relaxed);
        self.peak.fetch_max(layout.arena_bytes, Ordering::Relaxed);
        self.unplanned.fetch_max(layout.unplanned_bytes, Ordering::Relaxed);
        let mut cache = self.layouts.write().map_err(|_| poisoned())?;
        if cache.len() >= MAX_CACHED_LAYOUTS {
            cache.clear();
        }
        cache.insert(key, layout.clone());
        Ok(layout)
    }

    fn build_layout(&self, inputs: &[TensorView]) -> Result<Layout> {
        let graph = &self.graph;
        let ctx = &self.ctx;
        let compiled = &self.compiled;
        // 1. Shapes and host values.
        let mut facts: Vec<Option<Fact>> =
            (0..graph.values.len()).map(|v| compiled.consts[v].as_ref().map(|t| Fact::constant(t.clone()))).collect();
        let mut host: Vec<Option<Arc<Tensor>>> = compiled.consts.clone();
        for (k, &v) in graph.inputs.iter().enumerate() {
            facts[v] = Some(Fact::new(inputs[k].dtype, Shape::fixed(inputs[k].shape)));
        }
        for &k in &compiled.host_inputs {
            let v = graph.inputs[k];
            let t = Arc::new(
                Tensor::from_bytes(inputs[k].dtype, inputs[k].shape, inputs[k].data)
                    .map_err(|e| RuntimeError::Input { name: graph.name(v).to_string(), message: e.to_string() })?,
            );
            facts[v] = Some(Fact::constant(t.clone()));
            host[v] = Some(t);
        }
        for (node, placement) in graph.nodes.iter().zip(&compiled.placements) {
            if matches!(placement, Placement::Folded) {
                continue;
            }
            let ins: Vec<Option<&Fact>> = node.inputs.iter().map(|v| v.and_then(|v| facts[v].as_ref())).collect();
            let outs = infer::infer(&node.op, &ins, node.outputs.len()).map_err(|m| node_err(node, m))?;
            for (f, &o) in outs.iter().zip(&node.outputs) {
                if f.shape.as_fixed().is_none() {
                    return Err(node_err(
                        node,
                        format!(
                            "cannot determine the shape of '{}' (got {}) for these input shapes",
                            graph.name(o),
                            f.shape
                        ),
                    ));
                }
            }
            let mut outs = outs;
            if matches!(placement, Placement::Host) && outs.iter().all(|f| f.constant.is_some()) {
                // Shape inference already knows the values (Shape, Size).
                for (f, &o) in outs.iter().zip(&node.outputs) {
                    host[o] = f.constant.clone();
                }
            } else if matches!(placement, Placement::Host) {
                let tensors: Option<Vec<Option<&Tensor>>> = node
                    .inputs
                    .iter()
                    .map(|v| match v {
                        None => Some(None),
                        Some(v) => host[*v].as_deref().map(Some),
                    })
                    .collect();
                let tensors =
                    tensors.ok_or_else(|| node_err(node, "a shape-derived input is not known on the host"))?;
                let values = smelt_cpu::eval_alloc(&node.op, &tensors, node.outputs.len())
                    .map_err(|e| node_err(node, e.to_string()))?;
                for ((f, t), &o) in outs.iter_mut().zip(values).zip(&node.outputs) {
                    let t = Arc::new(t);
                    f.constant = Some(t.clone());
                    host[o] = Some(t);
                }
            }
            for (f, &o) in outs.into_iter().zip(&node.outputs) {
                facts[o] = Some(f);
            }
        }
        let shapes: Vec<Vec<usize>> =
            facts.iter().map(|f| f.as_ref().and_then(|f| f.shape.as_fixed()).unwrap_or_default()).collect();
        let bytes_of = |v: ValueId| smelt_ir::num_elements(&shapes[v]) * graph.values[v].fact.dtype.size();
        let padded = |n: usize| n.div_ceil(ALIGN).max(1) * ALIGN;

        // 2. Which values the device needs: inputs of GPU kernels (that read them
        // there), and of CPU nodes' device-side producers; graph outputs.
        let n_values = graph.values.len();
        let mut device_produced = vec![false; n_values];
        for (node, placement) in graph.nodes.iter().zip(&compiled.placements) {
            if matches!(placement, Placement::Gpu(_) | Placement::Cpu { .. } | Placement::Alias) {
                for &o in &node.outputs {
                    device_produced[o] = true;
                }
            }
        }
        let mut pooled = Vec::new();
        let mut locs = vec![Loc::HostOnly; n_values];
        let mapped = ctx.mapped_transfers();
        let mut owned_bytes = Vec::new();
        // Graph inputs: their own buffers, written at each run (mapped by the host
        // on unified memory).
        for &v in &graph.inputs {
            if mapped {
                let bytes = padded(bytes_of(v)) as u64;
                let b = ctx.create_mapped(graph.name(v), bytes)?;
                owned_bytes.push(bytes);
                locs[v] = Loc::Device { buffer: b, offset: 0 };
            } else {
                let b = ctx.acquire(padded(bytes_of(v)) as u64)?;
                locs[v] = Loc::Device { buffer: b.buffer.clone(), offset: 0 };
                pooled.push(b);
            }
        }
        // Host values and constants a kernel reads on the device.
        for (node, placement) in graph.nodes.iter().zip(&compiled.placements) {
            let Placement::Gpu(kernel) = placement else { continue };
            for (i, v) in node.inputs.iter().enumerate() {
                let Some(v) = *v else { continue };
                if !kernel.reads_on_device(i) || matches!(locs[v], Loc::Device { .. }) || device_produced[v] {
                    continue;
                }
                if let Some(w) = compiled.weights.get(&v) {
                    locs[v] = Loc::Device { buffer: w.clone(), offset: 0 };
                } else if let Some(t) = &host[v] {
                    let b = ctx.acquire(padded(t.bytes().len()) as u64)?;
                    let mut bytes = t.bytes().to_vec();
                    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
                    ctx.queue.write_buffer(&b.buffer, 0, &bytes);
                    locs[v] = Loc::Device { buffer: b.buffer.clone(), offset: 0 };
                    pooled.push(b);
                }
            }
        }
        // 3. The arena: outputs of device nodes (aliases excluded), by lifetime of
        // their alias group.
        let roots = &compiled.roots;
        let end = graph.nodes.len().saturating_sub(1);
        let mut spans: HashMap<ValueId, (usize, usize)> = HashMap::new();
        for (step, (node, placement)) in graph.nodes.iter().zip(&compiled.placements).enumerate() {
            if matches!(placement, Placement::Gpu(_) | Placement::Cpu { .. }) {
                for &o in &node.outputs {
                    spans.insert(o, (step, step));
                }
            }
            for &i in node.inputs.iter().flatten() {
                if let Some(s) = spans.get_mut(&alias_root(roots, i)) {
                    s.1 = step;
                }
            }
        }
        for &o in &graph.outputs {
            if let Some(s) = spans.get_mut(&alias_root(roots, o)) {
                s.1 = end;
            }
        }
        // On unified memory the graph outputs get their own mapped buffers, so
        // they are read where the kernels wrote them.
        if mapped {
            for &o in &graph.outputs {
                let r = alias_root(roots, o);
                if spans.remove(&r).is_some() {
                    let bytes = padded(bytes_of(r)) as u64;
                    locs[r] = Loc::Device { buffer: ctx.create_mapped(graph.name(r), bytes)?, offset: 0 };
                    owned_bytes.push(bytes);
                }
            }
        }
        let mut arena_values: Vec<ValueId> = spans.keys().copied().collect();
        arena_values.sort_unstable();
        let lifetimes: Vec<BufferLifetime> = arena_values
            .iter()
            .map(|v| BufferLifetime { size: padded(bytes_of(*v)), first_use: spans[v].0, last_use: spans[v].1 })
            .collect();
        let memory = plan_memory(&lifetimes);
        let arena = ctx.acquire(memory.peak_bytes.max(ALIGN) as u64)?;
        for (i, &v) in arena_values.iter().enumerate() {
            locs[v] = Loc::Device { buffer: arena.buffer.clone(), offset: memory.offsets[i] as u64 };
        }
        pooled.push(arena);
        for v in 0..n_values {
            let r = alias_root(roots, v);
            if r != v {
                locs[v] = locs[r].clone();
            }
        }

        // 4. Record.
        let tensor = |v: ValueId| -> Option<GpuTensor> {
            match &locs[v] {
                Loc::Device { buffer, offset } => Some(GpuTensor {
                    buffer: buffer.clone(),
                    offset: *offset,
                    dtype: graph.values[v].fact.dtype,
                    shape: shapes[v].clone(),
                }),
                Loc::HostOnly => None,
            }
        };
        let mut steps = Vec::new();
        let mut rec = Recorder::new(ctx);
        for (index, (node, placement)) in graph.nodes.iter().zip(&compiled.placements).enumerate() {
            match placement {
                Placement::Gpu(kernel) => {
                    let ins: Vec<Option<GpuTensor>> = node
                        .inputs
                        .iter()
                        .enumerate()
                        .map(|(i, v)| v.and_then(|v| if kernel.reads_on_device(i) { tensor(v) } else { None }))
                        .collect();
                    let host_ins: Vec<Option<&Tensor>> =
                        node.inputs.iter().map(|v| v.and_then(|v| host[v].as_deref())).collect();
                    let outs: Vec<GpuTensor> = node
                        .outputs
                        .iter()
                        .map(|&o| tensor(o).ok_or_else(|| node_err(node, "output has no device place")))
                        .collect::<Result<_>>()?;
                    rec.set_node(&node.name, node.op.name());
                    kernel
                        .record(&mut rec, &NodeIo { inputs: &ins, host: &host_ins, outputs: &outs })
                        .map_err(|e| node_err(node, e.to_string()))?;
                }
                Placement::Cpu { .. } => {
                    let done = std::mem::replace(&mut rec, Recorder::new(ctx));
                    steps.push(Step::Gpu(done.finish()?));
                    steps.push(Step::Cpu(index));
                }
                _ => {}
            }
        }
        steps.push(Step::Gpu(rec.finish()?));

        // 5. Transfers. Staging: inputs at 8-byte aligned offsets of the upload
        // buffer (mapped ranges need it), outputs then status words in the
        // download buffer. Mapped: status words in their own read-back buffer.
        let word = |n: u64| n.div_ceil(wgpu::MAP_ALIGNMENT).max(1) * wgpu::MAP_ALIGNMENT;
        let mut at = 0u64;
        let mut output_ranges = Vec::new();
        if !mapped {
            for &o in &graph.outputs {
                let n = bytes_of(o) as u64;
                output_ranges.push((at, n));
                at += word(n);
            }
        }
        let mut status_ranges = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            if matches!(step, Step::Gpu(p) if p.status_buffer().is_some()) {
                status_ranges.push((i, at));
                at += smelt_gpu::kernel::STATUS_BYTES;
            }
        }
        let io = if mapped {
            let mut outputs: Vec<wgpu::Buffer> = Vec::new();
            for &o in &graph.outputs {
                if let (None, Loc::Device { buffer, .. }) = (&host[o], &locs[o]) {
                    if !outputs.contains(buffer) {
                        outputs.push(buffer.clone());
                    }
                }
            }
            Io::Mapped { outputs, owned_bytes, status: ctx.create_staging("smelt status", at, false) }
        } else {
            let mut input_offsets = Vec::new();
            let mut upload = 0u64;
            for &v in &graph.inputs {
                input_offsets.push(upload);
                upload += word(bytes_of(v) as u64);
            }
            Io::Staging { ring: StagingRing::new(upload, at), input_offsets, output_ranges }
        };
        let has_cpu_steps = steps.iter().any(|s| matches!(s, Step::Cpu(_)));
        let dispatches: usize = steps.iter().map(|s| if let Step::Gpu(p) = s { p.len() } else { 0 }).sum();
        let cpu_nodes = steps.iter().filter(|s| matches!(s, Step::Cpu(_))).count();
        ctx.log(|| {
            format!(
                "plan for input shapes {:?}: arena {} bytes (unplanned {}), {dispatches} dispatches, {cpu_nodes} CPU nodes",
                inputs.iter().map(|t| t.shape).collect::<Vec<_>>(),
                memory.peak_bytes,
                memory.naive_bytes
            )
        });
        ctx.check()?;
        Ok(Layout {
            shapes,
            host,
            locs,
            steps,
            arena_bytes: memory.peak_bytes,
            unplanned_bytes: memory.naive_bytes,
            pooled,
            io,
            status_ranges,
            has_cpu_steps,
            busy: Mutex::new(()),
            ctx: self.ctx.clone(),
        })
    }

    /// Reads device values back (for a CPU node's inputs).
    fn read_values(&self, layout: &Layout, values: &[ValueId]) -> Result<Vec<Tensor>> {
        let ctx = &self.ctx;
        let sizes: Vec<u64> = values
            .iter()
            .map(|&v| (smelt_ir::num_elements(&layout.shapes[v]) * self.graph.values[v].fact.dtype.size()) as u64)
            .collect();
        let total: u64 = sizes.iter().map(|s| s.div_ceil(4).max(1) * 4).sum();
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("smelt cpu-node inputs"),
            size: total.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let mut ranges = Vec::new();
        let mut at = 0;
        for (&v, &n) in values.iter().zip(&sizes) {
            if let Loc::Device { buffer, offset } = &layout.locs[v] {
                let padded = n.div_ceil(4).max(1) * 4;
                encoder.copy_buffer_to_buffer(buffer, *offset, &staging, at, padded);
                ranges.push((at, n));
                at += padded;
            }
        }
        ctx.queue.submit([encoder.finish()]);
        let bytes = ctx.read_mapped(&staging, &ranges)?;
        values
            .iter()
            .zip(bytes)
            .map(|(&v, b)| {
                Tensor::from_bytes(self.graph.values[v].fact.dtype, &layout.shapes[v], &b)
                    .map_err(|e| RuntimeError::Other(e.to_string()))
            })
            .collect()
    }

    fn execute(&self, layout: &Layout, inputs: &[TensorView]) -> Result<Vec<Tensor>> {
        match &layout.io {
            Io::Mapped { outputs, status, .. } => self.execute_mapped(layout, inputs, outputs, status),
            Io::Staging { ring, input_offsets, output_ranges } => {
                self.execute_staged(layout, inputs, ring, input_offsets, output_ranges)
            }
        }
    }

    /// Discrete GPUs: inputs through the ring's upload buffer, outputs through its
    /// download buffer; no lock while the work is in flight unless a node runs on
    /// the CPU.
    fn execute_staged(
        &self,
        layout: &Layout,
        inputs: &[TensorView],
        ring: &StagingRing,
        input_offsets: &[u64],
        output_ranges: &[(u64, u64)],
    ) -> Result<Vec<Tensor>> {
        let ctx = &self.ctx;
        let graph = &self.graph;
        let pair = ring.take(ctx);
        {
            let mut view = pair
                .upload
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| RuntimeError::Other(format!("mapping the input staging buffer: {e}")))?;
            for (input, &at) in inputs.iter().zip(input_offsets) {
                view.slice(at as usize..at as usize + input.data.len()).copy_from_slice(input.data);
            }
        }
        pair.upload.unmap();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for ((input, &v), &at) in inputs.iter().zip(&graph.inputs).zip(input_offsets) {
            if let (Loc::Device { buffer, offset }, n @ 1..) = (&layout.locs[v], input.data.len() as u64) {
                encoder.copy_buffer_to_buffer(&pair.upload, at, buffer, *offset, n.div_ceil(4) * 4);
            }
        }
        let turn = if layout.has_cpu_steps { Some(layout.busy.lock().map_err(|_| poisoned())?) } else { None };
        let mut encoder = self.encode_steps(layout, encoder)?;
        for (&o, &(at, n)) in graph.outputs.iter().zip(output_ranges) {
            if let (None, Loc::Device { buffer, offset }, 1..) = (&layout.host[o], &layout.locs[o], n) {
                encoder.copy_buffer_to_buffer(buffer, *offset, &pair.download, at, n.div_ceil(4) * 4);
            }
        }
        self.copy_status(layout, &mut encoder, &pair.download);
        let submission = ctx.queue.submit([encoder.finish()]);
        drop(turn);
        ring.wait_mapped(ctx, &pair, submission)?;
        let result = {
            let view = pair
                .download
                .slice(..)
                .get_mapped_range()
                .map_err(|e| RuntimeError::Other(format!("mapping the output staging buffer: {e}")))?;
            self.check_status(layout, &view).and_then(|()| {
                graph
                    .outputs
                    .iter()
                    .zip(output_ranges)
                    .map(|(&o, &(at, n))| self.output(layout, o, &view[at as usize..(at + n) as usize]))
                    .collect()
            })
        };
        pair.download.unmap();
        ring.give_back(pair);
        result
    }

    /// Unified memory: the host writes the input buffers and reads the output
    /// buffers the kernels use, with no staging copy. Runs of the layout take turns.
    fn execute_mapped(
        &self,
        layout: &Layout,
        inputs: &[TensorView],
        outputs: &[wgpu::Buffer],
        status: &wgpu::Buffer,
    ) -> Result<Vec<Tensor>> {
        let ctx = &self.ctx;
        let graph = &self.graph;
        let _turn = layout.busy.lock().map_err(|_| poisoned())?;
        let input_buffers: Vec<(&wgpu::Buffer, wgpu::MapMode)> = graph
            .inputs
            .iter()
            .filter_map(|&v| match &layout.locs[v] {
                Loc::Device { buffer, .. } => Some((buffer, wgpu::MapMode::Write)),
                Loc::HostOnly => None,
            })
            .collect();
        ctx.map_all(&input_buffers, None)?;
        for (input, (buffer, _)) in inputs.iter().zip(&input_buffers) {
            if !input.data.is_empty() {
                let mut view = buffer
                    .slice(..input.data.len().div_ceil(4) as u64 * 4)
                    .get_mapped_range_mut()
                    .map_err(|e| RuntimeError::Other(format!("mapping an input buffer: {e}")))?;
                view.slice(..input.data.len()).copy_from_slice(input.data);
            }
            buffer.unmap();
        }
        let encoder = ctx.device.create_command_encoder(&Default::default());
        let mut encoder = self.encode_steps(layout, encoder)?;
        self.copy_status(layout, &mut encoder, status);
        let submission = ctx.queue.submit([encoder.finish()]);
        let mut maps: Vec<(&wgpu::Buffer, wgpu::MapMode)> = outputs.iter().map(|b| (b, wgpu::MapMode::Read)).collect();
        maps.push((status, wgpu::MapMode::Read));
        ctx.map_all(&maps, Some(submission))?;
        let result = (|| {
            let view = status.slice(..).get_mapped_range().map_err(|e| RuntimeError::Other(e.to_string()))?;
            self.check_status(layout, &view)?;
            graph
                .outputs
                .iter()
                .map(|&o| match (&layout.host[o], &layout.locs[o]) {
                    (None, Loc::Device { buffer, offset }) => {
                        let n = (smelt_ir::num_elements(&layout.shapes[o]) * graph.values[o].fact.dtype.size()) as u64;
                        if n == 0 {
                            return self.output(layout, o, &[]);
                        }
                        let view = buffer
                            .slice(*offset..*offset + n.div_ceil(4) * 4)
                            .get_mapped_range()
                            .map_err(|e| RuntimeError::Other(e.to_string()))?;
                        self.output(layout, o, &view[..n as usize])
                    }
                    _ => self.output(layout, o, &[]),
                })
                .collect()
        })();
        for (b, _) in &maps {
            b.unmap();
        }
        result
    }

    /// Encodes every step after `encoder`'s commands; a CPU step submits what
    /// came before it, runs the node and goes on in a new encoder.
    fn encode_steps(&self, layout: &Layout, mut encoder: wgpu::CommandEncoder) -> Result<wgpu::CommandEncoder> {
        let ctx = &self.ctx;
        for step in &layout.steps {
            match step {
                Step::Gpu(program) => program.encode(&mut encoder),
                Step::Cpu(index) => {
                    let done = std::mem::replace(&mut encoder, ctx.device.create_command_encoder(&Default::default()));
                    ctx.queue.submit([done.finish()]);
                    self.run_cpu_node(layout, *index)?;
                }
            }
        }
        Ok(encoder)
    }

    /// Copies each program's status words to `target` at their read-back offsets.
    fn copy_status(&self, layout: &Layout, encoder: &mut wgpu::CommandEncoder, target: &wgpu::Buffer) {
        for &(step, at) in &layout.status_ranges {
            if let Step::Gpu(program) = &layout.steps[step] {
                if let Some(status) = program.status_buffer() {
                    encoder.copy_buffer_to_buffer(status, 0, target, at, smelt_gpu::kernel::STATUS_BYTES);
                }
            }
        }
    }

    /// Fails the run at the first node whose kernel reported a data error, given
    /// the read-back buffer the status words were copied to.
    fn check_status(&self, layout: &Layout, readback: &[u8]) -> Result<()> {
        for &(step, at) in &layout.status_ranges {
            if let Step::Gpu(program) = &layout.steps[step] {
                let words = &readback[at as usize..(at + smelt_gpu::kernel::STATUS_BYTES) as usize];
                if let Some(f) = program.failure(words) {
                    return Err(RuntimeError::Node { node: f.node, op: f.op, message: f.message });
                }
            }
        }
        Ok(())
    }

    /// Graph output `o` from its read-back bytes, or from the host when its value
    /// is known there.
    fn output(&self, layout: &Layout, o: ValueId, bytes: &[u8]) -> Result<Tensor> {
        let graph = &self.graph;
        match (&layout.host[o], &layout.locs[o]) {
            (Some(t), _) => Ok(t.as_ref().clone()),
            (None, Loc::Device { .. }) => Tensor::from_bytes(graph.values[o].fact.dtype, &layout.shapes[o], bytes)
                .map_err(|e| RuntimeError::Other(e.to_string())),
            (None, Loc::HostOnly) => Err(RuntimeError::Other(format!("output '{}' was not computed", graph.name(o)))),
        }
    }

    fn run_cpu_node(&self, layout: &Layout, index: usize) -> Result<()> {
        let node = &self.graph.nodes[index];
        let device_inputs: Vec<ValueId> = node
            .inputs
            .iter()
            .flatten()
            .copied()
            .filter(|&v| layout.host[v].is_none() && matches!(layout.locs[v], Loc::Device { .. }))
            .collect();
        let read = self.read_values(layout, &device_inputs)?;
        let tensors: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|v| {
                v.and_then(|v| {
                    layout.host[v].as_deref().or_else(|| device_inputs.iter().position(|&d| d == v).map(|i| &read[i]))
                })
            })
            .collect();
        let eval = || smelt_cpu::eval_alloc(&node.op, &tensors, node.outputs.len());
        let outs = match host_team() {
            Some(team) => team.run(eval),
            None => eval(),
        }
        .map_err(|e| node_err(node, e.to_string()))?;
        for (&o, t) in node.outputs.iter().zip(&outs) {
            if let Loc::Device { buffer, offset } = &layout.locs[o] {
                let mut bytes = t.bytes().to_vec();
                bytes.resize(bytes.len().div_ceil(4) * 4, 0);
                if !bytes.is_empty() {
                    self.ctx.queue.write_buffer(buffer, *offset, &bytes);
                }
            }
        }
        Ok(())
    }
}

impl Plan for GpuPlan {
    fn run(&self, inputs: &[TensorView]) -> Result<Vec<Tensor>> {
        self.ctx.check()?;
        let layout = self.layout_for(inputs)?;
        let result = self.execute(&layout, inputs);
        self.ctx.trim_pool();
        result.and_then(|r| {
            self.ctx.check()?;
            Ok(r)
        })
    }

    fn memory_report(&self) -> MemoryReport {
        MemoryReport {
            arena_peak_bytes: self.peak.load(Ordering::Relaxed),
            unplanned_bytes: self.unplanned.load(Ordering::Relaxed),
            weight_bytes: self.compiled.weight_bytes,
            arenas: self.layout_count.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
