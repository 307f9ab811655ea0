//! CumSum along an axis given on the host (kernels/cumsum.wgsl) for f32, i32 and
//! i64; other types go to the CPU.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;

static CUMSUM: KernelSource = KernelSource {
    name: "cumsum",
    wgsl: include_str!("../../kernels/cumsum.wgsl"),
    dtype: DType::U32,
    entries: &["cumsum"],
    needs_f16: false,
    override_sets: || (0..=2).map(|e| vec![("WG", WG as f64), ("ELEM", e as f64)]).collect(),
};

pub static FAMILY: Family = Family { name: "cumsum", sources: &[&CUMSUM], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::CumSum { exclusive, reverse } = *req.op else { return None };
    let dtype = req.dtype(0)?;
    let elem = match dtype {
        DType::F32 => 0,
        DType::I32 => 1,
        DType::I64 => 2,
        _ => return None,
    };
    if req.outputs.first() != Some(&dtype) {
        return None;
    }
    Some(Ok(Box::new(CumSum { elem, exclusive, reverse })))
}

struct CumSum {
    elem: u32,
    exclusive: bool,
    reverse: bool,
}

fn err(m: impl Into<String>) -> GpuError {
    GpuError::kernel("cumsum", m)
}

impl GpuKernel for CumSum {
    fn name(&self) -> &'static str {
        "cumsum"
    }

    fn reads_on_device(&self, index: usize) -> bool {
        // The axis is read on the host.
        index == 0
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "cumsum")?;
        let y = &io.outputs[0];
        let axis = match io.host(1).map(|t| t.to_i64_vec()).as_deref() {
            Some(&[a]) => a,
            Some(other) => return Err(err(format!("axis must hold one value, got {other:?}"))),
            None => return Err(err("the axis is not known on the host")),
        };
        // A scalar is a one-element vector.
        let shape = if x.shape.is_empty() { vec![1] } else { x.shape.clone() };
        let rank = shape.len() as i64;
        let a = if axis < 0 { axis + rank } else { axis };
        if a < 0 || a >= rank {
            return Err(err(format!("axis {axis} out of range for rank {rank}")));
        }
        let a = a as usize;
        let (n, inner) = (shape[a], shape[a + 1..].iter().product::<usize>());
        if n == 0 || y.is_empty() {
            return Ok(());
        }
        let lines = y.len() / n;
        let u = |v: usize| u32::try_from(v).map_err(|_| err("a size is 2^32 or more"));
        rec.dispatch(
            &CUMSUM,
            "cumsum",
            &[("WG", WG as f64), ("ELEM", self.elem as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &[u(lines)?, u(n)?, u(inner)?, self.exclusive as u32, self.reverse as u32],
            grid_1d(lines, WG),
        )
    }
}
