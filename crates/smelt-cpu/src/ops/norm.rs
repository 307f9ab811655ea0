//! Normalisation ops: BatchNormalization (inference), LayerNormalization,
//! InstanceNormalization, GroupNormalization and LpNormalization.
//!
//! All compute in f32 (f64 for f64 input); f16/bf16 data is widened once, computed
//! and rounded back. Statistics are two-pass (mean, then the mean of squared
//! deviations), each pass a lane-parallel loop over a contiguous row.
//!
//! LayerNormalization with a constant Scale (and B) is prepared: the parameters
//! are cast to the compute types once, not on every run.

use super::broadcast::{for_each_row_block, Broadcast};
use super::dims::Dims;
use super::elementwise::checked::{
    expect_dtype, expect_shape, input, normalize_axis, optional_input, output, slice, slice_mut,
};
use crate::{CpuError, Kernel, Result, Scratch};
use half::{bf16, f16};
use num_traits::Float;
use smelt_ir::{dispatch_dtype, DType, Element, Op, Tensor, TensorView, TensorViewMut};
use std::sync::Arc;

pub fn eval(op: &Op, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let name = op.name();
    let x = input(name, inputs, 0)?;
    match *op {
        Op::BatchNormalization { epsilon } => {
            if outputs.len() > 1 {
                return Err(CpuError::invalid(name, "training mode (running mean/variance outputs) is not supported"));
            }
            let (c, spatial) = channels(name, x.shape)?;
            let params = [1, 2, 3, 4].map(|i| input(name, inputs, i));
            let [scale, bias, mean, var] = params;
            let kernel = BatchNorm {
                scale: per_channel(name, "scale", scale?, c)?,
                bias: per_channel(name, "B", bias?, c)?,
                mean: per_channel(name, "mean", mean?, c)?,
                var: per_channel(name, "var", var?, c)?,
                epsilon: epsilon as f64,
                spatial,
            };
            on_floats(name, &kernel, x, output(name, outputs, 0)?)?;
            Ok(())
        }
        Op::InstanceNormalization { epsilon } => {
            let (c, spatial) = channels(name, x.shape)?;
            let kernel = GroupNorm {
                channels: c,
                groups: c,
                spatial,
                scale: per_channel(name, "scale", input(name, inputs, 1)?, c)?,
                bias: per_channel(name, "B", input(name, inputs, 2)?, c)?,
                per_channel: true,
                epsilon: epsilon as f64,
            };
            on_floats(name, &kernel, x, output(name, outputs, 0)?)?;
            Ok(())
        }
        Op::GroupNormalization { epsilon, num_groups, per_channel } => {
            let (c, spatial) = channels(name, x.shape)?;
            if num_groups == 0 || c % num_groups != 0 {
                return Err(CpuError::invalid(name, format!("{c} channels do not split into {num_groups} groups")));
            }
            let params = if per_channel { c } else { num_groups };
            let kernel = GroupNorm {
                channels: c,
                groups: num_groups,
                spatial,
                scale: per_channel_values(name, "scale", input(name, inputs, 1)?, params)?,
                bias: per_channel_values(name, "bias", input(name, inputs, 2)?, params)?,
                per_channel,
                epsilon: epsilon as f64,
            };
            on_floats(name, &kernel, x, output(name, outputs, 0)?)?;
            Ok(())
        }
        Op::LayerNormalization { axis, epsilon } => layer_norm(name, axis, epsilon, None, inputs, outputs),
        Op::LpNormalization { axis, p } => {
            let axis = normalize_axis(name, axis, x.rank().max(1))?;
            if p != 1 && p != 2 {
                return Err(CpuError::invalid(name, format!("p must be 1 or 2, got {p}")));
            }
            let shape = if x.shape.is_empty() { vec![1] } else { x.shape.to_vec() };
            let kernel = LpNorm { n: shape[axis], inner: shape[axis + 1..].iter().product(), p };
            on_floats(name, &kernel, x, output(name, outputs, 0)?)?;
            Ok(())
        }
        _ => Err(CpuError::invalid(name, "is not a normalisation op")),
    }
}

/// `[N, C, spatial...]`: (C, product of the spatial dims).
fn channels(name: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(CpuError::invalid(name, format!("input must be [N, C, ...], got shape {shape:?}")));
    }
    Ok((shape[1], shape[2..].iter().product()))
}

