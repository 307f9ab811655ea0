//! Data movement on one strided-copy kernel (kernels/movement.wgsl): Transpose,
//! Slice, Expand, Concat, Split. Elements of 4 and 8 bytes move as words (8 as
//! two); 1- and 2-byte elements (bool, u8, i8, f16, bf16, i16, u16) through a
//! packed variant that writes one whole destination word per thread. Reshape-like ops (Reshape, Flatten, Squeeze,
//! Unsqueeze, Identity) copy nothing: the runtime aliases their buffers.

use super::broadcast::{broadcast_strides, contiguous_strides};
use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, GpuTensor, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op};

const WG: u32 = 256;
const MAX_RANK: usize = 8;

static COPY: KernelSource = KernelSource {
    name: "copy_strided",
    wgsl: include_str!("../../kernels/movement.wgsl"),
    dtype: DType::U32,
    entries: &["copy_strided", "copy_packed"],
    needs_f16: false,
    override_sets: || {
        vec![vec![("WG", 256.0)], vec![("WG", 256.0), ("ESIZE", 1.0)], vec![("WG", 256.0), ("ESIZE", 2.0)]]
    },
};

pub static FAMILY: Family = Family { name: "movement", sources: &[&COPY], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    // Every element size: 1, 2, 4 or 8 bytes.
    req.dtype(0)?;
    let kind = match req.op {
        Op::Transpose { perm } => Kind::Transpose(perm.clone()),
        Op::Slice => Kind::Slice,
        Op::Expand => Kind::Expand,
        Op::Concat { axis } => Kind::Concat(*axis),
        Op::Split { axis, .. } => Kind::Split(*axis),
        _ => return None,
    };
    Some(Ok(Box::new(Movement { kind })))
}

enum Kind {
    Transpose(Option<Vec<usize>>),
    Slice,
    Expand,
    Concat(i64),
    Split(i64),
}

struct Movement {
    kind: Kind,
}

fn err(m: impl Into<String>) -> GpuError {
    GpuError::kernel("movement", m)
}

