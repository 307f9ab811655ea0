//! Index-mapping copies on one kernel (kernels/layout.wgsl): Tile, Pad (constant,
//! reflect, edge, wrap), DepthToSpace (DCR and CRD), SpaceToDepth and Trilu, for
//! elements of every size: 4- and 8-byte ones as 32-bit words, 1- and 2-byte
//! ones packed in words (one whole output word per thread). Repeats, pads, axes and k
//! are read on the host (shape inputs); Pad's constant value must be a constant.

use super::broadcast::contiguous_strides;
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{Op, PadMode};

const WG: u32 = 256;
const MAX_RANK: usize = 8;
/// Trilu's row/column slot when there is no Trilu (matches no dim).
const NO_DIM: u32 = 99;

static LAYOUT: KernelSource = KernelSource {
    name: "layout",
    wgsl: include_str!("../../kernels/layout.wgsl"),
    dtype: smelt_ir::DType::U32,
    entries: &["layout_copy"],
    needs_f16: false,
    override_sets: || {
        let mut sets = Vec::new();
        for esize in [1.0, 2.0, 4.0] {
            for m in 0..=5 {
                sets.push(vec![("WG", WG as f64), ("MODE", m as f64), ("ESIZE", esize)]);
            }
        }
        sets
    },
};

pub static FAMILY: Family = Family { name: "layout", sources: &[&LAYOUT], build };

#[derive(Clone, Copy)]
enum Kind {
    Tile,
    Pad(PadMode),
    DepthToSpace { blocksize: usize, column_row: bool },
    SpaceToDepth { blocksize: usize },
    Trilu { upper: bool },
}

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let kind = match *req.op {
        Op::Tile => Kind::Tile,
        Op::Pad { mode } => {
            // The fill value is baked into the parameters, so it must be known now.
            if req.input(2).is_some() && req.constant(2).is_none() {
                return None;
            }
            Kind::Pad(mode)
        }
        Op::DepthToSpace { blocksize, column_row } => Kind::DepthToSpace { blocksize, column_row },
        Op::SpaceToDepth { blocksize } => Kind::SpaceToDepth { blocksize },
        Op::Trilu { upper } => Kind::Trilu { upper },
        _ => return None,
    };
    let dtype = req.dtype(0)?;
    if req.outputs.first() != Some(&dtype) {
        return None;
    }
    // The 8 kernel dims hold the rank, plus one for the two words of 8-byte elements.
    let rank = req.input(0)?.shape.rank()?;
    let needed = match kind {
        Kind::DepthToSpace { .. } | Kind::SpaceToDepth { .. } => 6,
        _ => rank,
    } + (dtype.size() == 8) as usize;
    if needed > MAX_RANK {
        return None;
    }
    let constant = req.constant(2).cloned();
    Some(Ok(Box::new(Layout { kind, constant })))
}

struct Layout {
    kind: Kind,
    /// Pad's constant value, when given.
    constant: Option<std::sync::Arc<smelt_ir::Tensor>>,
}

fn err(m: impl Into<String>) -> GpuError {
    GpuError::kernel("layout", m)
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| err("a size is 2^32 or more"))
}

/// One view of the copy: per output dim (outermost first) its size, the input's
/// size and stride (elements) along it, and the signed leading pad.
struct View {
    out: Vec<usize>,
    input: Vec<usize>,
    strides: Vec<usize>,
    begins: Vec<i64>,
    mode: u32,
    /// First input element read (past Pad's cropped elements).
    base: usize,
}

impl View {
    /// The input read at the output's coordinates through `strides` (a permutation).
    fn strided(out: Vec<usize>, strides: Vec<usize>) -> View {
        let n = out.len();
        View { input: out.clone(), out, strides, begins: vec![0; n], mode: 0, base: 0 }
    }
}

fn host_values(io: &NodeIo, i: usize, what: &str) -> Result<Vec<i64>> {
    io.host(i).map(|t| t.to_i64_vec()).ok_or_else(|| err(format!("{what} is not known on the host")))
}

