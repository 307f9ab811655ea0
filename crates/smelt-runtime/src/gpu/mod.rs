//! The GPU backend: places each node (GPU kernel, host shape arithmetic, alias, or
//! CPU fallback), uploads weights once, and per distinct set of input shapes plans
//! one arena from tensor lifetimes and records every kernel once. A run uploads the
//! inputs, replays the recorded dispatches in one submission (split only where a
//! node runs on the CPU), and reads the outputs back once.

mod placement;

use crate::backend::{Backend, MemoryReport, Plan};
use crate::{Result, RuntimeError};
use placement::{alias_root, data_dependent, fold_constants, is_alias, Placement};
use smelt_gpu::wgpu;
use smelt_gpu::{GpuError, GpuTensor, InputInfo, KernelRequest, NodeIo, Program, Recorder};
use smelt_ir::{infer, Fact, Graph, Shape, Tensor, TensorView, ValueId};
use smelt_passes::memory::{plan_memory, BufferLifetime};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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
        let ctx = GpuContext::new(ordinal, config)?;
        if let Ok(mut open) = OPEN_CONTEXTS.lock() {
            open.retain(|c| c.strong_count() > 0);
            open.push(Arc::downgrade(&ctx));
        }
        Ok(GpuBackend { ctx })
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
}