/// Any float or integer tensor's elements, widened to f64.
fn values_f64(name: &'static str, what: &str, v: &TensorView) -> Result<Vec<f64>> {
    dispatch_dtype!(v.dtype, T => Ok(slice::<T>(name, what, v)?.iter().map(|x| x.to_f64()).collect()))
}

/// A per-channel parameter: exactly `c` elements, laid out as `[c]`.
fn per_channel(name: &'static str, what: &str, v: TensorView, c: usize) -> Result<Vec<f64>> {
    if v.shape != [c] {
        return Err(CpuError::invalid(name, format!("{what} must have shape [{c}], got {:?}", v.shape)));
    }
    values_f64(name, what, &v)
}

/// `n` parameter values in any shape that holds exactly `n` elements.
fn per_channel_values(name: &'static str, what: &str, v: TensorView, n: usize) -> Result<Vec<f64>> {
    if v.len() != n {
        return Err(CpuError::invalid(name, format!("{what} must have {n} elements, got shape {:?}", v.shape)));
    }
    values_f64(name, what, &v)
}

/// A normalisation kernel for `op` with its constant inputs prepared, or `None`
/// to use the reference kernel.
pub fn prepare(op: &Op, constants: &[Option<&Arc<Tensor>>]) -> Option<Box<dyn Kernel>> {
    match *op {
        Op::LayerNormalization { axis, epsilon } => {
            PreparedLayerNorm::new(axis, epsilon, constants).map(|k| Box::new(k) as Box<dyn Kernel>)
        }
        _ => None,
    }
}

/// The float types the kernels compute in: f32 (also for f16 and bf16 data) and f64.
trait Compute: Float + Send + Sync {
    /// This type's copy of LayerNorm's parameters.
    fn affine(params: &LayerNormParams) -> &RowAffine<Self>;
}

impl Compute for f32 {
    fn affine(params: &LayerNormParams) -> &RowAffine<f32> {
        &params.f32
    }
}

impl Compute for f64 {
    fn affine(params: &LayerNormParams) -> &RowAffine<f64> {
        &params.f64
    }
}

/// A normalisation over float data, written once for f32 and f64.
trait NormKernel: Sync {
    /// Computes `y` from `x` (same length). Returns per-row (mean, 1/stddev) when
    /// the kernel has rows and was asked for them, else nothing.
    fn run<F: Compute>(&self, x: &[F], y: &mut [F]) -> Vec<(F, F)>;
}

/// Runs `kernel` on `x` into `out` (same dtype and shape) in the compute type of
/// `x`'s dtype, and returns its statistics widened to f64.
fn on_floats<K: NormKernel>(
    name: &'static str,
    kernel: &K,
    x: TensorView,
    out: &mut TensorViewMut,
) -> Result<Vec<(f64, f64)>> {
    expect_dtype(name, "output", out.dtype, x.dtype)?;
    expect_shape(name, "output", out.shape, x.shape)?;
    let widen = |s: Vec<(f32, f32)>| s.into_iter().map(|(m, i)| (m as f64, i as f64)).collect();
    Ok(match x.dtype {
        DType::F32 => widen(kernel.run(slice::<f32>(name, "input", &x)?, slice_mut::<f32>(name, "output", out)?)),
        DType::F64 => kernel.run(slice::<f64>(name, "input", &x)?, slice_mut::<f64>(name, "output", out)?),
        DType::F16 => {
            let src: Vec<f32> = slice::<f16>(name, "input", &x)?.iter().map(|v| v.to_f32()).collect();
            let mut dst = vec![0f32; src.len()];
            let stats = kernel.run(&src, &mut dst);
            for (o, v) in slice_mut::<f16>(name, "output", out)?.iter_mut().zip(dst) {
                *o = f16::from_f32(v);
            }
            widen(stats)
        }
        DType::BF16 => {
            let src: Vec<f32> = slice::<bf16>(name, "input", &x)?.iter().map(|v| v.to_f32()).collect();
            let mut dst = vec![0f32; src.len()];
            let stats = kernel.run(&src, &mut dst);
            for (o, v) in slice_mut::<bf16>(name, "output", out)?.iter_mut().zip(dst) {
                *o = bf16::from_f32(v);
            }
            widen(stats)
        }
        dtype => return Err(CpuError::UnsupportedDType { op: name, dtype }),
    })
}

