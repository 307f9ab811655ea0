//! GatherElements, GatherND (kernels/indexed_gather.wgsl) and ScatterElements,
//! ScatterND (kernels/indexed_scatter.wgsl, kernels/scatter_nd_last.wgsl) for 4-
//! and 8-byte data with i32 or i64 indices. Scatters with a reduction (add, mul,
//! max, min) take f32, i32 and i64; without one any 4- or 8-byte element.
//! Results are deterministic and equal to the CPU's, duplicate indices included:
//! each output element folds in its updates in the CPU's order (ScatterND without
//! a reduction marks each slice's last writer instead; the WGSL files say what
//! each costs). An index out of range fails the run with the CPU's message,
//! through the status words: each indexed axis registers its own message, since
//! the CPU names the axis and its size.

use super::broadcast::{contiguous_strides, right_align};
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op, ScatterReduction};

const WG: u32 = 256;
const MAX_RANK: usize = 8;

static GATHER: KernelSource = KernelSource {
    name: "indexed_gather",
    wgsl: concat!(include_str!("../../kernels/indexed_gather.wgsl"), include_str!("../../kernels/status.wgsl")),
    dtype: DType::U32,
    entries: &["gather_elements", "gather_nd"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for idx64 in [false, true] {
            for words in [1, 2] {
                sets.push(gather_overrides(idx64, words));
            }
        }
        sets
    },
};

static SCATTER: KernelSource = KernelSource {
    name: "indexed_scatter",
    wgsl: concat!(include_str!("../../kernels/indexed_scatter.wgsl"), include_str!("../../kernels/status.wgsl")),
    dtype: DType::U32,
    entries: &["scatter_elements", "scatter_nd"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for idx64 in [false, true] {
            // No reduction moves words whatever the dtype: ELEM says only the size.
            for elem in [1, 2] {
                sets.push(scatter_overrides(idx64, elem, 0));
            }
            for elem in 0..=2 {
                for red in 1..=4 {
                    sets.push(scatter_overrides(idx64, elem, red));
                }
            }
        }
        sets
    },
};

/// ScatterND with no reduction, linear in the work (kernels/scatter_nd_last.wgsl).
static SCATTER_ND_LAST: KernelSource = KernelSource {
    name: "scatter_nd_last",
    wgsl: concat!(include_str!("../../kernels/scatter_nd_last.wgsl"), include_str!("../../kernels/status.wgsl")),
    dtype: DType::U32,
    entries: &["scatter_nd_clear", "scatter_nd_mark", "scatter_nd_write"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for idx64 in [false, true] {
            for words in [1, 2] {
                sets.push(gather_overrides(idx64, words));
            }
        }
        sets
    },
};

fn gather_overrides(idx64: bool, words: u32) -> Vec<(&'static str, f64)> {
    vec![("WG", WG as f64), ("IDX64", idx64 as u32 as f64), ("WORDS", words as f64)]
}

fn scatter_overrides(idx64: bool, elem: u32, red: u32) -> Vec<(&'static str, f64)> {
    vec![("WG", WG as f64), ("IDX64", idx64 as u32 as f64), ("ELEM", elem as f64), ("RED", red as f64)]
}

pub static FAMILY: Family = Family { name: "indexed", sources: &[&GATHER, &SCATTER, &SCATTER_ND_LAST], build };

/// What the node does, with its attributes.
#[derive(Clone, Copy)]
enum Kind {
    GatherElements { axis: i64 },
    GatherNd { batch_dims: usize },
    ScatterElements { axis: i64 },
    ScatterNd,
}

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let (kind, reduction) = match *req.op {
        Op::GatherElements { axis } => (Kind::GatherElements { axis }, ScatterReduction::None),
        Op::GatherND { batch_dims } => (Kind::GatherNd { batch_dims }, ScatterReduction::None),
        Op::ScatterElements { axis, reduction } => (Kind::ScatterElements { axis }, reduction),
        Op::ScatterND { reduction } => (Kind::ScatterNd, reduction),
        _ => return None,
    };
    let data = req.input(0)?;
    let words = match data.dtype.size() {
        4 => 1,
        8 => 2,
        _ => return None,
    };
    let idx64 = match req.dtype(1)? {
        DType::I64 => true,
        DType::I32 => false,
        _ => return None,
    };
    let is_scatter = matches!(kind, Kind::ScatterElements { .. } | Kind::ScatterNd);
    if is_scatter && req.dtype(2)? != data.dtype {
        return None;
    }
    // Reductions do arithmetic, so they know the dtype; no reduction moves words.
    let (elem, red) = match (reduction, data.dtype) {
        (ScatterReduction::None, _) => (words, 0),
        (r, DType::F32 | DType::I32 | DType::I64) => {
            let elem = match data.dtype {
                DType::F32 => 0,
                DType::I32 => 1,
                _ => 2,
            };
            let red = match r {
                ScatterReduction::Add => 1,
                ScatterReduction::Mul => 2,
                ScatterReduction::Max => 3,
                _ => 4,
            };
            (elem, red)
        }
        _ => return None,
    };
    if data.constant.as_ref().is_some_and(|t| t.bytes().len() as u64 > req.ctx.max_binding()) {
        return None;
    }
    Some(Ok(Box::new(Indexed { kind, idx64, words, elem, red })))
}

