//! TopK along any axis (kernels/topk.wgsl) for f32, f16, i32 and i64: the k
//! largest or smallest values, sorted, equal values in index order, NaN above
//! every number (as smelt-cpu orders them). K is read on the host.
//!
//! Rows of at most [`SORT_N`] elements are sorted in shared memory, one
//! workgroup per row (bitonic). Longer rows take a rank pass that compares every
//! element of a row with every other (n^2 work per row, no limit on n or k). A
//! second pass copies the values through the indices.
//! Axes known at build time to be longer than [`MAX_AXIS`] go to the CPU, whose
//! selection is O(n) per row.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Dim, Op};

const WG: u32 = 256;
/// Longest axis (known at build time) the quadratic rank pass takes.
const MAX_AXIS: usize = 16384;
/// Longest row the shared-memory sort takes (kernels/topk.wgsl's SORT_N).
const SORT_N: usize = 1024;

static TOPK: KernelSource = KernelSource {
    name: "topk",
    wgsl: include_str!("../../kernels/topk.wgsl"),
    dtype: DType::U32,
    entries: &["topk_rank", "topk_sort", "topk_values"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for elem in 0..=3 {
            for largest in 0..=1 {
                sets.push(vec![("WG", WG as f64), ("ELEM", elem as f64), ("LARGEST", largest as f64)]);
            }
        }
        sets
    },
};

pub static FAMILY: Family = Family { name: "topk", sources: &[&TOPK], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::TopK { axis, largest, sorted: _ } = *req.op else { return None };
    let x = req.input(0)?;
    // Values are only moved and compared as bits, so f16 needs no shader-f16.
    let elem = match x.dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::I32 => 2,
        DType::I64 => 3,
        _ => return None,
    };
    if let Some(dims) = x.shape.dims() {
        let rank = dims.len().max(1) as i64;
        let a = if axis < 0 { axis + rank } else { axis };
        if let Some(Dim::Fixed(n)) = usize::try_from(a).ok().and_then(|a| dims.get(a)) {
            if *n > MAX_AXIS {
                return None;
            }
        }
    }
    Some(Ok(Box::new(TopK { axis, largest, elem })))
}

struct TopK {
    axis: i64,
    largest: bool,
    elem: u32,
}

fn err(m: impl Into<String>) -> GpuError {
    GpuError::kernel("topk", m)
}

impl GpuKernel for TopK {
    fn name(&self) -> &'static str {
        "topk"
    }

    fn reads_on_device(&self, index: usize) -> bool {
        // K is read on the host.
        index == 0
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "topk")?;
        let [values, indices] = io.outputs else {
            return Err(err(format!("expected 2 outputs, got {}", io.outputs.len())));
        };
        // A scalar is a row of one.
        let shape: Vec<usize> = if x.shape.is_empty() { vec![1] } else { x.shape.clone() };
        let rank = shape.len() as i64;
        let axis = if self.axis < 0 { self.axis + rank } else { self.axis };
        if axis < 0 || axis >= rank {
            return Err(err(format!("axis {} for rank {rank}", self.axis)));
        }
        let axis = axis as usize;
        let n = shape[axis];
        let k = match io.host(1).map(|t| t.to_i64_vec()).as_deref() {
            Some(&[k]) => usize::try_from(k).ok().filter(|&k| k <= n),
            _ => None,
        }
        .ok_or_else(|| err(format!("K must be one host-known value in [0, {n}]")))?;
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        if values.len() != outer * k * inner || indices.len() != values.len() {
            return Err(err(format!(
                "outputs {:?} and {:?} for K = {k} on {:?}",
                values.shape, indices.shape, x.shape
            )));
        }
        if k == 0 || x.is_empty() {
            return Ok(());
        }
        let u = |v: usize| u32::try_from(v).map_err(|_| err("2^32 or more elements"));
        let overrides = [("WG", WG as f64), ("ELEM", self.elem as f64), ("LARGEST", self.largest as u32 as f64)];
        let binds = [Bind::Tensor(x), Bind::Tensor(values), Bind::Tensor(indices)];
        if n <= SORT_N {
            let rows = outer * inner;
            // One workgroup per row.
            let groups = grid_1d(rows * WG as usize, WG);
            rec.dispatch(
                &TOPK,
                "topk_sort",
                &overrides,
                &binds,
                &[u(rows)?, u(n)?, u(inner)?, u(k)?, u(n.next_power_of_two().max(2))?],
                groups,
            )?;
        } else {
            let threads = x.len();
            let params = [u(threads)?, u(n)?, u(inner)?, u(k)?];
            rec.dispatch(&TOPK, "topk_rank", &overrides, &binds, &params, grid_1d(threads, WG))?;
        }
        let elements = values.len();
        let words = match self.elem {
            1 => elements.div_ceil(2),
            3 => elements * 2,
            _ => elements,
        };
        rec.dispatch(
            &TOPK,
            "topk_values",
            &overrides,
            &binds,
            &[u(words)?, u(n)?, u(inner)?, u(k)?, u(elements)?],
            grid_1d(words, WG),
        )
    }
}