fn cast<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from(x).unwrap_or_else(F::nan)).collect()
}

/// Sum of a row with eight independent lanes, so the loop vectorises.
#[inline(always)]
fn lane_sum<F: Float>(x: &[F], f: impl Fn(F) -> F) -> F {
    let mut lanes = [F::zero(); 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = *l + f(v);
        }
    }
    let mut s = F::zero();
    for &v in rest {
        s = s + f(v);
    }
    lanes.iter().fold(s, |a, &l| a + l)
}

/// (mean, 1 / sqrt(variance + epsilon)) of a row, two-pass.
#[inline(always)]
fn row_stats<F: Float>(x: &[F], epsilon: F) -> (F, F) {
    let n = F::from(x.len()).unwrap_or_else(F::one);
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    (mean, F::one() / (var + epsilon).sqrt())
}

struct BatchNorm {
    scale: Vec<f64>,
    bias: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    epsilon: f64,
    spatial: usize,
}

impl NormKernel for BatchNorm {
    fn run<F: Compute>(&self, x: &[F], y: &mut [F]) -> Vec<(F, F)> {
        // y = x * s + t per channel, with s and t folded once (in f64).
        let c = self.scale.len();
        let s: Vec<f64> = (0..c).map(|i| self.scale[i] / (self.var[i] + self.epsilon).sqrt()).collect();
        let t: Vec<f64> = (0..c).map(|i| self.bias[i] - self.mean[i] * s[i]).collect();
        let (s, t): (Vec<F>, Vec<F>) = (cast(&s), cast(&t));
        for_each_row_block(y, self.spatial, x.len(), |rows, y| {
            let x = &x[rows.start * self.spatial..rows.end * self.spatial];
            for (row, (xr, yr)) in rows.clone().zip(x.chunks_exact(self.spatial).zip(y.chunks_exact_mut(self.spatial)))
            {
                let (s, t) = (s[row % c], t[row % c]);
                for (y, &v) in yr.iter_mut().zip(xr) {
                    *y = v * s + t;
                }
            }
        });
        Vec::new()
    }
}

/// Group normalisation; Instance normalisation is the case of one channel per group.
struct GroupNorm {
    channels: usize,
    groups: usize,
    spatial: usize,
    scale: Vec<f64>,
    bias: Vec<f64>,
    /// Scale and bias per channel (opset 21) rather than per group (opset 18).
    per_channel: bool,
    epsilon: f64,
}

impl NormKernel for GroupNorm {
    fn run<F: Compute>(&self, x: &[F], y: &mut [F]) -> Vec<(F, F)> {
        let per_group = self.channels / self.groups;
        let row = per_group * self.spatial;
        let (scale, bias): (Vec<F>, Vec<F>) = (cast(&self.scale), cast(&self.bias));
        let eps = F::from(self.epsilon).unwrap_or_else(F::zero);
        for_each_row_block(y, row, x.len() * 3, |rows, y| {
            let x = &x[rows.start * row..rows.end * row];
            for (r, (xr, yr)) in rows.clone().zip(x.chunks_exact(row).zip(y.chunks_exact_mut(row))) {
                let (mean, inv) = row_stats(xr, eps);
                let g = r % self.groups;
                for (k, (xc, yc)) in xr.chunks_exact(self.spatial).zip(yr.chunks_exact_mut(self.spatial)).enumerate() {
                    let p = if self.per_channel { g * per_group + k } else { g };
                    let (s, b) = (scale[p] * inv, bias[p]);
                    for (y, &v) in yc.iter_mut().zip(xc) {
                        *y = (v - mean) * s + b;
                    }
                }
            }
        });
        Vec::new()
    }
}

/// LayerNorm's scale and bias over one row of normalised elements, in one
/// compute type; the bias is zeros when the node has none.
struct RowAffine<F> {
    scale: Vec<F>,
    bias: Vec<F>,
}

impl<F: Float> RowAffine<F> {
    fn cast(scale: &[f64], bias: Option<&[f64]>) -> RowAffine<F> {
        let bias = bias.map(cast).unwrap_or_else(|| vec![F::zero(); scale.len()]);
        RowAffine { scale: cast(scale), bias }
    }
}

