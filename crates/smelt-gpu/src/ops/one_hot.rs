//! OneHot (kernels/one_hot.wgsl): i32, i64 or f32 indices, any 4- or 8-byte
//! values. Depth is the output's size along the new axis (known when recording),
//! so it is never read on the device; `values` ([off, on]) may be computed there.
//! Indices out of range give all-off rows, as on the CPU: no status words needed.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;

static ONE_HOT: KernelSource = KernelSource {
    name: "one_hot",
    wgsl: include_str!("../../kernels/one_hot.wgsl"),
    dtype: DType::U32,
    entries: &["one_hot"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for idx in 0..=2 {
            for words in [1, 2] {
                sets.push(overrides(idx, words));
            }
        }
        sets
    },
};

fn overrides(idx: u32, words: u32) -> Vec<(&'static str, f64)> {
    vec![("WG", WG as f64), ("IDX", idx as f64), ("WORDS", words as f64)]
}

pub static FAMILY: Family = Family { name: "one_hot", sources: &[&ONE_HOT], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::OneHot { axis } = *req.op else { return None };
    let idx = match req.dtype(0)? {
        DType::I32 => 0,
        DType::I64 => 1,
        DType::F32 => 2,
        _ => return None,
    };
    let words = match req.dtype(2)?.size() {
        4 => 1,
        8 => 2,
        _ => return None,
    };
    Some(Ok(Box::new(OneHot { axis, idx, words })))
}

struct OneHot {
    axis: i64,
    idx: u32,
    words: u32,
}

impl GpuKernel for OneHot {
    fn name(&self) -> &'static str {
        "one_hot"
    }

    fn reads_on_device(&self, index: usize) -> bool {
        index != 1
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let indices = io.input(0, "one_hot")?;
        let values = io.input(2, "one_hot")?;
        let y = &io.outputs[0];
        let rank = y.shape.len() as i64;
        let axis = if self.axis < 0 { self.axis + rank } else { self.axis };
        if axis < 0 || axis >= rank || indices.shape.len() as i64 != rank - 1 {
            return Err(GpuError::kernel(
                "one_hot",
                format!("axis {} for indices of shape {:?} and output {:?}", self.axis, indices.shape, y.shape),
            ));
        }
        if values.len() != 2 {
            return Err(GpuError::kernel("one_hot", format!("values must hold [off, on], got {:?}", values.shape)));
        }
        let axis = axis as usize;
        let depth = y.shape[axis];
        let inner: usize = y.shape[axis + 1..].iter().product();
        if y.is_empty() {
            return Ok(());
        }
        let u = |v: usize| {
            u32::try_from(v)
                .ok()
                .filter(|&v| v <= i32::MAX as u32)
                .ok_or_else(|| GpuError::kernel("one_hot", "2^31 or more elements"))
        };
        rec.dispatch(
            &ONE_HOT,
            "one_hot",
            &overrides(self.idx, self.words),
            &[Bind::Tensor(indices), Bind::Tensor(values), Bind::Tensor(y)],
            &[u(y.len())?, u(depth)?, u(inner)?],
            grid_1d(y.len(), WG),
        )
    }
}
