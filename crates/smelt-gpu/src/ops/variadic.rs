//! Sum, Mean, Max and Min of any number of inputs with broadcasting
//! (kernels/variadic.wgsl): Max and Min in f32 and f16, Sum and Mean in f32 (the
//! CPU sums f16 in f32 and rounds once, which per-input f16 steps would not
//! match). Two-input Max/Min are taken first by the elementwise family.

use super::broadcast::{broadcast_strides, right_align};
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op, VariadicOp};

const WG: u32 = 256;
const MAX_RANK: usize = 8;

fn sets() -> Vec<Vec<(&'static str, f64)>> {
    (0..=2).map(|op| vec![("WG", WG as f64), ("OP", op as f64)]).collect()
}

static FOLD_F32: KernelSource = KernelSource {
    name: "variadic_f32",
    wgsl: concat!("alias T = f32;\n", include_str!("../../kernels/variadic.wgsl")),
    dtype: DType::F32,
    entries: &["fold_input"],
    needs_f16: false,
    override_sets: sets,
};

static FOLD_F16: KernelSource = KernelSource {
    name: "variadic_f16",
    wgsl: concat!("enable f16;\nalias T = f16;\n", include_str!("../../kernels/variadic.wgsl")),
    dtype: DType::F16,
    entries: &["fold_input"],
    needs_f16: true,
    override_sets: sets,
};

pub static FAMILY: Family = Family { name: "variadic", sources: &[&FOLD_F32, &FOLD_F16], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::Variadic(op) = *req.op else { return None };
    let dtype = req.dtype(0)?;
    let code = match op {
        VariadicOp::Sum | VariadicOp::Mean => 0,
        VariadicOp::Max => 1,
        VariadicOp::Min => 2,
    };
    let source = match dtype {
        DType::F32 => &FOLD_F32,
        DType::F16 if code != 0 && req.ctx.supports_f16() => &FOLD_F16,
        _ => return None,
    };
    if req.inputs.is_empty() || (0..req.inputs.len()).any(|i| req.dtype(i) != Some(dtype)) {
        return None;
    }
    if req.outputs.first() != Some(&dtype) {
        return None;
    }
    Some(Ok(Box::new(Variadic { source, code, mean: op == VariadicOp::Mean })))
}

struct Variadic {
    source: &'static KernelSource,
    code: u32,
    mean: bool,
}

impl GpuKernel for Variadic {
    fn name(&self) -> &'static str {
        "variadic"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let y = &io.outputs[0];
        let count = io.inputs.len();
        let too_big = || GpuError::kernel("variadic", format!("output {:?} has more than {MAX_RANK} dims", y.shape));
        let n = u32::try_from(y.len()).map_err(|_| GpuError::kernel("variadic", "2^32 or more elements"))?;
        let dims = right_align(&y.shape, MAX_RANK, 1).ok_or_else(too_big)?;
        for k in 0..count {
            let x = io.input(k, "variadic")?;
            let strides = broadcast_strides(&x.shape, &y.shape).ok_or_else(|| {
                GpuError::kernel("variadic", format!("input {k} {:?} does not broadcast to {:?}", x.shape, y.shape))
            })?;
            let divisor = if self.mean && k + 1 == count { count as f32 } else { 1.0 };
            let mut params = vec![n, (k > 0) as u32, divisor.to_bits()];
            params.extend(right_align(&strides, MAX_RANK, 0).ok_or_else(too_big)?);
            params.extend(&dims);
            rec.dispatch(
                self.source,
                "fold_input",
                &[("WG", WG as f64), ("OP", self.code as f64)],
                &[Bind::Tensor(x), Bind::Tensor(y)],
                &params,
                grid_1d(y.len(), WG),
            )?;
        }
        Ok(())
    }
}