/// LayerNorm's scale and bias in both compute types.
struct LayerNormParams {
    f32: RowAffine<f32>,
    f64: RowAffine<f64>,
}

impl LayerNormParams {
    fn new(scale: &[f64], bias: Option<&[f64]>) -> LayerNormParams {
        LayerNormParams { f32: RowAffine::cast(scale, bias), f64: RowAffine::cast(scale, bias) }
    }

    /// From the node's Scale and B inputs, broadcast (unidirectionally) to the
    /// normalised dims `norm_shape`.
    fn from_inputs(name: &'static str, norm_shape: &[usize], inputs: &[Option<TensorView>]) -> Result<LayerNormParams> {
        let d: usize = norm_shape.iter().product();
        let expand = |what: &str, v: TensorView| -> Result<Vec<f64>> {
            let vals = values_f64(name, what, &v)?;
            if v.shape == norm_shape {
                return Ok(vals);
            }
            let plan = Broadcast::new(norm_shape, &[v.shape])
                .map_err(|m| CpuError::invalid(name, format!("{what} does not broadcast to {norm_shape:?}: {m}")))?;
            let mut out = vec![0.0; d];
            crate::ops::elementwise::binary::zip_assign(&plan, &mut out, &vals, |_, v| v);
            Ok(out)
        };
        let scale = expand("Scale", input(name, inputs, 1)?)?;
        let bias = optional_input(inputs, 2).map(|b| expand("B", b)).transpose()?;
        Ok(LayerNormParams::new(&scale, bias.as_deref()))
    }
}

/// LayerNormalization whose Scale (and B, if the node has one) are constants.
struct PreparedLayerNorm {
    axis: i64,
    epsilon: f32,
    scale_shape: Vec<usize>,
    bias_shape: Option<Vec<usize>>,
    /// The parameters as given; they serve the runs whose normalised dims are
    /// exactly their shape (which is how exporters write them).
    params: LayerNormParams,
}

impl PreparedLayerNorm {
    fn new(axis: i64, epsilon: f32, constants: &[Option<&Arc<Tensor>>]) -> Option<PreparedLayerNorm> {
        const NAME: &str = "LayerNormalization";
        let scale = constants.get(1).copied().flatten()?;
        let bias = constants.get(2).copied().flatten();
        let scale_values = values_f64(NAME, "Scale", &scale.view()).ok()?;
        let bias_values = bias.map(|b| values_f64(NAME, "B", &b.view())).transpose().ok()?;
        Some(PreparedLayerNorm {
            axis,
            epsilon,
            scale_shape: scale.shape().to_vec(),
            bias_shape: bias.map(|b| b.shape().to_vec()),
            params: LayerNormParams::new(&scale_values, bias_values.as_deref()),
        })
    }

    /// Whether the prepared parameters are what the node's inputs give for a run
    /// normalising over `norm_shape`.
    fn fits(&self, norm_shape: &[usize], inputs: &[Option<TensorView>]) -> bool {
        let bias_fits = match (&self.bias_shape, optional_input(inputs, 2)) {
            (Some(shape), _) => shape == norm_shape,
            // A B input that is not a constant: not prepared.
            (None, Some(_)) => false,
            (None, None) => true,
        };
        self.scale_shape == norm_shape && bias_fits
    }
}

impl Kernel for PreparedLayerNorm {
    fn run(&self, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut], _scratch: &mut Scratch) -> Result<()> {
        layer_norm("LayerNormalization", self.axis, self.epsilon, Some(self), inputs, outputs)
    }
}

struct LayerNorm<'p> {
    /// Normalised elements per row.
    d: usize,
    params: &'p LayerNormParams,
    epsilon: f64,
    want_stats: bool,
}

