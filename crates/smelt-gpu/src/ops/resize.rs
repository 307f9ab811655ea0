//! Resize (kernels/resize.wgsl): nearest (every `nearest_mode`), linear and
//! cubic (`cubic_coeff_a`, `exclude_outside`, antialias), every coordinate
//! transform, scales or sizes, `axes`, `keep_aspect_ratio_policy` and
//! tf_crop_and_resize's `extrapolation_value`, over up to 8 dims.
//!
//! Scales, sizes and roi are host values, so the per-dim interpolation tables are
//! built here at record time, in f64 following smelt-cpu (and ONNX's reference)
//! step for step, and the kernel only sums weighted taps. Linear and cubic run in
//! f32 and f16; nearest is an exact gather for every type of 1, 2, 4 or 8 bytes
//! (1- and 2-byte ones packed four or two to a word, one thread per word).
//! Integer linear/cubic (rounded half to even on the CPU) stays on the CPU.

use super::Family;
use crate::kernel::{grid_1d, Bind, GpuKernel, KernelRequest, KernelSource, NodeIo, Recorder};
use crate::{GpuError, Result};
use smelt_ir::{CoordinateTransform, DType, KeepAspectRatioPolicy, NearestMode, Op, ResizeAttrs, ResizeMode, Tensor};

const WG: u32 = 256;
const MAX_RANK: usize = 8;
const NAME: &str = "resize";
/// The table marker for an output position outside the input (tf_crop_and_resize).
const OUTSIDE: u32 = u32::MAX;

fn float_sets() -> Vec<Vec<(&'static str, f64)>> {
    vec![vec![("WG", WG as f64), ("WORDS", 1.0), ("FLOAT_FILL", 1.0), ("BYTES", 4.0)]]
}

static RESIZE_F32: KernelSource = KernelSource {
    name: "resize_f32",
    wgsl: concat!("alias T = f32;\n", include_str!("../../kernels/resize.wgsl")),
    dtype: DType::F32,
    entries: &["interpolate", "nearest"],
    needs_f16: false,
    override_sets: float_sets,
};

static RESIZE_F16: KernelSource = KernelSource {
    name: "resize_f16",
    wgsl: concat!("enable f16;\nalias T = f16;\n", include_str!("../../kernels/resize.wgsl")),
    dtype: DType::F16,
    entries: &["interpolate", "nearest"],
    needs_f16: true,
    override_sets: float_sets,
};

/// Nearest for other 4- and 8-byte types: elements copied as raw words.
static RESIZE_WORDS: KernelSource = KernelSource {
    name: "resize_words",
    wgsl: concat!("alias T = u32;\n", include_str!("../../kernels/resize.wgsl")),
    dtype: DType::U32,
    entries: &["nearest"],
    needs_f16: false,
    override_sets: || [1.0, 2.0].iter().map(|&w| vec![("WG", WG as f64), ("WORDS", w), ("FLOAT_FILL", 0.0)]).collect(),
};

pub static FAMILY: Family = Family { name: "resize", sources: &[&RESIZE_F32, &RESIZE_F16, &RESIZE_WORDS], build };

fn build(req: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    let Op::Resize(attrs) = req.op else { return None };
    let dtype = req.dtype(0)?;
    if req.outputs.first() != Some(&dtype) {
        return None;
    }
    let nearest = attrs.mode == ResizeMode::Nearest;
    let source = match dtype {
        DType::F32 => &RESIZE_F32,
        DType::F16 if req.ctx.supports_f16() => &RESIZE_F16,
        // Raw words copy exactly; interpolating integers needs the CPU's
        // round-half-to-even in 64-bit precision.
        // Without SHADER_F16, f16 nearest still copies bits.
        DType::F16 | DType::I32 | DType::U32 | DType::I64 | DType::U64 | DType::F64 if nearest => &RESIZE_WORDS,
        DType::U8 | DType::I8 | DType::Bool | DType::I16 | DType::U16 | DType::BF16 if nearest => &RESIZE_WORDS,
        _ => return None,
    };
    if req.input(0)?.shape.rank().is_some_and(|r| r == 0 || r > MAX_RANK) {
        return None;
    }
    Some(Ok(Box::new(Resize { attrs: attrs.clone(), dtype, source })))
}