fn axis_of(axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank {
        return Err(err(format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(a as usize)
}

impl Layout {
    fn view(&self, io: &NodeIo, x: &[usize], y: &[usize]) -> Result<View> {
        let xs = contiguous_strides(x);
        match self.kind {
            Kind::Tile => {
                Ok(View { out: y.to_vec(), input: x.to_vec(), strides: xs, begins: vec![0; x.len()], mode: 1, base: 0 })
            }
            Kind::Trilu { .. } => Ok(View::strided(y.to_vec(), xs)),
            Kind::Pad(mode) => {
                let pads = host_values(io, 1, "Pad pads")?;
                let axes: Vec<usize> = match io.host(3) {
                    Some(t) => t.to_i64_vec().into_iter().map(|a| axis_of(a, x.len())).collect::<Result<_>>()?,
                    None => (0..x.len()).collect(),
                };
                if pads.len() != 2 * axes.len() {
                    return Err(err(format!("pads {pads:?} must hold 2 values per padded axis {axes:?}")));
                }
                // Negative pads crop; the modes then work on the kept elements.
                let mut begins = vec![0; x.len()];
                let mut kept = x.to_vec();
                let mut base = 0;
                for (i, &a) in axes.iter().enumerate() {
                    let (begin, end) = (pads[i], pads[axes.len() + i]);
                    let crop = |p: i64| if p < 0 { p.unsigned_abs() as usize } else { 0 };
                    kept[a] = x[a].checked_sub(crop(begin).saturating_add(crop(end))).ok_or_else(|| {
                        err(format!("pads {begin} and {end} crop more than the {} elements of axis {a}", x[a]))
                    })?;
                    base += crop(begin) * xs[a];
                    begins[a] = begin.max(0);
                }
                let mode = match mode {
                    PadMode::Constant => 2,
                    PadMode::Reflect => 3,
                    PadMode::Edge => 4,
                    PadMode::Wrap => 5,
                };
                if mode != 2 && kept.iter().zip(y).any(|(&n, &m)| n == 0 && m > 0) {
                    return Err(err(format!("cannot pad an axis with no kept elements ({x:?}, pads {pads:?})")));
                }
                Ok(View { out: y.to_vec(), input: kept, strides: xs, begins, mode, base })
            }
            Kind::DepthToSpace { blocksize: b, column_row } => {
                let [n, c, h, w] = *x else { return Err(err(format!("DepthToSpace needs rank 4, got {x:?}"))) };
                if b == 0 || c % (b * b) != 0 {
                    return Err(err(format!("{c} channels do not split into blocks of {b}x{b}")));
                }
                let c2 = c / (b * b);
                let (hw, chw) = (h * w, c * h * w);
                // Output [N, C', H, b, W, b]; input strides of each of those dims.
                let strides = if column_row {
                    vec![chw, b * b * hw, w, b * hw, 1, hw]
                } else {
                    vec![chw, hw, w, b * c2 * hw, 1, c2 * hw]
                };
                Ok(View::strided(vec![n, c2, h, b, w, b], strides))
            }
            Kind::SpaceToDepth { blocksize: b } => {
                let [n, c, h, w] = *x else { return Err(err(format!("SpaceToDepth needs rank 4, got {x:?}"))) };
                if b == 0 || h % b != 0 || w % b != 0 {
                    return Err(err(format!("{h}x{w} does not split into blocks of {b}x{b}")));
                }
                // Output [N, b, b, C, H/b, W/b]; input strides of each of those dims.
                let strides = vec![c * h * w, w, 1, h * w, b * w, b];
                Ok(View::strided(vec![n, b, b, c, h / b, w / b], strides))
            }
        }
    }
}

impl GpuKernel for Layout {
    fn name(&self) -> &'static str {
        "layout"
    }

    fn reads_on_device(&self, index: usize) -> bool {
        index == 0
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "layout")?;
        let y = &io.outputs[0];
        if y.is_empty() {
            return Ok(());
        }
        let mut v = self.view(io, &x.shape, &y.shape)?;
        if v.out.iter().product::<usize>() != y.len() {
            return Err(err(format!("view {:?} does not cover the output {:?}", v.out, y.shape)));
        }
        let size = x.dtype.size();
        // Units the kernel moves per element: words (2 for 8-byte elements), or
        // one packed element for 1- and 2-byte ones.
        let words = (size / 4).max(1);
        let esize = if size < 4 { size } else { 4 };
        // Trilu's coordinates are the last two element dims.
        let rank = v.out.len();
        let (mut row, mut col) = (NO_DIM, NO_DIM);
        let (mut tri, mut k) = (0u32, 0i64);
        if let Kind::Trilu { upper } = self.kind {
            if rank < 2 {
                return Err(err(format!("Trilu needs rank 2 or more, got {:?}", x.shape)));
            }
            tri = if upper { 2 } else { 1 };
            k = match io.host(1) {
                Some(t) => *t.to_i64_vec().first().ok_or_else(|| err("Trilu k is empty"))?,
                None => 0,
            };
        }
        if words == 2 {
            v.strides.iter_mut().for_each(|s| *s *= 2);
            v.out.push(2);
            v.input.push(2);
            v.strides.push(1);
            v.begins.push(0);
        }
        if v.out.len() > MAX_RANK {
            return Err(err(format!("more than {MAX_RANK} dims")));
        }
        let pad = MAX_RANK - v.out.len();
        if tri != 0 {
            row = (pad + rank - 2) as u32;
            col = (pad + rank - 1) as u32;
        }
        let (lo, hi) = match &self.constant {
            Some(t) if !t.bytes().is_empty() => {
                let b = t.bytes();
                if b.len() != size || t.dtype() != x.dtype {
                    return Err(err(format!("Pad constant_value must be one {} element", x.dtype)));
                }
                // A packed element's bytes sit in the low bits of the word.
                let word = |i: usize| {
                    let mut w = [0u8; 4];
                    let part = &b[4 * i..(4 * i + 4).min(b.len())];
                    w[..part.len()].copy_from_slice(part);
                    u32::from_le_bytes(w)
                };
                (word(0), if words == 2 { word(1) } else { 0 })
            }
            _ => (0, 0),
        };
        let k = i32::try_from(k.clamp(i32::MIN as i64, i32::MAX as i64)).unwrap_or(0);
        let n = if size < 4 { y.len().div_ceil(4 / size) } else { y.len() * words };
        let mut params = vec![u(n)?, lo, hi, (words == 2) as u32, tri, k as u32, row, col];
        let fill = |v: &[usize], f: u32| -> Result<Vec<u32>> {
            let mut out = vec![f; pad];
            for &x in v {
                out.push(u(x)?);
            }
            Ok(out)
        };
        params.extend(fill(&v.out, 1)?);
        params.extend(fill(&v.input, 1)?);
        params.extend(fill(&v.strides, 0)?);
        params.extend(std::iter::repeat_n(0u32, pad));
        for &b in &v.begins {
            let b = i32::try_from(b).map_err(|_| err(format!("pad {b} is too large")))?;
            params.push(b as u32);
        }
        params.push(u(v.base * words)?);
        params.push(u(y.len())?);
        rec.dispatch(
            &LAYOUT,
            "layout_copy",
            &[("WG", WG as f64), ("MODE", v.mode as f64), ("ESIZE", esize as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &params,
            grid_1d(n, WG),
        )
    }
}