impl NormKernel for LayerNorm<'_> {
    fn run<F: Compute>(&self, x: &[F], y: &mut [F]) -> Vec<(F, F)> {
        let d = self.d;
        let RowAffine { scale, bias } = F::affine(self.params);
        let eps = F::from(self.epsilon).unwrap_or_else(F::zero);
        let rows = x.len().checked_div(d).unwrap_or(0);
        let mut stats = vec![(F::zero(), F::zero()); if self.want_stats { rows } else { 0 }];
        if d == 0 {
            // Each row is empty: its mean is NaN (0/0), as the definition gives.
            stats.fill((F::nan(), F::nan()));
            return stats;
        }
        // Rows and statistics are split together so each block writes its own.
        let compute =
            |x: &[F], y: &mut [F], stats: &mut [(F, F)]| normalize_rows(Rows { x, y, stats, d }, (scale, bias), eps);
        if self.want_stats {
            compute(x, y, &mut stats);
        } else {
            for_each_row_block(y, d, x.len() * 3, |rows, y| compute(&x[rows.start * d..rows.end * d], y, &mut []));
        }
        stats
    }
}

/// A block of LayerNorm rows `d` long, and where their statistics go (empty when
/// they are not wanted).
struct Rows<'a, F> {
    x: &'a [F],
    y: &'a mut [F],
    stats: &'a mut [(F, F)],
    d: usize,
}

