//! Running one op on the GPU from host tensors: upload, build the kernel, record,
//! run, read back. The kernel tests compare this with the CPU reference.

use crate::kernel::{GpuTensor, InputInfo, KernelRequest, NodeIo, Recorder, STATUS_BYTES};
use crate::{GpuContext, GpuError, Result};
use smelt_ir::{infer, Fact, Op, Shape, Tensor};
use std::sync::Arc;

/// Output shapes and types of `op` on these inputs (shape-deciding inputs are
/// taken as constants, as at run time).
pub fn output_facts(
    op: &Op,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
) -> Result<Vec<(smelt_ir::DType, Vec<usize>)>> {
    let facts: Vec<Option<Fact>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.map(|t| {
                if op.shape_inputs().contains(&i) {
                    Fact::constant(Arc::new(t.clone()))
                } else {
                    Fact::new(t.dtype(), Shape::fixed(t.shape()))
                }
            })
        })
        .collect();
    let refs: Vec<Option<&Fact>> = facts.iter().map(|f| f.as_ref()).collect();
    let outs = infer::infer(op, &refs, n_outputs).map_err(|m| GpuError::kernel("shape inference", m))?;
    outs.iter()
        .map(|f| {
            let shape = f.shape.as_fixed().ok_or_else(|| {
                GpuError::kernel("shape inference", format!("output shape {} of {} is not fixed", f.shape, op.name()))
            })?;
            Ok((f.dtype, shape))
        })
        .collect()
}

/// Runs `op` once on the GPU. `constant[i]` marks inputs given to the kernel
/// builder as constants (so pre-packing paths are exercised). `Ok(None)`: no GPU
/// kernel takes this op with these types.
pub fn run_op(
    ctx: &GpuContext,
    op: &Op,
    inputs: &[Option<&Tensor>],
    constant: &[bool],
    n_outputs: usize,
) -> Result<Option<Vec<Tensor>>> {
    let out_facts = output_facts(op, inputs, n_outputs)?;
    let request = KernelRequest {
        op,
        inputs: inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.map(|t| InputInfo {
                    dtype: t.dtype(),
                    shape: Shape::fixed(t.shape()),
                    constant: constant.get(i).copied().unwrap_or(false).then(|| Arc::new(t.clone())),
                })
            })
            .collect(),
        outputs: out_facts.iter().map(|(d, _)| *d).collect(),
        ctx,
    };
    let Some(kernel) = crate::ops::build_kernel(&request) else { return Ok(None) };
    let kernel = kernel?;
    let mut device_inputs = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        device_inputs.push(match t {
            Some(t) if kernel.reads_on_device(i) => Some(GpuTensor {
                buffer: ctx.upload("input", t.bytes())?,
                offset: 0,
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
            }),
            _ => None,
        });
    }
    let outputs: Vec<GpuTensor> = out_facts
        .iter()
        .map(|(d, s)| {
            let bytes = smelt_ir::num_elements(s) * d.size();
            Ok(GpuTensor { buffer: ctx.upload("output", &vec![0u8; bytes])?, offset: 0, dtype: *d, shape: s.clone() })
        })
        .collect::<Result<_>>()?;
    let mut rec = Recorder::new(ctx);
    rec.set_node("", op.name());
    kernel.record(&mut rec, &NodeIo { inputs: &device_inputs, host: inputs, outputs: &outputs })?;
    let program = rec.finish()?;
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run_op") });
    program.encode(&mut encoder);
    let total: u64 = outputs.iter().map(|o| o.binding_size()).sum::<u64>() + STATUS_BYTES;
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("run_op readback"),
        size: total.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut ranges = Vec::new();
    let mut at = 0;
    for o in &outputs {
        encoder.copy_buffer_to_buffer(&o.buffer, o.offset, &staging, at, o.binding_size());
        ranges.push((at, o.bytes()));
        at += o.binding_size();
    }
    if let Some(status) = program.status_buffer() {
        encoder.copy_buffer_to_buffer(status, 0, &staging, at, STATUS_BYTES);
    }
    ranges.push((at, STATUS_BYTES));
    ctx.queue.submit([encoder.finish()]);
    let mut bytes = ctx.read_mapped(&staging, &ranges)?;
    let status = bytes.pop().unwrap_or_default();
    if let Some(failure) = program.failure(&status) {
        return Err(GpuError::InvalidData { op: op.name(), message: failure.message });
    }
    out_facts
        .iter()
        .zip(bytes)
        .map(|((d, s), b)| Tensor::from_bytes(*d, s, &b).map_err(|e| GpuError::Readback(e.to_string())))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