struct Resize {
    attrs: ResizeAttrs,
    dtype: DType,
    source: &'static KernelSource,
}

fn err(msg: impl Into<String>) -> GpuError {
    GpuError::kernel(NAME, msg.into())
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| err("a dimension or offset is 2^32 or more"))
}

/// Output size, the scale the coordinate transform divides by, and the roi
/// (start, end) of every dim.
struct Plan {
    out_shape: Vec<usize>,
    scales: Vec<f64>,
    roi: Vec<(f64, f64)>,
}

/// A host input that is present and not empty (ONNX's way to leave one out).
fn nonempty<'a>(io: &'a NodeIo, i: usize) -> Option<&'a Tensor> {
    io.host(i).filter(|t| !t.is_empty())
}

fn plan(attrs: &ResizeAttrs, x: &[usize], io: &NodeIo) -> Result<Plan> {
    let rank = x.len();
    let axes: Vec<usize> = match &attrs.axes {
        Some(axes) => {
            let mut out: Vec<usize> = Vec::with_capacity(axes.len());
            for &a in axes {
                let a = if a < 0 { a + rank as i64 } else { a };
                if a < 0 || a >= rank as i64 || out.contains(&(a as usize)) {
                    return Err(err(format!("axes {axes:?} are invalid for rank {rank}")));
                }
                out.push(a as usize);
            }
            out
        }
        None => (0..rank).collect(),
    };
    let roi_host = nonempty(io, 1).filter(|_| attrs.coordinate_transform == CoordinateTransform::TfCropAndResize);
    let mut roi = vec![(0.0, 1.0); rank];
    if let Some(t) = roi_host {
        let v = t.to_f64_vec();
        if v.len() != 2 * axes.len() {
            return Err(err(format!("roi has {} values for {} axes", v.len(), axes.len())));
        }
        for (i, &a) in axes.iter().enumerate() {
            roi[a] = (v[i], v[axes.len() + i]);
        }
    }
    // The runtime knows every shape-deciding input on the host (Op::shape_inputs),
    // so an input missing here is absent from the node.
    let (scales, sizes) = (nonempty(io, 2), nonempty(io, 3));
    let mut out_shape = x.to_vec();
    let mut scale = vec![1.0f64; rank];
    match (scales, sizes) {
        (Some(_), Some(_)) => return Err(err("only one of scales and sizes may be given")),
        (None, None) => return Err(err("one of scales and sizes is required")),
        (Some(s), None) => {
            if !s.dtype().is_float() {
                return Err(err(format!("scales must be float, got {}", s.dtype())));
            }
            let v = s.to_f64_vec();
            if v.len() != axes.len() || v.iter().any(|&s| s <= 0.0) {
                return Err(err(format!("scales {v:?} do not fit {} axes or are not positive", axes.len())));
            }
            for (&a, &s) in axes.iter().zip(&v) {
                scale[a] = s;
                out_shape[a] = (s * x[a] as f64) as usize;
            }
        }
        (None, Some(s)) => {
            if !matches!(s.dtype(), DType::I64 | DType::I32) {
                return Err(err(format!("sizes must be integers, got {}", s.dtype())));
            }
            let v = s.to_i64_vec();
            if v.len() != axes.len() || v.iter().any(|&d| d < 0) {
                return Err(err(format!("sizes {v:?} do not fit {} axes", axes.len())));
            }
            for (&a, &d) in axes.iter().zip(&v) {
                scale[a] = d as f64 / x[a] as f64;
                out_shape[a] = d as usize;
            }
            if attrs.keep_aspect_ratio_policy != KeepAspectRatioPolicy::Stretch {
                let pick = axes.iter().map(|&a| scale[a]);
                let s = if attrs.keep_aspect_ratio_policy == KeepAspectRatioPolicy::NotLarger {
                    pick.fold(f64::INFINITY, f64::min)
                } else {
                    pick.fold(f64::NEG_INFINITY, f64::max)
                };
                for &a in &axes {
                    scale[a] = s;
                    // Rounded half up, as ONNX's reference does.
                    out_shape[a] = (s * x[a] as f64 + 0.5) as usize;
                }
            }
        }
    }
    Ok(Plan { out_shape, scales: scale, roi })
}