/// Normalises each row of `rows.x` into `rows.y` (times `scale`, plus `bias`), 16 lanes wide where the CPU
/// has AVX-512. Called through an explicit AVX-512 function: through
/// [`crate::ops::wide::run`] the closure was not inlined into the wide
/// function, and the loops ran 4 lanes wide (`perf annotate` on BERT-base).
fn normalize_rows<F: Compute>(rows: Rows<F>, affine: (&[F], &[F]), eps: F) {
    #[cfg(target_arch = "x86_64")]
    if crate::ops::wide::has_avx512() {
        // SAFETY: the CPU has the features `normalize_rows_avx512` is compiled for.
        return unsafe { normalize_rows_avx512(rows, affine, eps) };
    }
    normalize_rows_with(rows, affine, eps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn normalize_rows_avx512<F: Compute>(rows: Rows<F>, affine: (&[F], &[F]), eps: F) {
    normalize_rows_with(rows, affine, eps)
}

#[inline(always)]
fn normalize_rows_with<F: Compute>(rows: Rows<F>, (scale, bias): (&[F], &[F]), eps: F) {
    let Rows { x, y, stats, d } = rows;
    for (i, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
        let (mean, inv) = row_stats(xr, eps);
        for (((y, &v), &s), &b) in yr.iter_mut().zip(xr).zip(scale).zip(bias) {
            *y = (v - mean) * inv * s + b;
        }
        if let Some(st) = stats.get_mut(i) {
            *st = (mean, inv);
        }
    }
}

/// LayerNormalization, with the parameters `prepared` holds when they fit this
/// run, else with parameters made from the inputs.
fn layer_norm(
    name: &'static str,
    axis: i64,
    epsilon: f32,
    prepared: Option<&PreparedLayerNorm>,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
) -> Result<()> {
    let x = input(name, inputs, 0)?;
    let axis = normalize_axis(name, axis, x.rank())?;
    let norm_shape = &x.shape[axis..];
    let d: usize = norm_shape.iter().product();
    let per_call;
    let params = match prepared.filter(|p| p.fits(norm_shape, inputs)) {
        Some(p) => &p.params,
        None => {
            per_call = LayerNormParams::from_inputs(name, norm_shape, inputs)?;
            &per_call
        }
    };
    let want_stats = outputs.len() > 1;
    let kernel = LayerNorm { d, params, epsilon: epsilon as f64, want_stats };
    let stats = on_floats(name, &kernel, x, output(name, outputs, 0)?)?;
    // Mean and InvStdDev: the leading dims, then ones.
    let stat_shape: Dims = x.shape.iter().enumerate().map(|(i, &n)| if i < axis { n } else { 1 }).collect();
    for (k, out) in outputs.iter_mut().enumerate().skip(1).take(2) {
        let what = if k == 1 { "Mean output" } else { "InvStdDev output" };
        expect_shape(name, what, out.shape, &stat_shape)?;
        let pick = |s: &(f64, f64)| if k == 1 { s.0 } else { s.1 };
        match out.dtype {
            DType::F32 => {
                slice_mut::<f32>(name, what, out)?.iter_mut().zip(&stats).for_each(|(o, s)| *o = pick(s) as f32)
            }
            DType::F64 => slice_mut::<f64>(name, what, out)?.iter_mut().zip(&stats).for_each(|(o, s)| *o = pick(s)),
            DType::F16 => {
                slice_mut::<f16>(name, what, out)?.iter_mut().zip(&stats).for_each(|(o, s)| *o = f16::from_f64(pick(s)))
            }
            DType::BF16 => slice_mut::<bf16>(name, what, out)?
                .iter_mut()
                .zip(&stats)
                .for_each(|(o, s)| *o = bf16::from_f64(pick(s))),
            dtype => return Err(CpuError::UnsupportedDType { op: name, dtype }),
        }
    }
    Ok(())
}

/// x / ||x||_p along one axis; a zero norm gives 0 (onnxruntime's answer).
struct LpNorm {
    n: usize,
    inner: usize,
    p: i64,
}

impl NormKernel for LpNorm {
    fn run<F: Compute>(&self, x: &[F], y: &mut [F]) -> Vec<(F, F)> {
        let (n, inner) = (self.n, self.inner);
        let block = n * inner;
        let p1 = self.p == 1;
        let scale = move |norm: F| if norm == F::zero() { F::zero() } else { F::one() / norm };
        for_each_row_block(y, block, x.len() * 2, |rows, y| {
            let x = &x[rows.start * block..rows.end * block];
            for (xb, yb) in x.chunks_exact(block).zip(y.chunks_exact_mut(block)) {
                if inner == 1 {
                    let norm = if p1 { lane_sum(xb, |v| v.abs()) } else { lane_sum(xb, |v| v * v).sqrt() };
                    let s = scale(norm);
                    for (y, &v) in yb.iter_mut().zip(xb) {
                        *y = v * s;
                    }
                } else {
                    let mut acc = vec![F::zero(); inner];
                    for row in xb.chunks_exact(inner) {
                        for (a, &v) in acc.iter_mut().zip(row) {
                            *a = *a + if p1 { v.abs() } else { v * v };
                        }
                    }
                    let s: Vec<F> = acc.iter().map(|&a| scale(if p1 { a } else { a.sqrt() })).collect();
                    for (xr, yr) in xb.chunks_exact(inner).zip(yb.chunks_exact_mut(inner)) {
                        for ((y, &v), &s) in yr.iter_mut().zip(xr).zip(&s) {
                            *y = v * s;
                        }
                    }
                }
            }
        });
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::elementwise::testing::*;
    use half::f16;
    use smelt_ir::{DType, Op, Tensor};

    /// Normalises each of `rows` contiguous groups of `len` values (population variance).
    fn normalize_rows(x: &[f64], len: usize, eps: f64) -> (Vec<f64>, Vec<(f64, f64)>) {
        let mut y = Vec::with_capacity(x.len());
        let mut stats = Vec::new();
        for row in x.chunks(len) {
            let mean = row.iter().sum::<f64>() / len as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len as f64;
            let inv = 1.0 / (var + eps).sqrt();
            y.extend(row.iter().map(|v| (v - mean) * inv));
            stats.push((mean, inv));
        }
        (y, stats)
    }

    fn vec_tensor(v: &[f32]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn batch_norm_uses_the_given_statistics() {
        let mut rng = Rng::new(21);
        for shape in [vec![2usize, 3, 4, 5], vec![4, 3]] {
            let x = rng.tensor_f32(&shape, -2.0, 2.0);
            let scale = rng.vec_f32(3, 0.5, 1.5);
            let bias = rng.vec_f32(3, -1.0, 1.0);
            let mean = rng.vec_f32(3, -0.5, 0.5);
            let var = rng.vec_f32(3, 0.5, 2.0);
            let inputs = [x.clone(), vec_tensor(&scale), vec_tensor(&bias), vec_tensor(&mean), vec_tensor(&var)];
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let y = run1(&Op::BatchNormalization { epsilon: 1e-5 }, &refs, DType::F32, &shape).unwrap();
            let spatial: usize = shape[2..].iter().product();
            let want: Vec<f64> = x
                .to_f64_vec()
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = (i / spatial) % 3;
                    (v - mean[c] as f64) / (var[c] as f64 + 1e-5).sqrt() * scale[c] as f64 + bias[c] as f64
                })
                .collect();
            assert_close(&y.to_f64_vec(), &want, 1e-5);
        }
        let x = Tensor::zeros(DType::F32, &[2, 3]);
        let short = vec_tensor(&[1.0, 1.0]);
        let p = vec_tensor(&[1.0; 3]);
        assert!(
            run1(&Op::BatchNormalization { epsilon: 1e-5 }, &[&x, &short, &p, &p, &p], DType::F32, &[2, 3]).is_err()
        );
    }

    #[test]
    fn instance_and_group_norm() {
        let mut rng = Rng::new(22);
        let shape = [2usize, 4, 3, 5];
        let x = rng.tensor_f32(&shape, -3.0, 3.0);
        let xs = x.to_f64_vec();
        let scale = rng.vec_f32(4, 0.5, 1.5);
        let bias = rng.vec_f32(4, -1.0, 1.0);
        let y = run1(
            &Op::InstanceNormalization { epsilon: 1e-5 },
            &[&x, &vec_tensor(&scale), &vec_tensor(&bias)],
            DType::F32,
            &shape,
        )
        .unwrap();
        let (norm, _) = normalize_rows(&xs, 15, 1e-5);
        let want: Vec<f64> =
            norm.iter().enumerate().map(|(i, v)| v * scale[(i / 15) % 4] as f64 + bias[(i / 15) % 4] as f64).collect();
        assert_close(&y.to_f64_vec(), &want, 1e-5);

        // Two groups of two channels; opset 21 (per channel) and opset 18 (per group).
        let (norm, _) = normalize_rows(&xs, 30, 1e-5);
        let op = Op::GroupNormalization { epsilon: 1e-5, num_groups: 2, per_channel: true };
        let y = run1(&op, &[&x, &vec_tensor(&scale), &vec_tensor(&bias)], DType::F32, &shape).unwrap();
        let want: Vec<f64> =
            norm.iter().enumerate().map(|(i, v)| v * scale[(i / 15) % 4] as f64 + bias[(i / 15) % 4] as f64).collect();
        assert_close(&y.to_f64_vec(), &want, 1e-5);
        let op = Op::GroupNormalization { epsilon: 1e-5, num_groups: 2, per_channel: false };
        let y = run1(&op, &[&x, &vec_tensor(&scale[..2]), &vec_tensor(&bias[..2])], DType::F32, &shape).unwrap();
        let want: Vec<f64> =
            norm.iter().enumerate().map(|(i, v)| v * scale[(i / 30) % 2] as f64 + bias[(i / 30) % 2] as f64).collect();
        assert_close(&y.to_f64_vec(), &want, 1e-5);
        let op = Op::GroupNormalization { epsilon: 1e-5, num_groups: 3, per_channel: true };
        assert!(run1(&op, &[&x, &vec_tensor(&scale), &vec_tensor(&bias)], DType::F32, &shape).is_err());
    }

    #[test]
    fn layer_norm_with_statistics_and_broadcast_scale() {
        let mut rng = Rng::new(23);
        let shape = [2usize, 3, 4];
        let x = rng.tensor_f32(&shape, -3.0, 3.0);
        let xs = x.to_f64_vec();
        // Normalise over the last two axes with a [4] scale broadcast to [3, 4].
        let scale = rng.vec_f32(4, 0.5, 1.5);
        let bias = rng.tensor_f32(&[3, 4], -1.0, 1.0);
        let op = Op::LayerNormalization { axis: 1, epsilon: 1e-5 };
        let outs = run(
            &op,
            &[Some(&x), Some(&vec_tensor(&scale)), Some(&bias)],
            &[(DType::F32, &shape), (DType::F32, &[2, 1, 1]), (DType::F32, &[2, 1, 1])],
        )
        .unwrap();
        let (norm, stats) = normalize_rows(&xs, 12, 1e-5);
        let b = bias.to_f64_vec();
        let want: Vec<f64> = norm.iter().enumerate().map(|(i, v)| v * scale[i % 4] as f64 + b[i % 12]).collect();
        assert_close(&outs[0].to_f64_vec(), &want, 1e-5);
        assert_close(&outs[1].to_f64_vec(), &stats.iter().map(|s| s.0).collect::<Vec<_>>(), 1e-6);
        assert_close(&outs[2].to_f64_vec(), &stats.iter().map(|s| s.1).collect::<Vec<_>>(), 1e-5);

        // The hot case: last axis, large enough to split across threads, no bias.
        let x = rng.tensor_f32(&[256, 768], -3.0, 3.0);
        let scale = rng.vec_f32(768, 0.5, 1.5);
        let y = run1(
            &Op::LayerNormalization { axis: -1, epsilon: 1e-5 },
            &[&x, &vec_tensor(&scale)],
            DType::F32,
            &[256, 768],
        )
        .unwrap();
        let (norm, _) = normalize_rows(&x.to_f64_vec(), 768, 1e-5);
        let want: Vec<f64> = norm.iter().enumerate().map(|(i, v)| v * scale[i % 768] as f64).collect();
        assert_close(&y.to_f64_vec(), &want, 2e-5);
    }

    /// The prepared kernel gives the reference kernel's bits, with its constants
    /// used as they are, broadcast, or (B given at run time) not prepared at all.
    #[test]
    fn prepared_layer_norm_matches_the_reference() {
        use crate::ops::testing::{random, run_kernel};
        use std::sync::Arc;
        let op = Op::LayerNormalization { axis: -2, epsilon: 1e-5 };
        let x = random(DType::F32, &[3, 4, 5], 1);
        let x64 = random(DType::F64, &[3, 4, 5], 1);
        let stats: [(DType, &[usize]); 3] =
            [(DType::F32, &[3, 4, 5]), (DType::F32, &[3, 1, 1]), (DType::F32, &[3, 1, 1])];
        let scale = Arc::new(random(DType::F32, &[4, 5], 2));
        let bias = Arc::new(random(DType::F32, &[4, 5], 3));
        let row_bias = Arc::new(random(DType::F32, &[5], 4));
        let cases = [
            (vec![None, Some(&scale), Some(&bias)], Some(&bias)),
            (vec![None, Some(&scale), Some(&row_bias)], Some(&row_bias)),
            (vec![None, Some(&scale)], None),
            (vec![None, Some(&scale), None], Some(&bias)),
        ];
        for (constants, b) in cases {
            let kernel = crate::prepare(&op, &constants);
            for (x, outputs) in [(&x, &stats[..]), (&x64, &[(DType::F64, &[3, 4, 5][..])][..])] {
                let inputs = [Some(x), Some(&*scale), b.map(|b| &**b)];
                let want = run(&op, &inputs, outputs).unwrap();
                assert_eq!(run_kernel(kernel.as_ref(), &inputs, outputs), want, "{constants:?}");
            }
        }
    }

    #[test]
    fn layer_norm_in_f16_computes_in_f32() {
        let vals = [1.0f32, 2.0, 4.0, 8.0];
        let x = Tensor::from_vec(&[1, 4], vals.map(f16::from_f32).to_vec()).unwrap();
        let scale = Tensor::from_vec(&[4], vec![f16::ONE; 4]).unwrap();
        let y = run1(&Op::LayerNormalization { axis: -1, epsilon: 0.0 }, &[&x, &scale], DType::F16, &[1, 4]).unwrap();
        let (norm, _) = normalize_rows(&vals.map(|v| v as f64), 4, 0.0);
        assert_close(&y.to_f64_vec(), &norm, 1e-3);
    }

    #[test]
    fn lp_norm_along_each_axis() {
        let x = Tensor::from_vec(&[2, 2], vec![3f32, 4.0, 0.0, 0.0]).unwrap();
        let y = run1(&Op::LpNormalization { axis: -1, p: 2 }, &[&x], DType::F32, &[2, 2]).unwrap();
        assert_close(&y.to_f64_vec(), &[0.6, 0.8, 0.0, 0.0], 1e-7);
        let y = run1(&Op::LpNormalization { axis: 1, p: 1 }, &[&x], DType::F32, &[2, 2]).unwrap();
        assert_close(&y.to_f64_vec(), &[3.0 / 7.0, 4.0 / 7.0, 0.0, 0.0], 1e-7);
        let y = run1(&Op::LpNormalization { axis: 0, p: 2 }, &[&x], DType::F32, &[2, 2]).unwrap();
        assert_close(&y.to_f64_vec(), &[1.0, 1.0, 0.0, 0.0], 1e-7);
        assert!(run1(&Op::LpNormalization { axis: 0, p: 3 }, &[&x], DType::F32, &[2, 2]).is_err());
    }
}
