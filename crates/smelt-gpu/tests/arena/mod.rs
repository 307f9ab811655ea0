//! Running one op with every input and output in one buffer, as a plan's arena
//! holds them, every byte outside the outputs filled with a sentinel; then
//! checking that the kernel changed no byte outside its outputs. Kernels that
//! pack 1- and 2-byte elements into 32-bit words write whole words, so this is
//! how the tests see that the bytes after an odd-sized output survive.
#![allow(dead_code)]

use smelt_gpu::kernel::{GpuTensor, InputInfo, KernelRequest, NodeIo, Recorder};
use smelt_gpu::GpuContext;
use smelt_ir::{Shape, Tensor};
use std::sync::Arc;

const SENTINEL: u8 = 0xa5;

/// Runs `op` on the GPU with inputs and outputs sharing one buffer (no gap
/// beyond the device's offset alignment, so a word written past an output's end
/// lands in the gap). Shape inputs, and inputs `constant` marks, go to the
/// builder as constants. Panics if any byte outside the outputs changed. `None`:
/// no kernel takes the op.
pub fn run_in_arena(
    ctx: &GpuContext,
    op: &smelt_ir::Op,
    inputs: &[Option<&Tensor>],
    constant: &[bool],
    n_outputs: usize,
) -> Option<Vec<Tensor>> {
    let facts = smelt_gpu::exec::output_facts(op, inputs, n_outputs).expect("shape inference");
    let request = KernelRequest {
        op,
        inputs: inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.map(|t| InputInfo {
                    dtype: t.dtype(),
                    shape: Shape::fixed(t.shape()),
                    constant: (op.shape_inputs().contains(&i) || constant.get(i) == Some(&true))
                        .then(|| Arc::new(t.clone())),
                })
            })
            .collect(),
        outputs: facts.iter().map(|(d, _)| *d).collect(),
        ctx,
    };
    let kernel = smelt_gpu::ops::build_kernel(&request)?.expect("kernel build");
    let align = ctx.offset_alignment().max(4) as usize;
    let mut image: Vec<u8> = Vec::new();
    let mut place = |bytes: usize, fill: Option<&[u8]>| {
        let at = image.len().div_ceil(align) * align;
        image.resize(at, SENTINEL);
        match fill {
            Some(b) => image.extend_from_slice(b),
            None => image.resize(at + bytes, SENTINEL),
        }
        at
    };
    let input_at: Vec<Option<usize>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| t.filter(|_| kernel.reads_on_device(i)).map(|t| place(t.bytes().len(), Some(t.bytes()))))
        .collect();
    let output_at: Vec<usize> = facts.iter().map(|(d, s)| place(smelt_ir::num_elements(s) * d.size(), None)).collect();
    let end = image.len().div_ceil(align) * align + align;
    image.resize(end, SENTINEL);
    let buffer = ctx.upload("arena", &image).expect("upload");
    let device_inputs: Vec<Option<GpuTensor>> = inputs
        .iter()
        .zip(&input_at)
        .map(|(t, at)| {
            at.map(|at| GpuTensor {
                buffer: buffer.clone(),
                offset: at as u64,
                dtype: t.unwrap().dtype(),
                shape: t.unwrap().shape().to_vec(),
            })
        })
        .collect();
    let outputs: Vec<GpuTensor> = facts
        .iter()
        .zip(&output_at)
        .map(|((d, s), &at)| GpuTensor { buffer: buffer.clone(), offset: at as u64, dtype: *d, shape: s.clone() })
        .collect();
    let mut rec = Recorder::new(ctx);
    kernel.record(&mut rec, &NodeIo { inputs: &device_inputs, host: inputs, outputs: &outputs }).expect("record");
    let program = rec.finish().expect("finish");
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    program.encode(&mut encoder);
    let staging = ctx.device.create_buffer(&smelt_gpu::wgpu::BufferDescriptor {
        label: Some("arena readback"),
        size: end as u64,
        usage: smelt_gpu::wgpu::BufferUsages::MAP_READ | smelt_gpu::wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_buffer_to_buffer(&buffer, 0, &staging, 0, end as u64);
    ctx.queue.submit([encoder.finish()]);
    let after = ctx.read_mapped(&staging, &[(0, end as u64)]).expect("readback").remove(0);
    let mut result = Vec::new();
    let mut owned = vec![false; end];
    for ((d, s), &at) in facts.iter().zip(&output_at) {
        let bytes = smelt_ir::num_elements(s) * d.size();
        owned[at..at + bytes].iter_mut().for_each(|o| *o = true);
        result.push(Tensor::from_bytes(*d, s, &after[at..at + bytes]).expect("output bytes"));
    }
    for (i, (&was, &now)) in image.iter().zip(&after).enumerate() {
        assert!(
            owned[i] || was == now,
            "{}: byte {i} outside the outputs changed from {was:#x} to {now:#x}",
            op.name()
        );
    }
    Some(result)
}

/// `run_in_arena` compared with the CPU reference, byte for byte.
pub fn check_in_arena(
    ctx: &GpuContext,
    op: &smelt_ir::Op,
    inputs: &[Option<&Tensor>],
    constant: &[bool],
    n_outputs: usize,
) {
    let what = format!(
        "{} on {:?}",
        op.name(),
        inputs.iter().map(|t| t.map(|t| (t.dtype(), t.shape().to_vec()))).collect::<Vec<_>>()
    );
    let want = smelt_cpu::eval_alloc(op, inputs, n_outputs).unwrap_or_else(|e| panic!("{what}: CPU: {e}"));
    let got =
        run_in_arena(ctx, op, inputs, constant, n_outputs).unwrap_or_else(|| panic!("{what}: no GPU kernel takes it"));
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.dtype(), w.dtype(), "{what}: output {k} dtype");
        assert_eq!(g.shape(), w.shape(), "{what}: output {k} shape");
        assert_eq!(g.bytes(), w.bytes(), "{what}: output {k} bytes");
    }
}