fn axis_of(axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank {
        return Err(err(format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Copies the elements of `dims` from `src` (element offset and signed strides)
/// to `dst` (element offset and strides).
#[allow(clippy::too_many_arguments)]
fn copy(
    rec: &mut Recorder,
    src: &GpuTensor,
    src_offset: isize,
    src_strides: &[isize],
    dims: &[usize],
    dst: &GpuTensor,
    dst_offset: usize,
    dst_strides: &[usize],
) -> Result<()> {
    if src.dtype.size() < 4 {
        if dst_offset != 0 || dst_strides != contiguous_strides(dims) || smelt_ir::num_elements(dims) != dst.len() {
            return Err(err("a packed copy must write its whole destination in order"));
        }
        return copy_packed(rec, src, src_offset, src_strides, dims, dst, Window::whole(dst.len()));
    }
    let words_per = (src.dtype.size() / 4) as isize;
    // Drop unit dims, merge dims contiguous in both views, then split 8-byte
    // elements into two words.
    let mut d: Vec<(usize, isize, usize)> = Vec::new();
    for ((&n, &s), &t) in dims.iter().zip(src_strides).zip(dst_strides) {
        if n == 1 {
            continue;
        }
        if let Some(last) = d.last_mut() {
            if last.1 == s * n as isize && last.2 == t * n {
                *last = (last.0 * n, s, t);
                continue;
            }
        }
        d.push((n, s, t));
    }
    let mut dims: Vec<usize> = d.iter().map(|x| x.0).collect();
    let mut ss: Vec<isize> = d.iter().map(|x| x.1 * words_per).collect();
    let mut ds: Vec<usize> = d.iter().map(|x| x.2 * words_per as usize).collect();
    if words_per == 2 {
        dims.push(2);
        ss.push(1);
        ds.push(1);
    }
    if dims.len() > MAX_RANK {
        return Err(err(format!("more than {MAX_RANK} independent dims")));
    }
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(());
    }
    let mut params = vec![u32::try_from(n).map_err(|_| err("more than 2^32 words"))?];
    let pad = MAX_RANK - dims.len();
    params.extend(std::iter::repeat_n(1u32, pad).chain(dims.iter().map(|&v| v as u32)));
    params.extend(std::iter::repeat_n(0u32, pad).chain(ss.iter().map(|&v| v as i32 as u32)));
    params.extend(std::iter::repeat_n(0u32, pad).chain(ds.iter().map(|&v| v as u32)));
    params.push((src_offset * words_per) as u32);
    params.push((dst_offset * words_per as usize) as u32);
    rec.dispatch(
        &COPY,
        "copy_strided",
        &[("WG", WG as f64)],
        &[Bind::Tensor(src), Bind::Tensor(dst)],
        &params,
        grid_1d(n, WG),
    )
}

/// Which part of a packed destination a copy writes: the tensor seen as
/// [outer, y, inner], of which the copy fills [at, at + x) along y.
struct Window {
    outer: usize,
    y: usize,
    at: usize,
    x: usize,
    inner: usize,
}

impl Window {
    fn whole(n: usize) -> Window {
        Window { outer: n, y: 1, at: 0, x: 1, inner: 1 }
    }
}

/// Copies the elements of `dims` from `src` (element offset and signed strides),
/// in order, into `window` of `dst`, for 1- and 2-byte elements.
fn copy_packed(
    rec: &mut Recorder,
    src: &GpuTensor,
    src_offset: isize,
    src_strides: &[isize],
    dims: &[usize],
    dst: &GpuTensor,
    window: Window,
) -> Result<()> {
    let size = src.dtype.size();
    let per = 4 / size;
    // Drop unit dims and merge dims contiguous in the source (the destination is
    // written in order, so only the source decides).
    let mut d: Vec<(usize, isize)> = Vec::new();
    for (&n, &s) in dims.iter().zip(src_strides) {
        if n == 1 {
            continue;
        }
        match d.last_mut() {
            Some(last) if last.1 == s * n as isize => *last = (last.0 * n, s),
            _ => d.push((n, s)),
        }
    }
    if d.len() > MAX_RANK {
        return Err(err(format!("more than {MAX_RANK} independent dims")));
    }
    let Window { outer, y, at, x, inner } = window;
    if outer * x * inner != smelt_ir::num_elements(dims) || outer * y * inner != dst.len() || at + x > y {
        return Err(err(format!("copy of {dims:?} into {:?} does not fit", dst.shape)));
    }
    if outer * x * inner == 0 {
        return Ok(());
    }
    // Destination elements [first, end) hold the window; threads own their words.
    let first = at * inner;
    let end = ((outer - 1) * y + at + x) * inner;
    let (w0, w1) = (first / per, end.div_ceil(per));
    let u = |v: usize| u32::try_from(v).map_err(|_| err("2^32 or more elements"));
    let pad = MAX_RANK - d.len();
    let mut params = vec![u(w1 - w0)?, u(w0)?, u(dst.len())?, u(y)?, u(at)?, u(x)?, u(inner)?];
    params.extend(std::iter::repeat_n(1u32, pad).chain(d.iter().map(|&(n, _)| n as u32)));
    params.extend(std::iter::repeat_n(0u32, pad).chain(d.iter().map(|&(_, s)| s as i32 as u32)));
    params.push(src_offset as i32 as u32);
    rec.dispatch(
        &COPY,
        "copy_packed",
        &[("WG", WG as f64), ("ESIZE", size as f64)],
        &[Bind::Tensor(src), Bind::Tensor(dst)],
        &params,
        grid_1d(w1 - w0, WG),
    )
}

fn signed(v: &[usize]) -> Vec<isize> {
    v.iter().map(|&x| x as isize).collect()
}

impl GpuKernel for Movement {
    fn name(&self) -> &'static str {
        "movement"
    }

    fn reads_on_device(&self, index: usize) -> bool {
        // Slice's starts/ends/axes/steps, Expand's shape and Split's sizes are read
        // on the host.
        match self.kind {
            Kind::Slice | Kind::Expand | Kind::Split(_) => index == 0,
            _ => true,
        }
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        match &self.kind {
            Kind::Transpose(perm) => {
                let x = io.input(0, "transpose")?;
                let y = &io.outputs[0];
                let rank = x.shape.len();
                let perm: Vec<usize> = perm.clone().unwrap_or_else(|| (0..rank).rev().collect());
                if perm.len() != rank || perm.iter().any(|&p| p >= rank) {
                    return Err(err(format!("perm {perm:?} for rank {rank}")));
                }
                let xs = contiguous_strides(&x.shape);
                let src: Vec<isize> = perm.iter().map(|&p| xs[p] as isize).collect();
                copy(rec, x, 0, &src, &y.shape, y, 0, &contiguous_strides(&y.shape))
            }
            Kind::Expand => {
                let x = io.input(0, "expand")?;
                let y = &io.outputs[0];
                let s = broadcast_strides(&x.shape, &y.shape)
                    .ok_or_else(|| err(format!("{:?} does not expand to {:?}", x.shape, y.shape)))?;
                copy(rec, x, 0, &signed(&s), &y.shape, y, 0, &contiguous_strides(&y.shape))
            }
            Kind::Slice => {
                let x = io.input(0, "slice")?;
                let y = &io.outputs[0];
                let (offset, strides) = slice_view(&x.shape, &y.shape, io)?;
                copy(rec, x, offset, &strides, &y.shape, y, 0, &contiguous_strides(&y.shape))
            }
            Kind::Concat(axis) => {
                let y = &io.outputs[0];
                let axis = axis_of(*axis, y.shape.len())?;
                let ys = contiguous_strides(&y.shape);
                let mut at = 0;
                for (i, x) in io.inputs.iter().enumerate() {
                    let x = x.as_ref().ok_or_else(|| err(format!("Concat input {i} is not on the device")))?;
                    if x.dtype.size() < 4 {
                        // Inputs share destination words along the axis: each copy
                        // writes whole words, keeping the lanes outside its window.
                        let window = Window {
                            outer: y.shape[..axis].iter().product(),
                            y: y.shape[axis],
                            at,
                            x: x.shape[axis],
                            inner: ys[axis],
                        };
                        copy_packed(rec, x, 0, &[1], &[x.len()], y, window)?;
                        at += x.shape[axis];
                        continue;
                    }
                    copy(rec, x, 0, &signed(&contiguous_strides(&x.shape)), &x.shape, y, at * ys[axis], &ys)?;
                    at += x.shape[axis];
                }
                Ok(())
            }
            Kind::Split(axis) => {
                let x = io.input(0, "split")?;
                let axis = axis_of(*axis, x.shape.len())?;
                let xs = contiguous_strides(&x.shape);
                let mut at = 0;
                for y in io.outputs {
                    copy(
                        rec,
                        x,
                        (at * xs[axis]) as isize,
                        &signed(&xs),
                        &y.shape,
                        y,
                        0,
                        &contiguous_strides(&y.shape),
                    )?;
                    at += y.shape[axis];
                }
                Ok(())
            }
        }
    }
}

/// Element offset and strides of the view Slice reads, from its host-known
/// starts, ends, axes and steps (ONNX clamping rules).
fn slice_view(in_shape: &[usize], out_shape: &[usize], io: &NodeIo) -> Result<(isize, Vec<isize>)> {
    let values = |i: usize| io.host(i).map(|t| t.to_i64_vec());
    let starts = values(1).ok_or_else(|| err("Slice starts are not known on the host"))?;
    let rank = in_shape.len();
    let axes: Vec<i64> = values(3).unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps: Vec<i64> = values(4).unwrap_or_else(|| vec![1; starts.len()]);
    let strides = contiguous_strides(in_shape);
    let mut offset: isize = 0;
    let mut out_strides: Vec<isize> = strides.iter().map(|&s| s as isize).collect();
    for (k, &axis) in axes.iter().enumerate() {
        let a = axis_of(axis, rank)?;
        let dim = in_shape[a] as i64;
        let step = *steps.get(k).unwrap_or(&1);
        if step == 0 {
            return Err(err("Slice step 0"));
        }
        let mut start = starts[k];
        if start < 0 {
            start += dim;
        }
        let start = if step > 0 { start.clamp(0, dim) } else { start.clamp(0, dim - 1) };
        if out_shape[a] > 0 {
            offset += start as isize * strides[a] as isize;
        }
        out_strides[a] = strides[a] as isize * step as isize;
    }
    Ok((offset, out_strides))
}
