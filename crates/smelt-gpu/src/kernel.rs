//! The kernel interface: what a GPU kernel is given when built (the node's op,
//! its input types and constants) and when recorded (where its tensors live for
//! one set of shapes), and the [`Recorder`] it records dispatches into.

use crate::{GpuContext, GpuError, Result};
use smelt_ir::{DType, Op, Shape, Tensor};
use std::sync::Arc;

/// One WGSL program: its text (shared snippets already prepended), the element
/// type it was written for, its entry points, and every set of override values the
/// Rust side may choose (the naga translation test compiles each of them).
pub struct KernelSource {
    /// Unique name; the pipeline cache's key.
    pub name: &'static str,
    pub wgsl: &'static str,
    pub dtype: DType,
    pub entries: &'static [&'static str],
    /// Needs `Features::SHADER_F16`.
    pub needs_f16: bool,
    pub override_sets: fn() -> Vec<Vec<(&'static str, f64)>>,
}

/// A tensor on the device: a byte range of a buffer.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    /// Byte offset; a multiple of the device's storage offset alignment.
    pub offset: u64,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl GpuTensor {
    pub fn len(&self) -> usize {
        smelt_ir::num_elements(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u64 {
        (self.len() * self.dtype.size()) as u64
    }

    /// Bytes a binding covers: whole 32-bit words, at least one.
    pub fn binding_size(&self) -> u64 {
        self.bytes().div_ceil(4).max(1) * 4
    }
}

/// What a kernel builder knows about one input at compile time.
#[derive(Clone, Debug)]
pub struct InputInfo {
    pub dtype: DType,
    /// The graph's (possibly symbolic) shape.
    pub shape: Shape,
    /// The value, when it is a constant (weights): kernels may pre-pack it.
    pub constant: Option<Arc<Tensor>>,
}

/// The node a kernel is built for.
pub struct KernelRequest<'a> {
    pub op: &'a Op,
    /// `None` for an absent optional input.
    pub inputs: Vec<Option<InputInfo>>,
    pub outputs: Vec<DType>,
    pub ctx: &'a GpuContext,
}

impl KernelRequest<'_> {
    pub fn input(&self, i: usize) -> Option<&InputInfo> {
        self.inputs.get(i).and_then(|x| x.as_ref())
    }

    pub fn dtype(&self, i: usize) -> Option<DType> {
        self.input(i).map(|x| x.dtype)
    }

    pub fn constant(&self, i: usize) -> Option<&Arc<Tensor>> {
        self.input(i).and_then(|x| x.constant.as_ref())
    }
}

/// Where one node's tensors are for one run's shapes.
pub struct NodeIo<'a> {
    /// Device tensors of the inputs (`None`: absent, or not on the device because
    /// the kernel said it does not read it there).
    pub inputs: &'a [Option<GpuTensor>],
    /// Values known on the host: constants and values computed from shapes alone.
    pub host: &'a [Option<&'a Tensor>],
    pub outputs: &'a [GpuTensor],
}

impl NodeIo<'_> {
    pub fn input(&self, i: usize, kernel: &'static str) -> Result<&GpuTensor> {
        self.inputs
            .get(i)
            .and_then(|x| x.as_ref())
            .ok_or_else(|| GpuError::kernel(kernel, format!("input {i} is not on the device")))
    }

    pub fn host(&self, i: usize) -> Option<&Tensor> {
        self.host.get(i).copied().flatten()
    }
}

/// A compiled kernel for one node. Dims come at record time, so one kernel (and
/// its pipelines) serves every batch size.
pub trait GpuKernel: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether input `index` must be on the device when recording. Kernels that
    /// pre-packed a constant into their own buffers answer false for it, and the
    /// runtime does not upload it.
    fn reads_on_device(&self, _index: usize) -> bool {
        true
    }

    /// Records the dispatches that compute `io.outputs` from `io.inputs`.
    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()>;
}

