//! Gather along any axis (kernels/gather.wgsl) for 1-, 2-, 4- and 8-byte data
//! with i32 or i64 indices (1- and 2-byte elements packed in 32-bit words). Constant tables larger than one binding go to the CPU. An index
//! out of range fails the run with the CPU's message (through the status words).

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;

static GATHER: KernelSource = KernelSource {
    name: "gather",
    wgsl: concat!(include_str!("../../kernels/gather.wgsl"), include_str!("../../kernels/status.wgsl")),
    dtype: DType::U32,
    entries: &["gather"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for idx64 in [0.0, 1.0] {
            for esize in [1.0, 2.0, 4.0] {
                sets.push(vec![("IDX64", idx64), ("ESIZE", esize)]);
            }
        }
        sets
    },
};

pub static FAMILY: Family = Family { name: "gather", sources: &[&GATHER], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::Gather { axis } = *req.op else { return None };
    let data = req.input(0)?;
    let idx64 = match req.dtype(1)? {
        DType::I64 => true,
        DType::I32 => false,
        _ => return None,
    };
    if data.constant.as_ref().is_some_and(|t| t.bytes().len() as u64 > req.ctx.max_binding()) {
        return None;
    }
    Some(Ok(Box::new(Gather { axis, idx64 })))
}

struct Gather {
    axis: i64,
    idx64: bool,
}

impl GpuKernel for Gather {
    fn name(&self) -> &'static str {
        "gather"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "gather")?;
        let idx = io.input(1, "gather")?;
        let y = &io.outputs[0];
        let rank = x.shape.len() as i64;
        let axis = if self.axis < 0 { self.axis + rank } else { self.axis };
        if axis < 0 || axis >= rank {
            return Err(GpuError::kernel("gather", format!("axis {} for rank {rank}", self.axis)));
        }
        let axis = axis as usize;
        let size = x.dtype.size();
        let inner: usize = x.shape[axis + 1..].iter().product();
        // 4- and 8-byte data move as words; 1- and 2-byte data as packed elements.
        let (esize, inner, threads) = match size {
            1 | 2 => (size, inner, y.len().div_ceil(4 / size)),
            _ => (4, inner * (size / 4), y.len() * (size / 4)),
        };
        let u = |v: usize| u32::try_from(v).map_err(|_| GpuError::kernel("gather", "2^32 or more elements"));
        // As the CPU says it (an i64 index beyond ±2^31 shows as its low word).
        let code = rec.error_code(format!("index {{value}} is out of range for axis {axis} of size {}", x.shape[axis]));
        rec.dispatch(
            &GATHER,
            "gather",
            &[("IDX64", self.idx64 as u32 as f64), ("ESIZE", esize as f64)],
            &[Bind::Tensor(x), Bind::Tensor(idx), Bind::Tensor(y), Bind::Status],
            &[u(threads)?, u(x.shape[axis])?, u(idx.len())?, u(inner)?, code, u(y.len())?],
            grid_1d(threads, WG),
        )
    }
}