impl Plan {
    /// A dim that keeps its size and coordinates: read straight through (the CPU
    /// skips it too, so both agree to the bit there).
    fn is_identity(&self, d: usize, input: usize) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
        let (start, end) = self.roi[d];
        close(self.scales[d], 1.0) && self.out_shape[d] == input && start.abs() <= 1e-9 && close(end, 1.0)
    }
}

/// The input coordinate output position `j` maps to, and whether it is outside
/// the input (tf_crop_and_resize only).
fn source_coordinate(
    mode: CoordinateTransform,
    j: usize,
    scale: f64,
    input: usize,
    output: usize,
    roi: (f64, f64),
) -> (f64, bool) {
    let y = j as f64;
    let in_f = input as f64;
    // ONNX's reference uses scale × input here, not the rounded output size.
    let out_f = scale * in_f;
    match mode {
        CoordinateTransform::AlignCorners => (if out_f == 1.0 { 0.0 } else { y * (in_f - 1.0) / (out_f - 1.0) }, false),
        CoordinateTransform::Asymmetric => (y / scale, false),
        CoordinateTransform::TfCropAndResize => {
            let (start, end) = roi;
            let x = if out_f == 1.0 {
                (end - start) * (in_f - 1.0) / 2.0
            } else {
                y * (end - start) * (in_f - 1.0) / (out_f - 1.0)
            } + start * (in_f - 1.0);
            (x, x < 0.0 || x > in_f - 1.0)
        }
        CoordinateTransform::PytorchHalfPixel => (if out_f == 1.0 { -0.5 } else { (y + 0.5) / scale - 0.5 }, false),
        CoordinateTransform::HalfPixel => ((y + 0.5) / scale - 0.5, false),
        CoordinateTransform::HalfPixelSymmetric => {
            let adjustment = output as f64 / out_f;
            let offset = in_f / 2.0 * (1.0 - adjustment);
            (offset + (y + 0.5) / scale - 0.5, false)
        }
    }
}

fn normalized(mut c: Vec<f64>) -> Vec<f64> {
    let sum: f64 = c.iter().sum();
    c.iter_mut().for_each(|v| *v /= sum);
    c
}

