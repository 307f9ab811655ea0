//! MaxPool, AveragePool (1-D, 2-D), GlobalAveragePool and GlobalMaxPool
//! (kernels/pool.wgsl). MaxPool's optional Indices output goes to the CPU.

use super::conv::pads_for;
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op, PoolAttrs};

const WG: u32 = 256;

static POOL_F32: KernelSource = KernelSource {
    name: "pool2d_f32",
    wgsl: include_str!("../../kernels/pool.wgsl"),
    dtype: DType::F32,
    entries: &["pool2d"],
    needs_f16: false,
    override_sets: || vec![vec![("MODE", 0.0)], vec![("MODE", 1.0)]],
};

pub static FAMILY: Family = Family { name: "pool", sources: &[&POOL_F32], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let (attrs, mode) = match req.op {
        Op::MaxPool(a) if req.outputs.len() == 1 => (Some(a.clone()), 0),
        Op::AveragePool(a) => (Some(a.clone()), 1),
        Op::GlobalMaxPool => (None, 0),
        Op::GlobalAveragePool => (None, 1),
        _ => return None,
    };
    if req.dtype(0)? != DType::F32 {
        return None;
    }
    let rank = req.input(0)?.shape.rank()?;
    if !(rank == 3 || rank == 4) {
        return None;
    }
    Some(Ok(Box::new(Pool { attrs, mode })))
}

struct Pool {
    /// `None`: global pooling.
    attrs: Option<PoolAttrs>,
    mode: u32,
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| GpuError::kernel("pool", "a dimension is 2^32 or more"))
}

impl GpuKernel for Pool {
    fn name(&self) -> &'static str {
        "pool"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "pool")?;
        let y = &io.outputs[0];
        let one_d = x.shape.len() == 3;
        let (planes, h, w) = if one_d {
            (x.shape[0] * x.shape[1], 1, x.shape[2])
        } else {
            (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
        };
        let (oh, ow) = if one_d { (1, y.shape[2]) } else { (y.shape[2], y.shape[3]) };
        let params: Vec<u32> = match &self.attrs {
            None => vec![u(planes)?, u(h)?, u(w)?, 1, 1, u(h)?, u(w)?, 1, 1, 0, 0, 0, 0, 1, 1, 0],
            Some(a) => {
                let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
                let spatial = if one_d { 1 } else { 2 };
                let (kh, kw, sh, sw, dh, dw) = if one_d {
                    (1, a.kernel_shape[0], 1, at(&a.strides, 0), 1, at(&a.dilations, 0))
                } else {
                    (
                        a.kernel_shape[0],
                        a.kernel_shape[1],
                        at(&a.strides, 0),
                        at(&a.strides, 1),
                        at(&a.dilations, 0),
                        at(&a.dilations, 1),
                    )
                };
                let ((pt, pb), (pl, pr)) = if one_d {
                    ((0, 0), pads_for(a.auto_pad, &a.pads, 0, spatial, w, ow, kw, sw, dw))
                } else {
                    (
                        pads_for(a.auto_pad, &a.pads, 0, spatial, h, oh, kh, sh, dh),
                        pads_for(a.auto_pad, &a.pads, 1, spatial, w, ow, kw, sw, dw),
                    )
                };
                vec![
                    u(planes)?,
                    u(h)?,
                    u(w)?,
                    u(oh)?,
                    u(ow)?,
                    u(kh)?,
                    u(kw)?,
                    u(sh)?,
                    u(sw)?,
                    u(pt)?,
                    u(pl)?,
                    u(pb)?,
                    u(pr)?,
                    u(dh)?,
                    u(dw)?,
                    a.count_include_pad as u32,
                ]
            }
        };
        rec.dispatch(
            &POOL_F32,
            "pool2d",
            &[("MODE", self.mode as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &params,
            grid_1d(y.len(), WG),
        )
    }
}
