//! Hardmax along one axis (kernels/hardmax.wgsl), opset 13 and the older
//! flattened (`coerce_2d`) form, in f32, and in f16 where the adapter has
//! `SHADER_F16`.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;

static HARDMAX_F32: KernelSource = KernelSource {
    name: "hardmax_f32",
    wgsl: concat!("alias T = f32;\n", include_str!("../../kernels/hardmax.wgsl")),
    dtype: DType::F32,
    entries: &["hardmax"],
    needs_f16: false,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

static HARDMAX_F16: KernelSource = KernelSource {
    name: "hardmax_f16",
    wgsl: concat!("enable f16;\nalias T = f16;\n", include_str!("../../kernels/hardmax.wgsl")),
    dtype: DType::F16,
    entries: &["hardmax"],
    needs_f16: true,
    override_sets: || vec![vec![("WG", WG as f64)]],
};

pub static FAMILY: Family = Family { name: "hardmax", sources: &[&HARDMAX_F32, &HARDMAX_F16], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::Hardmax { axis, coerce_2d } = *req.op else { return None };
    let dtype = req.dtype(0)?;
    let source = match dtype {
        DType::F32 => &HARDMAX_F32,
        DType::F16 if req.ctx.supports_f16() => &HARDMAX_F16,
        _ => return None,
    };
    if req.outputs.first() != Some(&dtype) {
        return None;
    }
    Some(Ok(Box::new(Hardmax { source, axis, coerce_2d })))
}

struct Hardmax {
    source: &'static KernelSource,
    axis: i64,
    coerce_2d: bool,
}

impl GpuKernel for Hardmax {
    fn name(&self) -> &'static str {
        "hardmax"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "hardmax")?;
        let y = &io.outputs[0];
        if x.is_empty() {
            return Ok(());
        }
        // A scalar is a one-element vector.
        let shape = if x.shape.is_empty() { vec![1] } else { x.shape.clone() };
        let rank = shape.len() as i64;
        let a = if self.axis < 0 { self.axis + rank } else { self.axis };
        if a < 0 || a >= rank {
            return Err(GpuError::kernel("hardmax", format!("axis {} out of range for rank {rank}", self.axis)));
        }
        let a = a as usize;
        let (n, inner) = if self.coerce_2d {
            (shape[a..].iter().product::<usize>(), 1)
        } else {
            (shape[a], shape[a + 1..].iter().product::<usize>())
        };
        let rows = x.len() / n;
        let u = |v: usize| u32::try_from(v).map_err(|_| GpuError::kernel("hardmax", "a size is 2^32 or more"));
        rec.dispatch(
            self.source,
            "hardmax",
            &[("WG", WG as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &[u(rows)?, u(n)?, u(inner)?],
            grid_1d(rows * WG as usize, WG),
        )
    }
}