/// Weights of the taps around a position `ratio` (in (0, 1]) past its left
/// neighbour.
fn coefficients(attrs: &ResizeAttrs, ratio: f64, scale: f64) -> Vec<f64> {
    let a = attrs.cubic_coeff_a as f64;
    match (attrs.mode, attrs.antialias) {
        (ResizeMode::Nearest, _) => {
            if ratio == 1.0 {
                return vec![0.0, 1.0];
            }
            let left = match attrs.nearest_mode {
                NearestMode::RoundPreferFloor => ratio <= 0.5,
                NearestMode::RoundPreferCeil => ratio < 0.5,
                NearestMode::Floor => true,
                NearestMode::Ceil => false,
            };
            if left {
                vec![1.0, 0.0]
            } else {
                vec![0.0, 1.0]
            }
        }
        (ResizeMode::Linear, false) => vec![1.0 - ratio, ratio],
        (ResizeMode::Linear, true) => {
            // Downscaling widens the triangle filter to 1/scale input cells.
            let scale = scale.min(1.0);
            let start = (-1.0 / scale).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            normalized(
                (start..start + footprint)
                    .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                    .collect(),
            )
        }
        (ResizeMode::Cubic, false) => {
            let (r, s) = (ratio, 1.0 - ratio);
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
            ]
        }
        (ResizeMode::Cubic, true) => {
            let scale = scale.min(1.0);
            let kernel = |x: f64| {
                let x = x.abs();
                let (x2, x3) = (x * x, x * x * x);
                if x <= 1.0 {
                    (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
                } else if x < 2.0 {
                    a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / scale).floor() as i64 + 1;
            let end = 2 - start;
            normalized((start..end).map(|i| kernel(scale * (i as f64 - ratio))).collect())
        }
    }
}

/// One resized dim's table: `taps` and, per output position, `taps` (input
/// index, weight) pairs, or `None` where the position extrapolates.
fn axis_table(attrs: &ResizeAttrs, input: usize, output: usize, scale: f64, roi: (f64, f64)) -> (usize, Vec<u32>) {
    let nearest = attrs.mode == ResizeMode::Nearest;
    let mut positions: Vec<Option<Vec<(usize, f64)>>> = Vec::with_capacity(output);
    for j in 0..output {
        let (x, outside) = source_coordinate(attrs.coordinate_transform, j, scale, input, output, roi);
        let floor = x.floor();
        let ratio = if x == floor { 1.0 } else { x - floor };
        let mut c = coefficients(attrs, ratio, scale);
        let n = c.len();
        // The n input positions nearest x, ties to the smaller index, as in the
        // reference.
        let frac = x - floor;
        let first = if n.is_multiple_of(2) {
            floor as i64 - (n / 2) as i64 + i64::from(frac != 0.0)
        } else {
            floor as i64 - ((n - 1) / 2) as i64 + i64::from(frac > 0.5)
        };
        if attrs.exclude_outside {
            for (t, w) in c.iter_mut().enumerate() {
                let i = first + t as i64;
                if i < 0 || i >= input as i64 {
                    *w = 0.0;
                }
            }
            let sum: f64 = c.iter().sum();
            if sum != 0.0 {
                c.iter_mut().for_each(|w| *w /= sum);
            }
        }
        let index = |t: usize| (first + t as i64).clamp(0, input as i64 - 1) as usize;
        let entry = if outside {
            None
        } else if nearest {
            // One-hot over two taps: keep the chosen one.
            let t = if c[0] != 0.0 { 0 } else { 1 };
            Some(vec![(index(t), 1.0)])
        } else {
            Some(c.iter().enumerate().map(|(t, &w)| (index(t), w)).collect())
        };
        positions.push(entry);
    }
    // Every position of one dim has the same count (one for nearest); a dim
    // entirely outside the roi has none, and one placeholder tap.
    let taps = positions.iter().flatten().map(|p| p.len()).next().unwrap_or(1);
    let mut words = Vec::with_capacity(output * taps * 2);
    for pos in positions {
        match pos {
            None => {
                words.push(OUTSIDE);
                words.resize(words.len() + 2 * taps - 1, 0);
            }
            Some(entries) => {
                for (i, w) in entries {
                    words.push(i as u32);
                    words.push((w as f32).to_bits());
                }
            }
        }
    }
    (taps, words)
}

/// The fill's element words for the raw-word kernel: `extrapolation_value`
/// converted to the element type as the CPU does (`as` casts saturate).
fn fill_words(dtype: DType, v: f32) -> [u32; 2] {
    let v = v as f64;
    match dtype {
        DType::I32 => [(v as i32) as u32, 0],
        DType::U32 => [v as u32, 0],
        DType::I64 => {
            let b = v as i64 as u64;
            [b as u32, (b >> 32) as u32]
        }
        DType::U64 => {
            let b = v as u64;
            [b as u32, (b >> 32) as u32]
        }
        DType::F64 => {
            let b = v.to_bits();
            [b as u32, (b >> 32) as u32]
        }
        DType::U8 | DType::Bool => [(v as u8) as u32, 0],
        DType::I8 => [(v as i8) as u8 as u32, 0],
        DType::U16 => [(v as u16) as u32, 0],
        DType::I16 => [(v as i16) as u16 as u32, 0],
        DType::F16 => [smelt_ir::half::f16::from_f64(v).to_bits() as u32, 0],
        DType::BF16 => [smelt_ir::half::bf16::from_f64(v).to_bits() as u32, 0],
        _ => [(v as f32).to_bits(), 0],
    }
}

impl GpuKernel for Resize {
    fn name(&self) -> &'static str {
        NAME
    }

    fn reads_on_device(&self, index: usize) -> bool {
        // roi, scales and sizes are read on the host when recording.
        index == 0
    }

    fn record(&self, rec: &mut Recorder, io: &NodeIo) -> Result<()> {
        let x = io.input(0, NAME)?;
        let y = &io.outputs[0];
        let rank = x.shape.len();
        if rank == 0 || rank > MAX_RANK {
            return Err(err(format!("input of rank {rank}: the kernel takes ranks 1 to {MAX_RANK}")));
        }
        let plan = plan(&self.attrs, &x.shape, io)?;
        if plan.out_shape != y.shape {
            return Err(err(format!("output shape {:?}, but scales/sizes give {:?}", y.shape, plan.out_shape)));
        }
        if y.is_empty() {
            return Ok(());
        }
        if x.is_empty() {
            return Err(err(format!("cannot resize the empty input {:?} to {:?}", x.shape, y.shape)));
        }
        let nearest = self.attrs.mode == ResizeMode::Nearest;
        let size = self.dtype.size();
        let raw = self.source.dtype == DType::U32;
        // (entry, words per element, bytes per element, threads)
        let (entry, words_per, bytes, threads) = if !raw {
            (if nearest { "nearest" } else { "interpolate" }, 1, 4, y.len())
        } else if size >= 4 {
            ("nearest", size / 4, 4, y.len())
        } else {
            ("nearest_packed", 1, size, y.len().div_ceil(4 / size))
        };
        // Word indices (and byte offsets, when packed) fit in u32.
        u(x.len() * words_per)?;
        u(y.len() * words_per)?;
        if entry == "nearest_packed" {
            u(x.len() * size)?;
        }
        let mut strides = vec![1usize; rank];
        for d in (0..rank - 1).rev() {
            strides[d] = strides[d + 1] * x.shape[d + 1];
        }
        let fill = if raw {
            fill_words(self.dtype, self.attrs.extrapolation_value)
        } else {
            [self.attrs.extrapolation_value.to_bits(), 0]
        };
        let mut params = vec![u(y.len())?, rank as u32, fill[0], fill[1]];
        let header = params.len() + 4 * rank;
        let mut tables = Vec::new();
        for (d, &stride) in strides.iter().enumerate() {
            let (taps, offset) = if plan.is_identity(d, x.shape[d]) {
                (0, 0)
            } else {
                let (taps, mut words) =
                    axis_table(&self.attrs, x.shape[d], plan.out_shape[d], plan.scales[d], plan.roi[d]);
                // Indices become element offsets along this dim.
                for pair in words.chunks_exact_mut(2) {
                    if pair[0] != OUTSIDE {
                        pair[0] = u(pair[0] as usize * stride)?;
                    }
                }
                let offset = header + tables.len();
                tables.extend(words);
                (taps, offset)
            };
            params.extend([u(plan.out_shape[d])?, u(stride)?, u(taps)?, u(offset)?]);
        }
        params.extend(tables);
        let overrides = [
            ("WG", WG as f64),
            ("WORDS", words_per as f64),
            ("FLOAT_FILL", !raw as u32 as f64),
            ("BYTES", bytes as f64),
        ];
        rec.dispatch(self.source, entry, &overrides, &[Bind::Tensor(x), Bind::Tensor(y)], &params, grid_1d(threads, WG))
    }
}
