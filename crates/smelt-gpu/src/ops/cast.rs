//! Cast (kernels/cast.wgsl) from f32, f16, i32, i64, u32, bool, u8, i8 to f32,
//! f16, i32, i64, bool, u8, i8. f16 is converted by bit manipulation (no
//! shader-f16 needed); 1- and 2-byte outputs are packed, one word per thread.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;

static CAST: KernelSource = KernelSource {
    name: "cast",
    wgsl: include_str!("../../kernels/cast.wgsl"),
    dtype: DType::U32,
    entries: &["cast_elements"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for src in 0..=6 {
            for dst in 0..=5 {
                sets.push(vec![("SRC", src as f64), ("DST", dst as f64)]);
            }
        }
        sets
    },
};

pub static FAMILY: Family = Family { name: "cast", sources: &[&CAST], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    if !matches!(req.op, Op::Cast { .. } | Op::CastLike) {
        return None;
    }
    let src = match req.dtype(0)? {
        DType::F32 => 0,
        DType::I32 => 1,
        DType::I64 => 2,
        DType::Bool | DType::U8 => 3,
        DType::U32 => 4,
        DType::F16 => 5,
        DType::I8 => 6,
        _ => return None,
    };
    let dst = match req.outputs.first()? {
        DType::F32 => 0,
        DType::I32 => 1,
        DType::I64 => 2,
        DType::F16 => 3,
        DType::Bool => 4,
        // i8 keeps the same low byte as u8.
        DType::U8 | DType::I8 => 5,
        _ => return None,
    };
    Some(Ok(Box::new(Cast { src, dst })))
}

struct Cast {
    src: u32,
    dst: u32,
}

impl GpuKernel for Cast {
    fn name(&self) -> &'static str {
        "cast"
    }

    fn reads_on_device(&self, index: usize) -> bool {
        index == 0
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "cast")?;
        let y = &io.outputs[0];
        let u = |v: usize| u32::try_from(v).map_err(|_| GpuError::kernel("cast", "2^32 or more elements"));
        // Packed outputs (f16, bool, u8/i8): one thread per output word.
        let threads = match self.dst {
            3 => y.len().div_ceil(2),
            4 | 5 => y.len().div_ceil(4),
            _ => y.len(),
        };
        rec.dispatch(
            &CAST,
            "cast_elements",
            &[("SRC", self.src as f64), ("DST", self.dst as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &[u(threads)?, u(y.len())?],
            grid_1d(threads, WG),
        )
    }
}
