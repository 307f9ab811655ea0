//! Where(condition, x, y) with broadcasting (kernels/where.wgsl) for x and y of
//! 1, 2, 4 or 8 bytes per element; 1- and 2-byte elements are packed in 32-bit
//! words, one output word per thread.

use super::broadcast::{broadcast_strides, coalesce};
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;
const MAX_RANK: usize = 8;

static WHERE: KernelSource = KernelSource {
    name: "where",
    wgsl: include_str!("../../kernels/where.wgsl"),
    dtype: DType::U32,
    entries: &["where_select"],
    needs_f16: false,
    override_sets: || [1.0, 2.0, 4.0, 8.0].into_iter().map(|e| vec![("WG", 256.0), ("ESIZE", e)]).collect(),
};

pub static FAMILY: Family = Family { name: "where", sources: &[&WHERE], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    if !matches!(req.op, Op::Where) || req.dtype(0)? != DType::Bool {
        return None;
    }
    let t = req.dtype(1)?;
    if req.dtype(2)? != t {
        return None;
    }
    Some(Ok(Box::new(Where)))
}

struct Where;

impl GpuKernel for Where {
    fn name(&self) -> &'static str {
        "where"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let (c, a, b) = (io.input(0, "where")?, io.input(1, "where")?, io.input(2, "where")?);
        let y = &io.outputs[0];
        let e = || {
            GpuError::kernel(
                "where",
                format!("{:?}, {:?}, {:?} do not broadcast to {:?}", c.shape, a.shape, b.shape, y.shape),
            )
        };
        let sc = broadcast_strides(&c.shape, &y.shape).ok_or_else(e)?;
        let sa = broadcast_strides(&a.shape, &y.shape).ok_or_else(e)?;
        let sb = broadcast_strides(&b.shape, &y.shape).ok_or_else(e)?;
        let (dims, strides) = coalesce(&y.shape, &[sc, sa, sb]);
        if dims.len() > MAX_RANK {
            return Err(GpuError::kernel("where", format!("more than {MAX_RANK} independent dims")));
        }
        let pad = MAX_RANK - dims.len();
        let size = y.dtype.size();
        // Threads: one per output word (per element for 4-byte elements).
        let threads = match size {
            1 | 2 => y.len().div_ceil(4 / size),
            _ => y.len() * (size / 4),
        };
        let u = |v: usize| u32::try_from(v).map_err(|_| GpuError::kernel("where", "2^32 or more elements"));
        let mut params = vec![u(threads)?, u(y.len())?];
        params.extend(std::iter::repeat_n(1u32, pad).chain(dims.iter().map(|&v| v as u32)));
        for s in &strides {
            params.extend(std::iter::repeat_n(0u32, pad).chain(s.iter().map(|&v| v as u32)));
        }
        rec.dispatch(
            &WHERE,
            "where_select",
            &[("WG", WG as f64), ("ESIZE", size as f64)],
            &[Bind::Tensor(c), Bind::Tensor(a), Bind::Tensor(b), Bind::Tensor(y)],
            &params,
            grid_1d(threads, WG),
        )
    }
}