struct Indexed {
    kind: Kind,
    idx64: bool,
    /// u32 words per element.
    words: u32,
    /// Scatters: the ELEM and RED overrides (see kernels/indexed_scatter.wgsl).
    elem: u32,
    red: u32,
}

fn u(v: usize, kernel: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| GpuError::kernel(kernel, "2^32 or more elements"))
}

/// `axis` counted from the front of `rank` dims.
fn normalize_axis(kernel: &'static str, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(GpuError::kernel(kernel, format!("axis {axis} for rank {rank}")));
    }
    Ok(a as usize)
}

/// Registers the message for an index out of range along `axis` of `size`, as the
/// CPU says it (an i64 index beyond ±2^31 shows as its low word).
fn range_code(rec: &mut Recorder, axis: usize, size: usize) -> u32 {
    rec.error_code(format!("index {{value}} is out of range for axis {axis} of size {size}"))
}

impl GpuKernel for Indexed {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::GatherElements { .. } => "gather_elements",
            Kind::GatherNd { .. } => "gather_nd",
            Kind::ScatterElements { .. } => "scatter_elements",
            Kind::ScatterNd => "scatter_nd",
        }
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let name = self.name();
        let x = io.input(0, name)?;
        let idx = io.input(1, name)?;
        let y = &io.outputs[0];
        let (rank, q) = (x.shape.len(), idx.shape.len());
        let too_big = || GpuError::kernel(name, format!("rank {rank} is more than {MAX_RANK}"));
        match self.kind {
            Kind::GatherElements { axis } | Kind::ScatterElements { axis } => {
                let axis = normalize_axis(name, axis, rank)?;
                let fits =
                    q == rank && idx.shape.iter().zip(&x.shape).enumerate().all(|(k, (&i, &d))| k == axis || i <= d);
                if !fits {
                    return Err(GpuError::kernel(
                        name,
                        format!(
                            "indices of shape {:?} do not fit data of shape {:?} off axis {axis}",
                            idx.shape, x.shape
                        ),
                    ));
                }
                let code = range_code(rec, axis, x.shape[axis]);
                let strides = contiguous_strides(&x.shape);
                if let Kind::GatherElements { .. } = self.kind {
                    let mut off_axis = strides.clone();
                    off_axis[axis] = 0;
                    let mut params = vec![u(y.len(), name)?];
                    params.extend(right_align(&idx.shape, MAX_RANK, 1).ok_or_else(too_big)?);
                    params.extend(right_align(&off_axis, MAX_RANK, 0).ok_or_else(too_big)?);
                    params.extend([u(x.shape[axis], name)?, u(strides[axis], name)?, code]);
                    return rec.dispatch(
                        &GATHER,
                        "gather_elements",
                        &gather_overrides(self.idx64, self.words),
                        &[Bind::Tensor(x), Bind::Tensor(idx), Bind::Tensor(y), Bind::Status],
                        &params,
                        grid_1d(y.len(), WG),
                    );
                }
                let updates = io.input(2, name)?;
                if updates.shape != idx.shape {
                    return Err(GpuError::kernel(
                        name,
                        format!("updates of shape {:?} for indices of shape {:?}", updates.shape, idx.shape),
                    ));
                }
                let mut params = vec![u(y.len(), name)?];
                params.extend(right_align(&x.shape, MAX_RANK, 1).ok_or_else(too_big)?);
                params.extend(right_align(&idx.shape, MAX_RANK, 1).ok_or_else(too_big)?);
                params.extend(right_align(&contiguous_strides(&idx.shape), MAX_RANK, 0).ok_or_else(too_big)?);
                // The axis's slot among p[1..=8] once right-aligned.
                params.extend([(1 + MAX_RANK - rank + axis) as u32, code]);
                self.scatter(rec, "scatter_elements", x, idx, updates, y, &params)
            }
            Kind::GatherNd { batch_dims: b } => {
                let k = idx.shape.last().copied().unwrap_or(0);
                if q == 0 || b >= q.min(rank) || x.shape[..b] != idx.shape[..b] || k > rank - b || k > MAX_RANK {
                    return Err(GpuError::kernel(
                        name,
                        format!(
                            "indices of shape {:?} with batch_dims {b} cannot index data of shape {:?}",
                            idx.shape, x.shape
                        ),
                    ));
                }
                let strides = contiguous_strides(&x.shape);
                let slice: usize = x.shape[b + k..].iter().product();
                let per_batch: usize = idx.shape[b..q - 1].iter().product();
                let batch_size: usize = x.shape[b..].iter().product();
                let mut params = vec![u(y.len(), name)?, u(slice.max(1), name)?, k as u32];
                params.extend([u(per_batch.max(1), name)?, u(batch_size, name)?]);
                params.extend(self.axis_words(rec, name, &x.shape, b, &strides[b..b + k])?);
                rec.dispatch(
                    &GATHER,
                    "gather_nd",
                    &gather_overrides(self.idx64, self.words),
                    &[Bind::Tensor(x), Bind::Tensor(idx), Bind::Tensor(y), Bind::Status],
                    &params,
                    grid_1d(y.len(), WG),
                )
            }
            Kind::ScatterNd => {
                let updates = io.input(2, name)?;
                let k = idx.shape.last().copied().unwrap_or(0);
                if q == 0 || k > rank || k > MAX_RANK {
                    return Err(GpuError::kernel(
                        name,
                        format!("indices of shape {:?} cannot index data of shape {:?}", idx.shape, x.shape),
                    ));
                }
                let slice: usize = x.shape[k..].iter().product();
                let tuples: usize = idx.shape[..q - 1].iter().product();
                let want: Vec<usize> = idx.shape[..q - 1].iter().chain(&x.shape[k..]).copied().collect();
                if updates.shape != want {
                    return Err(GpuError::kernel(
                        name,
                        format!("updates of shape {:?} where these indices need {want:?}", updates.shape),
                    ));
                }
                // Strides counted in slices: the position of a slice among those of
                // the first k dims.
                let strides = contiguous_strides(&x.shape[..k]);
                let mut params = vec![u(y.len(), name)?, u(slice.max(1), name)?, k as u32, u(tuples, name)?];
                params.extend(self.axis_words(rec, name, &x.shape, 0, &strides)?);
                if self.red != 0 {
                    return self.scatter(rec, "scatter_nd", x, idx, updates, y, &params);
                }
                // No reduction: the last tuple naming a slice wins, found in a pass
                // over the tuples (one scratch word per slice position) instead of
                // every output element scanning every tuple.
                let positions = x.shape[..k].iter().product::<usize>();
                let last = rec.ctx().upload("scatter_nd last writers", &vec![0u8; positions.max(1) * 4])?;
                let overrides = gather_overrides(self.idx64, self.words);
                let binds = [
                    Bind::Tensor(x),
                    Bind::Tensor(idx),
                    Bind::Tensor(updates),
                    Bind::Tensor(y),
                    Bind::Status,
                    Bind::Range(&last, 0, positions.max(1) as u64 * 4),
                ];
                for (entry, threads) in [
                    ("scatter_nd_clear", positions),
                    ("scatter_nd_mark", tuples),
                    ("scatter_nd_write", y.len() * self.words as usize),
                ] {
                    rec.dispatch(&SCATTER_ND_LAST, entry, &overrides, &binds, &params, grid_1d(threads, WG))?;
                }
                Ok(())
            }
        }
    }
}

