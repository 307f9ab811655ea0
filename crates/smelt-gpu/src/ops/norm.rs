//! Softmax, LogSoftmax (kernels/softmax.wgsl) and LayerNormalization
//! (kernels/layer_norm.wgsl): one workgroup per row.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;

static SOFTMAX_F32: KernelSource = KernelSource {
    name: "softmax_f32",
    wgsl: concat!(include_str!("../../kernels/softmax.wgsl"), include_str!("../../kernels/workgroup_reduce.wgsl")),
    dtype: DType::F32,
    entries: &["softmax"],
    needs_f16: false,
    override_sets: || vec![vec![("LOG", 0.0)], vec![("LOG", 1.0)]],
};

static LAYER_NORM_F32: KernelSource = KernelSource {
    name: "layer_norm_f32",
    wgsl: concat!(include_str!("../../kernels/layer_norm.wgsl"), include_str!("../../kernels/workgroup_reduce.wgsl")),
    dtype: DType::F32,
    entries: &["layer_norm"],
    needs_f16: false,
    override_sets: || vec![vec![("WG", 256.0)]],
};

pub static FAMILY: Family = Family { name: "norm", sources: &[&SOFTMAX_F32, &LAYER_NORM_F32], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    if req.dtype(0)? != DType::F32 {
        return None;
    }
    match *req.op {
        Op::Softmax { axis, coerce_2d } => Some(Ok(Box::new(Softmax { axis, coerce_2d, log: false }))),
        Op::LogSoftmax { axis, coerce_2d } => Some(Ok(Box::new(Softmax { axis, coerce_2d, log: true }))),
        // Mean and InvStdDev outputs go to the CPU.
        Op::LayerNormalization { axis, epsilon } if req.outputs.len() == 1 => {
            if req.dtype(1)? != DType::F32 || req.input(2).is_some_and(|b| b.dtype != DType::F32) {
                return None;
            }
            Some(Ok(Box::new(LayerNorm { axis, epsilon })))
        }
        _ => None,
    }
}

fn axis_of(axis: i64, rank: usize, kernel: &'static str) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) {
        return Err(GpuError::kernel(kernel, format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(a as usize)
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| GpuError::kernel("norm", "a dimension is 2^32 or more"))
}

struct Softmax {
    axis: i64,
    coerce_2d: bool,
    log: bool,
}

impl GpuKernel for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "softmax")?;
        let y = &io.outputs[0];
        if x.is_empty() {
            return Ok(());
        }
        let axis = axis_of(self.axis, x.shape.len(), "softmax")?;
        let (outer, len, inner) = if self.coerce_2d {
            (x.shape[..axis].iter().product::<usize>(), x.shape[axis..].iter().product::<usize>(), 1)
        } else {
            (x.shape[..axis].iter().product::<usize>(), x.shape[axis], x.shape[axis + 1..].iter().product::<usize>())
        };
        let rows = outer * inner;
        rec.dispatch(
            &SOFTMAX_F32,
            "softmax",
            &[("LOG", self.log as u32 as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &[u(rows)?, u(len)?, u(inner)?],
            grid_1d(rows * WG as usize, WG),
        )
    }
}

struct LayerNorm {
    axis: i64,
    epsilon: f32,
}

impl GpuKernel for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "layer_norm")?;
        let scale = io.input(1, "layer_norm")?;
        let bias = io.inputs.get(2).and_then(|b| b.as_ref());
        let y = &io.outputs[0];
        if x.is_empty() {
            return Ok(());
        }
        let axis = axis_of(self.axis, x.shape.len(), "layer_norm")?;
        let cols: usize = x.shape[axis..].iter().product();
        let rows = x.len() / cols.max(1);
        if scale.len() != cols || bias.is_some_and(|b| b.len() != cols) {
            return Err(GpuError::kernel(
                "layer_norm",
                format!("scale/bias must have the {cols} normalised elements (scale {:?})", scale.shape),
            ));
        }
        rec.dispatch(
            &LAYER_NORM_F32,
            "layer_norm",
            &[("WG", WG as f64)],
            &[Bind::Tensor(x), Bind::Tensor(scale), bias.map_or(Bind::Placeholder, Bind::Tensor), Bind::Tensor(y)],
            &[u(rows)?, u(cols)?, self.epsilon.to_bits(), bias.is_some() as u32],
            grid_1d(rows * WG as usize, WG),
        )
    }
}