/// What a kernel binds: a tensor, a raw buffer range, the placeholder for an
/// absent optional input, or the program's status word (see
/// [`Recorder::error_code`]).
pub enum Bind<'a> {
    Tensor(&'a GpuTensor),
    Range(&'a wgpu::Buffer, u64, u64),
    Placeholder,
    Status,
}

/// What a failed in-kernel check means, for the error a run reports.
#[derive(Clone, Debug)]
pub struct KernelFailure {
    /// The node whose kernel registered it (empty when run outside a graph).
    pub node: String,
    pub op: &'static str,
    /// `{value}` in it is replaced by the value that failed the check.
    pub message: String,
}

/// The status words of a [`Program`] (kernels/status.wgsl): word 0 is zero after
/// a clean run, otherwise the complement of the smallest failure code some kernel
/// wrote (the first failing node); word 1 the value that failed. Kernels cannot raise errors, so checks that only the data
/// can decide (an index out of range, an integer division by zero) report
/// through it and the run fails after the read-back, as the CPU fails at that
/// node.
struct StatusWord {
    buffer: wgpu::Buffer,
    failures: Vec<KernelFailure>,
}

struct Pending {
    pipeline: Arc<wgpu::ComputePipeline>,
    buffers: Vec<(wgpu::Buffer, u64, u64)>,
    params: (u64, u64),
    groups: [u32; 3],
}

/// Collects dispatches; [`finish`](Recorder::finish) uploads every dispatch's
/// parameters in one buffer and makes the bind groups, giving a [`Program`] that
/// replays with no further allocation.
pub struct Recorder<'c> {
    ctx: &'c GpuContext,
    params: Vec<u32>,
    pending: Vec<Pending>,
    /// The node being recorded, for failure messages.
    node: (String, &'static str),
    failures: Vec<KernelFailure>,
    status: Option<wgpu::Buffer>,
}

/// Largest workgroup count per grid dimension every backend accepts.
pub const MAX_GROUPS_PER_DIM: u32 = 65535;

/// A grid of `threads` invocations in workgroups of `wg`, folded into y when x
/// would pass the per-dimension limit. Kernels compute their linear id as
/// `gid.x + gid.y * num_workgroups.x * wg`.
pub fn grid_1d(threads: usize, wg: u32) -> [u32; 3] {
    let groups = (threads as u64).div_ceil(wg as u64).max(1);
    if groups <= MAX_GROUPS_PER_DIM as u64 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(MAX_GROUPS_PER_DIM as u64);
        [MAX_GROUPS_PER_DIM, y as u32, 1]
    }
}

impl<'c> Recorder<'c> {
    pub fn new(ctx: &'c GpuContext) -> Self {
        Recorder {
            ctx,
            params: Vec::new(),
            pending: Vec::new(),
            node: (String::new(), ""),
            failures: Vec::new(),
            status: None,
        }
    }

    /// Names the node whose kernel records next (for [`error_code`](Self::error_code)).
    pub fn set_node(&mut self, name: &str, op: &'static str) {
        self.node = (name.to_string(), op);
    }

    /// Registers what a failed check in a kernel means and returns the code (1 or
    /// more) that kernel passes to `report_failure` (kernels/status.wgsl) through
    /// the status words it binds with [`Bind::Status`]. The run then fails with
    /// `message` at this node, `{value}` in it replaced by the failing value.
    pub fn error_code(&mut self, message: impl Into<String>) -> u32 {
        self.failures.push(KernelFailure { node: self.node.0.clone(), op: self.node.1, message: message.into() });
        self.failures.len() as u32
    }

    fn status_buffer(&mut self) -> Result<wgpu::Buffer> {
        if let Some(b) = &self.status {
            return Ok(b.clone());
        }
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("smelt kernel status"),
            size: STATUS_BYTES,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.status = Some(buffer.clone());
        Ok(buffer)
    }