impl Indexed {
    /// Sizes[8], steps[8] and failure codes[8] of the `steps.len()` indexed axes
    /// from `first` (a step is what one index along that axis adds to the offset).
    fn axis_words(
        &self,
        rec: &mut Recorder,
        name: &'static str,
        shape: &[usize],
        first: usize,
        steps: &[usize],
    ) -> Result<Vec<u32>> {
        let mut words = [[0u32; MAX_RANK]; 3];
        for (j, &step) in steps.iter().enumerate() {
            let axis = first + j;
            words[0][j] = u(shape[axis], name)?;
            words[1][j] = u(step, name)?;
            words[2][j] = range_code(rec, axis, shape[axis]);
        }
        Ok(words.concat())
    }

    #[allow(clippy::too_many_arguments)]
    fn scatter(
        &self,
        rec: &mut Recorder,
        entry: &'static str,
        x: &crate::GpuTensor,
        idx: &crate::GpuTensor,
        updates: &crate::GpuTensor,
        y: &crate::GpuTensor,
        params: &[u32],
    ) -> Result<()> {
        rec.dispatch(
            &SCATTER,
            entry,
            &scatter_overrides(self.idx64, self.elem, self.red),
            &[Bind::Tensor(x), Bind::Tensor(idx), Bind::Tensor(updates), Bind::Tensor(y), Bind::Status],
            params,
            grid_1d(y.len(), WG),
        )
    }
}
