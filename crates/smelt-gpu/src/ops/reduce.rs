//! Reduce{Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare} over
//! any axes (kernels/reduce.wgsl) and ArgMax/ArgMin (kernels/reduce_arg.wgsl), in
//! f32, and in f16 where the adapter has `SHADER_F16`. Integer and bool
//! reductions go to the CPU (it accumulates integers in 64 bits).

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{DType, Op, ReduceKind};

/// Threads per output: enough to spread one long reduction, few enough that many
/// short ones do not idle most lanes.
const WG: u32 = 64;
const MAX_RANK: usize = 8;
const KINDS: u32 = 10;

macro_rules! source {
    ($name:literal, $file:literal, $entry:literal, $dtype:expr, $prefix:literal, $f16:expr, $sets:expr) => {
        KernelSource {
            name: $name,
            wgsl: concat!($prefix, include_str!(concat!("../../kernels/", $file))),
            dtype: $dtype,
            entries: &[$entry],
            needs_f16: $f16,
            override_sets: $sets,
        }
    };
}

static REDUCE_F32: KernelSource =
    source!("reduce_f32", "reduce.wgsl", "reduce_axes", DType::F32, "alias T = f32;\n", false, reduce_sets);
static REDUCE_F16: KernelSource =
    source!("reduce_f16", "reduce.wgsl", "reduce_axes", DType::F16, "enable f16;\nalias T = f16;\n", true, reduce_sets);
static ARG_F32: KernelSource =
    source!("reduce_arg_f32", "reduce_arg.wgsl", "arg_pick", DType::F32, "alias T = f32;\n", false, arg_sets);
static ARG_F16: KernelSource = source!(
    "reduce_arg_f16",
    "reduce_arg.wgsl",
    "arg_pick",
    DType::F16,
    "enable f16;\nalias T = f16;\n",
    true,
    arg_sets
);

fn reduce_sets() -> Vec<Vec<(&'static str, f64)>> {
    (0..KINDS).map(|k| vec![("WG", WG as f64), ("KIND", k as f64)]).collect()
}

fn arg_sets() -> Vec<Vec<(&'static str, f64)>> {
    let mut sets = Vec::new();
    for pick in 0..2 {
        for last in 0..2 {
            sets.push(vec![("WG", WG as f64), ("PICK", pick as f64), ("LAST", last as f64)]);
        }
    }
    sets
}

pub static FAMILY: Family = Family { name: "reduce", sources: &[&REDUCE_F32, &REDUCE_F16, &ARG_F32, &ARG_F16], build };

/// The `KIND` code of kernels/reduce.wgsl.
fn kind_code(kind: ReduceKind) -> u32 {
    match kind {
        ReduceKind::Sum => 0,
        ReduceKind::Mean => 1,
        ReduceKind::Max => 2,
        ReduceKind::Min => 3,
        ReduceKind::Prod => 4,
        ReduceKind::L1 => 5,
        ReduceKind::L2 => 6,
        ReduceKind::LogSum => 7,
        ReduceKind::LogSumExp => 8,
        ReduceKind::SumSquare => 9,
    }
}

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let f16 = match req.dtype(0)? {
        DType::F32 => false,
        DType::F16 if req.ctx.supports_f16() => true,
        _ => return None,
    };
    match *req.op {
        Op::Reduce { kind, keepdims: _, noop_with_empty_axes } => {
            if req.outputs.first() != req.dtype(0).as_ref() {
                return None;
            }
            let source = if f16 { &REDUCE_F16 } else { &REDUCE_F32 };
            let has_axes = req.input(1).is_some();
            Some(Ok(Box::new(Reduce { source, kind: kind_code(kind), noop_with_empty_axes, has_axes })))
        }
        Op::ArgMax { axis, select_last_index, .. } | Op::ArgMin { axis, select_last_index, .. } => {
            if req.outputs.first() != Some(&DType::I64) {
                return None;
            }
            let source = if f16 { &ARG_F16 } else { &ARG_F32 };
            let pick = matches!(req.op, Op::ArgMin { .. }) as u32;
            Some(Ok(Box::new(Arg { source, axis, pick, last: select_last_index as u32 })))
        }
        _ => None,
    }
}

fn u(v: usize, kernel: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| GpuError::kernel(kernel, "a size is 2^32 or more"))
}