    pub fn ctx(&self) -> &'c GpuContext {
        self.ctx
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records one dispatch of `entry` in `source`. `buffers` bind to 0..n in order
    /// and the parameter words to binding n.
    pub fn dispatch(
        &mut self,
        source: &KernelSource,
        entry: &'static str,
        overrides: &[(&'static str, f64)],
        buffers: &[Bind],
        params: &[u32],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        if groups.iter().any(|&g| g > self.ctx.limits.max_compute_workgroups_per_dimension) {
            return Err(GpuError::kernel(
                source.name,
                format!("grid {groups:?} is larger than this GPU allows; the tensor is too large"),
            ));
        }
        let pipeline = self.ctx.pipelines().get(&self.ctx.device, source, entry, overrides, self.ctx.config.verbose)?;
        let mut bound = Vec::with_capacity(buffers.len());
        for b in buffers {
            let (buffer, offset, size) = match b {
                Bind::Tensor(t) => (t.buffer.clone(), t.offset, t.binding_size()),
                Bind::Range(buf, o, s) => ((*buf).clone(), *o, (*s).div_ceil(4).max(1) * 4),
                Bind::Placeholder => (self.ctx.placeholder().clone(), 0, 16),
                Bind::Status => (self.status_buffer()?, 0, STATUS_BYTES),
            };
            if size > self.ctx.max_binding() {
                return Err(GpuError::TooLarge {
                    what: format!("a tensor bound by kernel {}", source.name),
                    bytes: size,
                    limit: self.ctx.max_binding(),
                });
            }
            bound.push((buffer, offset, size));
        }
        // Each dispatch's parameters start on a binding-offset boundary.
        let align_words = (self.ctx.offset_alignment() / 4).max(1) as usize;
        let start = self.params.len().div_ceil(align_words) * align_words;
        self.params.resize(start, 0);
        self.params.extend_from_slice(params);
        if params.is_empty() {
            self.params.push(0);
        }
        let len = self.params.len() - start;
        self.pending.push(Pending { pipeline, buffers: bound, params: (start as u64 * 4, len as u64 * 4), groups });
        Ok(())
    }

    pub fn finish(self) -> Result<Program> {
        let status = self.status.clone().map(|buffer| StatusWord { buffer, failures: self.failures.clone() });
        if self.pending.is_empty() {
            return Ok(Program { steps: Vec::new(), params: None, status });
        }
        let params = self.ctx.upload("smelt kernel parameters", bytemuck::cast_slice(&self.params))?;
        let steps = self
            .pending
            .into_iter()
            .map(|p| {
                let layout = p.pipeline.get_bind_group_layout(0);
                let mut entries: Vec<wgpu::BindGroupEntry> = p
                    .buffers
                    .iter()
                    .enumerate()
                    .map(|(i, (buffer, offset, size))| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer,
                            offset: *offset,
                            size: wgpu::BufferSize::new(*size),
                        }),
                    })
                    .collect();
                entries.push(wgpu::BindGroupEntry {
                    binding: p.buffers.len() as u32,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &params,
                        offset: p.params.0,
                        size: wgpu::BufferSize::new(p.params.1),
                    }),
                });
                let group = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &layout,
                    entries: &entries,
                });
                (p.pipeline, group, p.groups)
            })
            .collect();
        Ok(Program { steps, params: Some(params), status })
    }
}

/// Bytes of the status words: failure code and failing value.
pub const STATUS_BYTES: u64 = 8;

/// Recorded dispatches, replayed by each run.
pub struct Program {
    steps: Vec<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup, [u32; 3])>,
    params: Option<wgpu::Buffer>,
    status: Option<StatusWord>,
}

impl Program {
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Bytes of the parameter buffer (counted as weights by the context).
    pub fn param_bytes(&self) -> u64 {
        self.params.as_ref().map_or(0, |b| b.size())
    }

    /// The status words' buffer, when some kernel checks its data: copy its
    /// [`STATUS_BYTES`] out after the run and give them to
    /// [`failure`](Self::failure).
    pub fn status_buffer(&self) -> Option<&wgpu::Buffer> {
        self.status.as_ref().map(|s| &s.buffer)
    }

    /// What the status words read back after a run mean: `None` when the run was
    /// clean.
    pub fn failure(&self, status: &[u8]) -> Option<KernelFailure> {
        let word = |i: usize| status.get(i * 4..i * 4 + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        // status.wgsl stores !code so the smallest code wins under atomicMax.
        let (code, value) = (!word(0), word(1) as i32);
        if word(0) == 0 {
            return None;
        }
        let failures = self.status.as_ref().map_or(&[][..], |s| &s.failures[..]);
        let mut failure = failures.get(code as usize - 1).cloned().unwrap_or_else(|| KernelFailure {
            node: String::new(),
            op: "",
            message: format!("a kernel reported failure code {code}, which no kernel registered"),
        });
        failure.message = failure.message.replace("{value}", &value.to_string());
        Some(failure)
    }

    /// Records every dispatch into one compute pass (after zeroing the status word).
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Some(status) = &self.status {
            encoder.clear_buffer(&status.buffer, 0, None);
        }
        if self.steps.is_empty() {
            return;
        }
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        for (pipeline, group, g) in &self.steps {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(g[0], g[1], g[2]);
        }
    }
}