impl Compiled {
    fn new(ctx: &GpuContext, graph: &Graph) -> Result<Compiled> {
        let consts = fold_constants(graph)?;
        let data_dep = data_dependent(graph);
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
                    Placement::Cpu
                }
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
                    None => Placement::Cpu,
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
        Ok(Compiled { placements, consts, weights, weight_bytes, roots })
    }

    fn report(&self, graph: &Graph) -> Vec<String> {
        let mut lines = Vec::new();
        let on_device = |v: ValueId| -> bool {
            graph.inputs.contains(&v)
                || graph.nodes.iter().zip(&self.placements).any(|(n, p)| {
                    n.outputs.contains(&v) && matches!(p, Placement::Gpu(_) | Placement::Alias | Placement::Cpu)
                })
        };
        for (node, placement) in graph.nodes.iter().zip(&self.placements) {
            let mut line = format!("  {:<40} {:<18} {}", node.name, node.op.name(), placement.describe());
            match placement {
                Placement::Cpu => {
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
    staging: wgpu::Buffer,
    /// (offset in staging, bytes) per graph output that is on the device.
    output_ranges: Vec<(u64, u64)>,
    /// (index in `steps`, offset in staging) of each program's status word.
    status_ranges: Vec<(usize, u64)>,
    /// Runs of one layout share its arena: one at a time.
    busy: Mutex<()>,
    ctx: Arc<GpuContext>,
}

impl Drop for Layout {
    fn drop(&mut self) {
        for b in self.pooled.drain(..) {
            self.ctx.release(b);
        }
    }
}

struct GpuPlan {
    ctx: Arc<GpuContext>,
    graph: Graph,
    compiled: Compiled,
    layouts: RwLock<HashMap<Vec<Vec<usize>>, Arc<Layout>>>,
    layout_count: AtomicUsize,
    peak: AtomicUsize,
    unplanned: AtomicUsize,
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
        let key: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape.to_vec()).collect();
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
            if matches!(placement, Placement::Gpu(_) | Placement::Cpu | Placement::Alias) {
                for &o in &node.outputs {
                    device_produced[o] = true;
                }
            }
        }
        let mut pooled = Vec::new();
        let mut locs = vec![Loc::HostOnly; n_values];
        // Graph inputs: their own buffers, written at each run.
        for &v in &graph.inputs {
            let b = ctx.acquire(padded(bytes_of(v)) as u64)?;
            locs[v] = Loc::Device { buffer: b.buffer.clone(), offset: 0 };
            pooled.push(b);
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
            if matches!(placement, Placement::Gpu(_) | Placement::Cpu) {
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
                Placement::Cpu => {
                    let done = std::mem::replace(&mut rec, Recorder::new(ctx));
                    steps.push(Step::Gpu(done.finish()?));
                    steps.push(Step::Cpu(index));
                }
                _ => {}
            }
        }
        steps.push(Step::Gpu(rec.finish()?));

        // 5. Read-back staging for the outputs on the device.
        let mut output_ranges = Vec::new();
        let mut at = 0u64;
        for &o in &graph.outputs {
            let n = bytes_of(o) as u64;
            output_ranges.push((at, n));
            at += n.div_ceil(4).max(1) * 4;
        }
        // The status words of programs whose kernels check their data come back
        // with the outputs.
        let mut status_ranges = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            if matches!(step, Step::Gpu(p) if p.status_buffer().is_some()) {
                status_ranges.push((i, at));
                at += smelt_gpu::kernel::STATUS_BYTES;
            }
        }
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("smelt outputs"),
            size: at.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
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
            staging,
            output_ranges,
            status_ranges,
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
        let ctx = &self.ctx;
        let graph = &self.graph;
        for (k, &v) in graph.inputs.iter().enumerate() {
            if let Loc::Device { buffer, offset } = &layout.locs[v] {
                let data = inputs[k].data;
                if data.len() % 4 == 0 {
                    ctx.queue.write_buffer(buffer, *offset, data);
                } else {
                    let mut padded = data.to_vec();
                    padded.resize(data.len().div_ceil(4) * 4, 0);
                    ctx.queue.write_buffer(buffer, *offset, &padded);
                }
            }
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for step in &layout.steps {
            match step {
                Step::Gpu(program) => program.encode(&mut encoder),
                Step::Cpu(index) => {
                    ctx.queue.submit([std::mem::replace(
                        &mut encoder,
                        ctx.device.create_command_encoder(&Default::default()),
                    )
                    .finish()]);
                    self.run_cpu_node(layout, *index)?;
                }
            }
        }
        for (&o, &(at, n)) in graph.outputs.iter().zip(&layout.output_ranges) {
            if let Loc::Device { buffer, offset } = &layout.locs[o] {
                if n > 0 {
                    encoder.copy_buffer_to_buffer(buffer, *offset, &layout.staging, at, n.div_ceil(4) * 4);
                }
            }
        }
        let mut ranges = layout.output_ranges.clone();
        for &(step, at) in &layout.status_ranges {
            if let Step::Gpu(program) = &layout.steps[step] {
                if let Some(status) = program.status_buffer() {
                    encoder.copy_buffer_to_buffer(status, 0, &layout.staging, at, smelt_gpu::kernel::STATUS_BYTES);
                    ranges.push((at, smelt_gpu::kernel::STATUS_BYTES));
                }
            }
        }
        ctx.queue.submit([encoder.finish()]);
        let mut bytes = ctx.read_mapped(&layout.staging, &ranges)?;
        let words = bytes.split_off(graph.outputs.len());
        for (&(step, _), status) in layout.status_ranges.iter().zip(&words) {
            if let Step::Gpu(program) = &layout.steps[step] {
                if let Some(f) = program.failure(status) {
                    return Err(RuntimeError::Node { node: f.node, op: f.op, message: f.message });
                }
            }
        }
        graph
            .outputs
            .iter()
            .zip(bytes)
            .map(|(&o, b)| match &layout.locs[o] {
                Loc::Device { .. } => Tensor::from_bytes(graph.values[o].fact.dtype, &layout.shapes[o], &b)
                    .map_err(|e| RuntimeError::Other(e.to_string())),
                Loc::HostOnly => layout.host[o]
                    .as_deref()
                    .cloned()
                    .ok_or_else(|| RuntimeError::Other(format!("output '{}' was not computed", graph.name(o)))),
            })
            .collect()
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
        let outs =
            smelt_cpu::eval_alloc(&node.op, &tensors, node.outputs.len()).map_err(|e| node_err(node, e.to_string()))?;
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
        let _guard = layout.busy.lock().map_err(|_| poisoned())?;
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