fn axis_of(axis: i64, rank: usize, kernel: &'static str) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank {
        return Err(GpuError::kernel(kernel, format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(a as usize)
}

struct Reduce {
    source: &'static KernelSource,
    kind: u32,
    noop_with_empty_axes: bool,
    /// Whether the node has the optional axes input.
    has_axes: bool,
}

/// Which axes of a rank-`rank` input `axes` reduces (ONNX: empty or absent axes
/// reduce all of them unless `noop_with_empty_axes`).
fn reduced_axes(axes: &[i64], rank: usize, noop_with_empty_axes: bool) -> Result<Vec<bool>> {
    let mut reduced = vec![axes.is_empty() && !noop_with_empty_axes; rank];
    for &a in axes {
        let d = axis_of(a, rank, "reduce")?;
        if reduced[d] {
            return Err(GpuError::kernel("reduce", format!("axis {a} is listed twice in axes {axes:?}")));
        }
        reduced[d] = true;
    }
    Ok(reduced)
}

/// The input's dims split into kept and reduced groups, each as (dims, strides)
/// outermost first, with neighbouring dims of the same group merged (the input is
/// contiguous, so a run of kept or of reduced dims is one dim).
type Groups = ((Vec<usize>, Vec<usize>), (Vec<usize>, Vec<usize>));

fn groups(shape: &[usize], reduced: &[bool]) -> Groups {
    let mut stride = 1;
    let mut runs: Vec<(bool, usize, usize)> = Vec::new();
    for d in (0..shape.len()).rev() {
        let n = shape[d];
        if n != 1 {
            match runs.last_mut() {
                Some((r, dim, _)) if *r == reduced[d] => *dim *= n,
                _ => runs.push((reduced[d], n, stride)),
            }
        }
        stride *= n;
    }
    runs.reverse();
    let mut kept = (Vec::new(), Vec::new());
    let mut red = (Vec::new(), Vec::new());
    for (r, dim, s) in runs {
        let g = if r { &mut red } else { &mut kept };
        g.0.push(dim);
        g.1.push(s);
    }
    (kept, red)
}

fn padded(v: &[usize]) -> Result<Vec<u32>> {
    let mut out = v.iter().map(|&x| u(x, "reduce")).collect::<Result<Vec<_>>>()?;
    out.resize(MAX_RANK, 1);
    Ok(out)
}

impl GpuKernel for Reduce {
    fn name(&self) -> &'static str {
        "reduce"
    }

    fn reads_on_device(&self, index: usize) -> bool {
        // Axes are read on the host.
        index == 0
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "reduce")?;
        let y = &io.outputs[0];
        let axes = match (self.has_axes, io.host(1)) {
            (false, _) => Vec::new(),
            (true, Some(t)) => t.to_i64_vec(),
            (true, None) => return Err(GpuError::kernel("reduce", "axes are not known on the host")),
        };
        let reduced = reduced_axes(&axes, x.shape.len(), self.noop_with_empty_axes)?;
        let count: usize = x.shape.iter().zip(&reduced).filter(|(_, &r)| r).map(|(&d, _)| d).product();
        let ((kd, ks), (rd, rs)) = groups(&x.shape, &reduced);
        if kd.len() > MAX_RANK || rd.len() > MAX_RANK {
            return Err(GpuError::kernel(
                "reduce",
                format!("shape {:?} reduced over {axes:?} alternates kept and reduced axes too often", x.shape),
            ));
        }
        let outputs = y.len();
        let mut params = vec![u(outputs, "reduce")?, u(count, "reduce")?, kd.len() as u32, rd.len() as u32];
        for v in [&kd, &ks, &rd, &rs] {
            params.extend(padded(v)?);
        }
        rec.dispatch(
            self.source,
            "reduce_axes",
            &[("WG", WG as f64), ("KIND", self.kind as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &params,
            grid_1d(outputs * WG as usize, WG),
        )
    }
}

struct Arg {
    source: &'static KernelSource,
    axis: i64,
    pick: u32,
    last: u32,
}

impl GpuKernel for Arg {
    fn name(&self) -> &'static str {
        "arg"
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, "arg")?;
        let y = &io.outputs[0];
        // A scalar is a one-element vector.
        let shape = if x.shape.is_empty() { vec![1] } else { x.shape.clone() };
        let axis = axis_of(self.axis, shape.len(), "arg")?;
        let n = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        if y.is_empty() {
            return Ok(());
        }
        if n == 0 {
            return Err(GpuError::kernel("arg", format!("axis {axis} of shape {shape:?} is empty: no index to pick")));
        }
        rec.dispatch(
            self.source,
            "arg_pick",
            &[("WG", WG as f64), ("PICK", self.pick as f64), ("LAST", self.last as f64)],
            &[Bind::Tensor(x), Bind::Tensor(y)],
            &[u(y.len(), "arg")?, u(n, "arg")?, u(inner, "arg")?],
            grid_1d(y.len() * WG as usize, WG),
        )
    }
}
