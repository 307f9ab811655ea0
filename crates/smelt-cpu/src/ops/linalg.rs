//! Matrix products: MatMul (numpy semantics, with the bias and activation that
//! fusion adds), Gemm, Einsum (in [`super::einsum`]), and the prepared kernels
//! that put constant weights into the layout the product reads, once.

use super::dims::Dims;
use super::gemm::{
    self, bias_cols_then_activate, gemm, gemm_wrapping, parallelism, Float, GemmEpilogue, Layout, PackedRhs,
    Parallelism,
};
use super::operands::{expect_dtype, expect_shape, first_output, optional, required};
use crate::team;
use crate::{CpuError, Kernel, Result, Scratch};
use half::{bf16, f16};
use smallvec::smallvec;
use smelt_ir::{DType, Element, Op, Tensor, TensorView, TensorViewMut, UnaryOp};
use std::sync::Arc;

pub fn eval(
    op: &Op,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
    _scratch: &mut Scratch,
) -> Result<()> {
    match op {
        Op::MatMul { activation } => matmul(inputs, outputs, activation.as_ref()),
        Op::Gemm { alpha, beta, trans_a, trans_b, activation } => {
            let attrs = GemmAttrs { alpha: *alpha, beta: *beta, trans_a: *trans_a, trans_b: *trans_b };
            gemm_op(&attrs, inputs, outputs, activation.as_ref())
        }
        Op::Einsum { equation } => super::einsum::eval(equation, inputs, outputs),
        other => Err(CpuError::invalid(other.name(), "is not a matrix product")),
    }
}

/// A specialised kernel for MatMul/Gemm/Conv whose weights (input 1) are
/// constant f32, or `None` to use the reference kernel.
pub fn prepare(op: &Op, constants: &[Option<&Arc<Tensor>>]) -> Option<Box<dyn Kernel>> {
    match op {
        Op::MatMul { activation } => PreparedMatMul::prepare(constants, activation.clone()),
        Op::Gemm { alpha, beta, trans_a, trans_b, activation } => {
            let attrs = GemmAttrs { alpha: *alpha, beta: *beta, trans_a: *trans_a, trans_b: *trans_b };
            PreparedGemm::prepare(attrs, constants, activation.clone())
        }
        Op::Conv(attrs) => super::conv::prepare(attrs, constants),
        _ => None,
    }
}

fn constant_at<'a>(constants: &[Option<&'a Arc<Tensor>>], index: usize) -> Option<&'a Arc<Tensor>> {
    constants.get(index).copied().flatten()
}

/// Runs `$body` with `$T` bound to the Rust type of an integer dtype.
macro_rules! dispatch_int {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            DType::I8 => {
                type $T = i8;
                $body
            }
            DType::U8 => {
                type $T = u8;
                $body
            }
            DType::I16 => {
                type $T = i16;
                $body
            }
            DType::U16 => {
                type $T = u16;
                $body
            }
            DType::I32 => {
                type $T = i32;
                $body
            }
            DType::U32 => {
                type $T = u32;
                $body
            }
            DType::I64 => {
                type $T = i64;
                $body
            }
            DType::U64 => {
                type $T = u64;
                $body
            }
            dtype => Err(CpuError::UnsupportedDType { op: "MatMul", dtype }),
        }
    };
}

// ── MatMul ─────────────────────────────────────────────────────────────────

/// How a numpy-style MatMul splits into 2-D products: `batches` products of
/// `m`×`k` by `k`×`n`, with A's and B's batch dims broadcast against each other.
#[derive(Debug)]
struct MatMulPlan {
    m: usize,
    n: usize,
    k: usize,
    out_shape: Dims,
    /// The broadcast batch shape and, per batch dim, A's and B's element strides
    /// (0 where that operand is broadcast).
    batch_shape: Dims,
    a_batch_strides: Dims,
    b_batch_strides: Dims,
    batches: usize,
}

impl MatMulPlan {
    fn new(a: &[usize], b: &[usize]) -> Result<MatMulPlan> {
        let bad = |why: String| CpuError::invalid("MatMul", why);
        if a.is_empty() || b.is_empty() {
            return Err(bad(format!("operands must have rank >= 1, got {a:?} and {b:?}")));
        }
        let (m, k) = if a.len() == 1 { (1, a[0]) } else { (a[a.len() - 2], a[a.len() - 1]) };
        let (kb, n) = if b.len() == 1 { (b[0], 1) } else { (b[b.len() - 2], b[b.len() - 1]) };
        if k != kb {
            return Err(bad(format!("inner dimensions differ: A {a:?} and B {b:?}")));
        }
        let a_batch = &a[..a.len().saturating_sub(2)];
        let b_batch = &b[..b.len().saturating_sub(2)];
        let rank = a_batch.len().max(b_batch.len());
        let mut batch_shape: Dims = smallvec![1; rank];
        let mut a_batch_strides: Dims = smallvec![0; rank];
        let mut b_batch_strides: Dims = smallvec![0; rank];
        let (mut a_stride, mut b_stride) = (m * k, k * n);
        for i in (0..rank).rev() {
            let da = (i + a_batch.len()).checked_sub(rank).map_or(1, |j| a_batch[j]);
            let db = (i + b_batch.len()).checked_sub(rank).map_or(1, |j| b_batch[j]);
            let d = match (da, db) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => return Err(bad(format!("batch dimensions of {a:?} and {b:?} do not broadcast"))),
            };
            batch_shape[i] = d;
            a_batch_strides[i] = if da == 1 { 0 } else { a_stride };
            b_batch_strides[i] = if db == 1 { 0 } else { b_stride };
            a_stride *= da;
            b_stride *= db;
        }
        let mut out_shape = batch_shape.clone();
        if a.len() > 1 {
            out_shape.push(m);
        }
        if b.len() > 1 {
            out_shape.push(n);
        }
        let batches = batch_shape.iter().product();
        Ok(MatMulPlan { m, n, k, out_shape, batch_shape, a_batch_strides, b_batch_strides, batches })
    }

    /// Element offsets of batch `index`'s A and B matrices.
    fn offsets(&self, mut index: usize) -> (usize, usize) {
        let (mut a, mut b) = (0, 0);
        for d in (0..self.batch_shape.len()).rev() {
            let i = index % self.batch_shape[d];
            index /= self.batch_shape[d];
            a += i * self.a_batch_strides[d];
            b += i * self.b_batch_strides[d];
        }
        (a, b)
    }

    /// True when every batch multiplies by the same B: then A's batches stack into
    /// one tall product, which is much faster than many short ones.
    fn b_is_shared(&self) -> bool {
        self.b_batch_strides.iter().all(|&s| s == 0)
    }
}

/// The residual's position among MatMul's inputs (`A, B, bias?, Z?`), which
/// residual fusion adds.
const RESIDUAL_INPUT: usize = 3;

/// The fused residual input, checked to have the output's dtype and shape.
fn residual_input<'a>(
    inputs: &[Option<TensorView<'a>>],
    plan: &MatMulPlan,
    dtype: DType,
) -> Result<Option<TensorView<'a>>> {
    let residual = optional(inputs, RESIDUAL_INPUT);
    if let Some(z) = residual {
        expect_dtype("MatMul", "Z", z.dtype, dtype)?;
        expect_shape("MatMul", "Z", z.shape, &plan.out_shape)?;
    }
    Ok(residual)
}

fn matmul(inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut], activation: Option<&UnaryOp>) -> Result<()> {
    const OP: &str = "MatMul";
    let a = required(OP, inputs, 0)?;
    let b = required(OP, inputs, 1)?;
    let bias = optional(inputs, 2);
    let y = first_output(OP, outputs)?;
    let plan = MatMulPlan::new(a.shape, b.shape)?;
    expect_shape(OP, "output", y.shape, &plan.out_shape)?;
    expect_dtype(OP, "B", b.dtype, a.dtype)?;
    expect_dtype(OP, "output", y.dtype, a.dtype)?;
    if let Some(bias) = bias {
        expect_dtype(OP, "bias", bias.dtype, a.dtype)?;
    }
    let residual = residual_input(inputs, &plan, a.dtype)?;
    match a.dtype {
        DType::F32 => matmul_typed::<f32>(&plan, a, b.as_slice()?, bias, residual, y, activation),
        DType::F64 => matmul_typed::<f64>(&plan, a, b.as_slice()?, bias, residual, y, activation),
        DType::F16 => matmul_typed::<f16>(&plan, a, b.as_slice()?, bias, residual, y, activation),
        DType::BF16 => {
            let a32 = widen_bf16(a.as_slice()?);
            let b32 = widen_bf16(b.as_slice()?);
            let bias32 = bias.map(|t| t.as_slice::<bf16>().map(widen_bf16)).transpose()?;
            let z32 = residual.map(|t| t.as_slice::<bf16>().map(widen_bf16)).transpose()?;
            let mut y32 = vec![0f32; y.len()];
            let bias32 = bias_vector(OP, bias32.as_deref(), plan.n)?;
            matmul_float(&plan, &a32, &b32, None, bias32.as_deref(), z32.as_deref(), &mut y32, activation);
            narrow_bf16(&y32, y.as_mut_slice()?);
            Ok(())
        }
        dtype if dtype.is_int() => {
            if activation.is_some() || bias.is_some() || residual.is_some() {
                return Err(CpuError::invalid(
                    OP,
                    format!("fused bias, residual or activation on {dtype} is not supported"),
                ));
            }
            dispatch_int!(dtype, T => matmul_wrapping::<T>(&plan, a, b, y))
        }
        dtype => Err(CpuError::UnsupportedDType { op: OP, dtype }),
    }
}

fn matmul_typed<T: Float + Element>(
    plan: &MatMulPlan,
    a: TensorView,
    b: &[T],
    bias: Option<TensorView>,
    residual: Option<TensorView>,
    y: &mut TensorViewMut,
    activation: Option<&UnaryOp>,
) -> Result<()> {
    let bias = bias.map(|t| t.as_slice::<T>()).transpose()?;
    let bias = bias_vector("MatMul", bias, plan.n)?;
    let residual = residual.map(|t| t.as_slice::<T>()).transpose()?;
    matmul_float(plan, a.as_slice()?, b, None, bias.as_deref(), residual, y.as_mut_slice()?, activation);
    Ok(())
}

/// The fused bias as one value per output column: fusion gives `[N]`, and a
/// single value is broadcast.
fn bias_vector<'a, T: Float>(
    op: &'static str,
    bias: Option<&'a [T]>,
    n: usize,
) -> Result<Option<std::borrow::Cow<'a, [T]>>> {
    match bias {
        None => Ok(None),
        Some(b) if b.len() == n => Ok(Some(std::borrow::Cow::Borrowed(b))),
        Some(b) if b.len() == 1 => Ok(Some(std::borrow::Cow::Owned(vec![b[0]; n]))),
        Some(b) => Err(CpuError::invalid(op, format!("bias has {} elements, expected {n}", b.len()))),
    }
}

/// The float MatMul, shared by `eval` and the prepared kernel: `y ← a·b`, plus
/// `bias` (one value per column) and the `residual` (shaped as `y`), then the
/// activation.
#[allow(clippy::too_many_arguments)]
fn matmul_float<T: Float>(
    plan: &MatMulPlan,
    a: &[T],
    b: &[T],
    packed_b: Option<&PackedRhs>,
    bias: Option<&[T]>,
    residual: Option<&[T]>,
    y: &mut [T],
    activation: Option<&UnaryOp>,
) {
    let MatMulPlan { m, n, k, batches, .. } = *plan;
    if y.is_empty() {
        return;
    }
    let (one, zero) = (T::one(), T::zero());
    if batches == 1 || plan.b_is_shared() {
        let rows = batches * m;
        let par = parallelism(rows, n, k);
        assert!(a.len() >= rows * k && y.len() >= rows * n, "MatMul operands are smaller than the plan");
        // Bias, residual and activation as the packed product writes Y (see
        // `GemmEpilogue`); after the whole product otherwise.
        let epilogue = GemmEpilogue { col_bias: bias, residual, activation, ..GemmEpilogue::NONE };
        // SAFETY: A spans rows·k elements and Y rows·n, as just checked; Y is borrowed mutably.
        let done = packed_b.is_some_and(|p| unsafe {
            T::gemm_packed_rhs(
                rows,
                k,
                a.as_ptr(),
                Layout::row_major(k),
                p,
                y.as_mut_ptr(),
                n,
                one,
                zero,
                &epilogue,
                par,
            )
        });
        if !done {
            gemm(rows, n, k, a, Layout::row_major(k), b, Layout::row_major(n), y, Layout::row_major(n), one, zero, par);
            // SAFETY: Y holds rows·n elements, borrowed mutably here.
            unsafe { epilogue.apply_rows(y.as_mut_ptr(), rows, n, n) };
        }
        return;
    }
    let threads = team::threads();
    let batch_parallel = threads > 1 && batches >= threads && batches * m * n * k >= 1 << 18;
    let run = |index: usize, c: &mut [T], par: Parallelism| {
        let (ao, bo) = plan.offsets(index);
        gemm(
            m,
            n,
            k,
            &a[ao..],
            Layout::row_major(k),
            &b[bo..],
            Layout::row_major(n),
            c,
            Layout::row_major(n),
            one,
            zero,
            par,
        );
        let residual = residual.map(|z| &z[index * m * n..][..m * n]);
        let epilogue = GemmEpilogue { col_bias: bias, residual, activation, ..GemmEpilogue::NONE };
        // SAFETY: `c` is this batch's m·n elements, borrowed mutably here.
        unsafe { epilogue.apply_rows(c.as_mut_ptr(), m, n, n) };
    };
    if batch_parallel {
        team::for_each_piece(y, m * n, |i, c| run(i, c, Parallelism::None));
    } else {
        let par = parallelism(m, n, k);
        y.chunks_mut(m * n).enumerate().for_each(|(i, c)| run(i, c, par));
    }
}

fn matmul_wrapping<T>(plan: &MatMulPlan, a: TensorView, b: TensorView, y: &mut TensorViewMut) -> Result<()>
where
    T: Element + num_traits::Zero + num_traits::WrappingAdd + num_traits::WrappingMul,
{
    let (a, b) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
    let MatMulPlan { m, n, k, .. } = *plan;
    let y = y.as_mut_slice::<T>()?;
    if y.is_empty() {
        return Ok(());
    }
    for (i, c) in y.chunks_mut(m * n).enumerate() {
        let (ao, bo) = plan.offsets(i);
        gemm_wrapping(m, n, k, &a[ao..], Layout::row_major(k), &b[bo..], Layout::row_major(n), c, Layout::row_major(n));
    }
    Ok(())
}

fn widen_bf16(v: &[bf16]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

fn narrow_bf16(src: &[f32], dst: &mut [bf16]) {
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = bf16::from_f32(s));
}

/// MatMul with a constant 2-D f32 B (`[K, N]`), packed once into the GEMM
/// kernel's panel layout where the CPU has that kernel; the plain weight stays
/// shared with the graph for the other paths. A constant bias is checked once.
struct PreparedMatMul {
    b: Arc<Tensor>,
    packed: Option<PackedRhs>,
    bias: Option<Arc<Tensor>>,
    activation: Option<UnaryOp>,
}

impl PreparedMatMul {
    fn prepare(constants: &[Option<&Arc<Tensor>>], activation: Option<UnaryOp>) -> Option<Box<dyn Kernel>> {
        let b = constant_at(constants, 1)?;
        if b.dtype() != DType::F32 || b.rank() != 2 {
            return None;
        }
        let n = b.shape()[1];
        let bias = match constant_at(constants, 2) {
            Some(t) if t.dtype() == DType::F32 && (t.len() == n || t.len() == 1) => Some(Arc::clone(t)),
            Some(_) => return None,
            None => None,
        };
        let k = b.shape()[0];
        let packed = PackedRhs::new(k, n, b.as_slice().ok()?, Layout::row_major(n));
        Some(Box::new(PreparedMatMul { b: Arc::clone(b), packed, bias, activation }))
    }
}

impl Kernel for PreparedMatMul {
    fn run(&self, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut], _scratch: &mut Scratch) -> Result<()> {
        const OP: &str = "MatMul";
        let a = required(OP, inputs, 0)?;
        expect_dtype(OP, "A", a.dtype, DType::F32)?;
        let y = first_output(OP, outputs)?;
        expect_dtype(OP, "output", y.dtype, DType::F32)?;
        let plan = MatMulPlan::new(a.shape, self.b.shape())?;
        expect_shape(OP, "output", y.shape, &plan.out_shape)?;
        let runtime_bias = match &self.bias {
            Some(_) => None,
            None => optional(inputs, 2),
        };
        let bias = match (&self.bias, runtime_bias) {
            (Some(t), _) => Some(t.as_slice::<f32>()?),
            (None, Some(t)) => Some(t.as_slice::<f32>()?),
            (None, None) => None,
        };
        let bias = bias_vector(OP, bias, plan.n)?;
        let residual = residual_input(inputs, &plan, DType::F32)?.map(|z| z.as_slice::<f32>()).transpose()?;
        matmul_float(
            &plan,
            a.as_slice()?,
            self.b.as_slice()?,
            self.packed.as_ref(),
            bias.as_deref(),
            residual,
            y.as_mut_slice()?,
            self.activation.as_ref(),
        );
        Ok(())
    }
}

// ── Gemm ───────────────────────────────────────────────────────────────────

#[derive(Clone, Copy, Debug)]
struct GemmAttrs {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

/// Gemm's dimensions and where A and B sit, after the transposes.
struct GemmShape {
    m: usize,
    n: usize,
    k: usize,
    a_layout: Layout,
}

fn gemm_a_shape(a: &[usize], trans_a: bool) -> Result<(usize, usize, Layout)> {
    if a.len() != 2 {
        return Err(CpuError::invalid("Gemm", format!("A must be 2-D, got {a:?}")));
    }
    Ok(if trans_a { (a[1], a[0], Layout::row_major(a[1]).transposed()) } else { (a[0], a[1], Layout::row_major(a[1])) })
}

fn gemm_b_shape(b: &[usize], trans_b: bool) -> Result<(usize, usize, Layout)> {
    if b.len() != 2 {
        return Err(CpuError::invalid("Gemm", format!("B must be 2-D, got {b:?}")));
    }
    Ok(if trans_b { (b[1], b[0], Layout::row_major(b[1]).transposed()) } else { (b[0], b[1], Layout::row_major(b[1])) })
}

/// How C reaches element (i, j) of the `[M, N]` output: C may be a scalar, `[N]`,
/// `[1, N]`, `[M, 1]`, `[M, N]` (numpy's unidirectional broadcast).
#[derive(Clone, Copy, Debug, PartialEq)]
struct CBroadcast {
    row: usize,
    col: usize,
}

impl CBroadcast {
    fn new(c: &[usize], m: usize, n: usize) -> Result<CBroadcast> {
        let dims: [usize; 2] = match *c {
            [] => [1, 1],
            [d] => [1, d],
            [r, d] => [r, d],
            _ => return Err(CpuError::invalid("Gemm", format!("C must have rank <= 2, got {c:?}"))),
        };
        let fits = |d: usize, want: usize| d == want || d == 1;
        if !fits(dims[0], m) || !fits(dims[1], n) {
            return Err(CpuError::invalid("Gemm", format!("C {c:?} does not broadcast to [{m}, {n}]")));
        }
        let col = usize::from(dims[1] != 1);
        let row = if dims[0] != 1 { dims[1] } else { 0 };
        Ok(CBroadcast { row, col })
    }

    /// One value per column, the same for every row: it can be added in the
    /// epilogue instead of being written into the output before the product.
    fn is_row_vector(self) -> bool {
        self.row == 0
    }
}

impl GemmShape {
    fn new(a: &[usize], b: &[usize], attrs: &GemmAttrs) -> Result<(GemmShape, Layout)> {
        let (m, k, a_layout) = gemm_a_shape(a, attrs.trans_a)?;
        let (kb, n, b_layout) = gemm_b_shape(b, attrs.trans_b)?;
        if k != kb {
            return Err(CpuError::invalid("Gemm", format!("inner dimensions differ: A {a:?}, B {b:?}")));
        }
        Ok((GemmShape { m, n, k, a_layout }, b_layout))
    }
}

fn gemm_op(
    attrs: &GemmAttrs,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
    activation: Option<&UnaryOp>,
) -> Result<()> {
    const OP: &str = "Gemm";
    let a = required(OP, inputs, 0)?;
    let b = required(OP, inputs, 1)?;
    let c = optional(inputs, 2);
    let y = first_output(OP, outputs)?;
    let (shape, b_layout) = GemmShape::new(a.shape, b.shape, attrs)?;
    expect_shape(OP, "output", y.shape, &[shape.m, shape.n])?;
    expect_dtype(OP, "B", b.dtype, a.dtype)?;
    expect_dtype(OP, "output", y.dtype, a.dtype)?;
    let c = match c {
        Some(c) => {
            expect_dtype(OP, "C", c.dtype, a.dtype)?;
            Some((c, CBroadcast::new(c.shape, shape.m, shape.n)?))
        }
        None => None,
    };
    match a.dtype {
        DType::F32 => gemm_typed::<f32>(attrs, &shape, a, b, b_layout, c, y, activation),
        DType::F64 => gemm_typed::<f64>(attrs, &shape, a, b, b_layout, c, y, activation),
        DType::F16 => gemm_typed::<f16>(attrs, &shape, a, b, b_layout, c, y, activation),
        DType::BF16 => {
            let a32 = widen_bf16(a.as_slice()?);
            let b32 = widen_bf16(b.as_slice()?);
            let c32 = c.map(|(t, bc)| t.as_slice::<bf16>().map(|s| (widen_bf16(s), bc))).transpose()?;
            let mut y32 = vec![0f32; y.len()];
            let c32 = c32.as_ref().map(|(v, bc)| (v.as_slice(), *bc));
            gemm_float(attrs, &shape, &a32, &b32, b_layout, None, c32, &mut y32, activation);
            narrow_bf16(&y32, y.as_mut_slice()?);
            Ok(())
        }
        dtype if dtype.is_int() => {
            if activation.is_some() {
                return Err(CpuError::invalid(OP, format!("fused activation on {dtype} is not supported")));
            }
            dispatch_int!(dtype, T => gemm_integer::<T>(attrs, &shape, a, b, b_layout, c, y))
        }
        dtype => Err(CpuError::UnsupportedDType { op: OP, dtype }),
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm_typed<T: Float + Element>(
    attrs: &GemmAttrs,
    shape: &GemmShape,
    a: TensorView,
    b: TensorView,
    b_layout: Layout,
    c: Option<(TensorView, CBroadcast)>,
    y: &mut TensorViewMut,
    activation: Option<&UnaryOp>,
) -> Result<()> {
    let c = c.map(|(t, bc)| t.as_slice::<T>().map(|s| (s, bc))).transpose()?;
    gemm_float(attrs, shape, a.as_slice()?, b.as_slice()?, b_layout, None, c, y.as_mut_slice()?, activation);
    Ok(())
}

/// `y = act(alpha·A'·B' + beta·C)`, shared by `eval` and the prepared kernel.
#[allow(clippy::too_many_arguments)]
fn gemm_float<T: Float>(
    attrs: &GemmAttrs,
    shape: &GemmShape,
    a: &[T],
    b: &[T],
    b_layout: Layout,
    packed_b: Option<&PackedRhs>,
    c: Option<(&[T], CBroadcast)>,
    y: &mut [T],
    activation: Option<&UnaryOp>,
) {
    let GemmShape { m, n, k, a_layout } = *shape;
    let alpha = T::from_f32(attrs.alpha);
    let beta = T::from_f32(attrs.beta);
    let c = c.filter(|_| attrs.beta != 0.0);
    let par = parallelism(m, n, k);
    let y_layout = Layout::row_major(n);
    assert!(a_layout.span(m, k) <= a.len() && y.len() >= m * n, "Gemm operands are smaller than their shapes");
    let product = |y: &mut [T], beta: T| {
        // SAFETY: A's span and Y's size were checked above; Y is borrowed mutably.
        let done = packed_b.is_some_and(|p| unsafe {
            T::gemm_packed_rhs(m, k, a.as_ptr(), a_layout, p, y.as_mut_ptr(), n, alpha, beta, &GemmEpilogue::NONE, par)
        });
        if !done {
            gemm(m, n, k, a, a_layout, b, b_layout, y, y_layout, alpha, beta, par);
        }
    };
    match c {
        Some((c, bc)) if bc.is_row_vector() => {
            // A bias row: add it after the product, together with the activation.
            product(y, T::zero());
            for row in y.chunks_exact_mut(n) {
                row.iter_mut().enumerate().for_each(|(j, v)| *v = *v + beta * c[j * bc.col]);
                if let Some(act) = activation {
                    gemm::activate(row, act);
                }
            }
        }
        Some((c, bc)) => {
            for (i, row) in y.chunks_exact_mut(n).enumerate() {
                row.iter_mut().enumerate().for_each(|(j, v)| *v = beta * c[i * bc.row + j * bc.col]);
            }
            product(y, T::one());
            bias_cols_then_activate(y, n, None, activation);
        }
        None => {
            product(y, T::zero());
            bias_cols_then_activate(y, n, None, activation);
        }
    }
}

/// Integer Gemm: the product wraps like MatMul's; alpha and beta (floats in
/// ONNX) are applied in f64 and the result cast back.
fn gemm_integer<T>(
    attrs: &GemmAttrs,
    shape: &GemmShape,
    a: TensorView,
    b: TensorView,
    b_layout: Layout,
    c: Option<(TensorView, CBroadcast)>,
    y: &mut TensorViewMut,
) -> Result<()>
where
    T: Element + num_traits::Zero + num_traits::WrappingAdd + num_traits::WrappingMul,
{
    let GemmShape { m, n, k, a_layout } = *shape;
    let y = y.as_mut_slice::<T>()?;
    gemm_wrapping(m, n, k, a.as_slice::<T>()?, a_layout, b.as_slice::<T>()?, b_layout, y, Layout::row_major(n));
    let c = c.map(|(t, bc)| t.as_slice::<T>().map(|s| (s, bc))).transpose()?;
    if attrs.alpha == 1.0 && (c.is_none() || attrs.beta == 0.0) {
        return Ok(());
    }
    for i in 0..m {
        for j in 0..n {
            let v = &mut y[i * n + j];
            let mut r = attrs.alpha as f64 * v.to_f64();
            if let Some((c, bc)) = c {
                r += attrs.beta as f64 * c[i * bc.row + j * bc.col].to_f64();
            }
            *v = T::from_f64(r);
        }
    }
    Ok(())
}

/// Gemm with a constant f32 B, stored once as `[K, N]` row-major (transposed here
/// when `trans_b`), the layout the product reads without repacking. A constant C
/// is kept with its broadcast resolved against N.
struct PreparedGemm {
    attrs: GemmAttrs,
    /// `[K, N]` row-major.
    b: Vec<f32>,
    /// The same, packed for the GEMM kernel where the CPU has it.
    packed: Option<PackedRhs>,
    k: usize,
    n: usize,
    c: Option<Arc<Tensor>>,
    activation: Option<UnaryOp>,
}

impl PreparedGemm {
    fn prepare(
        attrs: GemmAttrs,
        constants: &[Option<&Arc<Tensor>>],
        activation: Option<UnaryOp>,
    ) -> Option<Box<dyn Kernel>> {
        let b = constant_at(constants, 1)?;
        if b.dtype() != DType::F32 {
            return None;
        }
        let (k, n, layout) = gemm_b_shape(b.shape(), attrs.trans_b).ok()?;
        let src = b.as_slice::<f32>().ok()?;
        let mut packed = vec![0f32; k * n];
        for p in 0..k {
            for (j, dst) in packed[p * n..(p + 1) * n].iter_mut().enumerate() {
                *dst = src[p * layout.row + j * layout.col];
            }
        }
        let c = match constant_at(constants, 2) {
            Some(c) if c.dtype() == DType::F32 => Some(Arc::clone(c)),
            Some(_) => return None,
            None => None,
        };
        let plain = packed;
        let packed = PackedRhs::new(k, n, &plain, Layout::row_major(n));
        Some(Box::new(PreparedGemm { attrs, b: plain, packed, k, n, c, activation }))
    }
}

impl Kernel for PreparedGemm {
    fn run(&self, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut], _scratch: &mut Scratch) -> Result<()> {
        const OP: &str = "Gemm";
        let a = required(OP, inputs, 0)?;
        expect_dtype(OP, "A", a.dtype, DType::F32)?;
        let (m, k, a_layout) = gemm_a_shape(a.shape, self.attrs.trans_a)?;
        if k != self.k {
            return Err(CpuError::invalid(
                OP,
                format!("A {:?} does not match B's inner dimension {}", a.shape, self.k),
            ));
        }
        let n = self.n;
        let y = first_output(OP, outputs)?;
        expect_shape(OP, "output", y.shape, &[m, n])?;
        expect_dtype(OP, "output", y.dtype, DType::F32)?;
        let runtime_c = if self.c.is_some() { None } else { optional(inputs, 2) };
        let c_view = self.c.as_ref().map(|t| t.view()).or(runtime_c);
        let c = match c_view {
            Some(c) => {
                expect_dtype(OP, "C", c.dtype, DType::F32)?;
                Some((c.as_slice::<f32>()?, CBroadcast::new(c.shape, m, n)?))
            }
            None => None,
        };
        let shape = GemmShape { m, n, k, a_layout };
        gemm_float(
            &self.attrs,
            &shape,
            a.as_slice()?,
            &self.b,
            Layout::row_major(n),
            self.packed.as_ref(),
            c,
            y.as_mut_slice()?,
            self.activation.as_ref(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, random, run_kernel, run_op};

    fn naive_matmul(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    /// numpy matmul on f64 vectors, by promoting 1-D operands and broadcasting batches.
    fn reference_matmul(a: &Tensor, b: &Tensor) -> (Dims, Vec<f64>) {
        let plan = MatMulPlan::new(a.shape(), b.shape()).unwrap();
        let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
        let mut out = Vec::new();
        for i in 0..plan.batches {
            let (ao, bo) = plan.offsets(i);
            let am = &av[ao..ao + plan.m * plan.k];
            let bm = &bv[bo..bo + plan.k * plan.n];
            out.extend(naive_matmul(am, bm, plan.m, plan.n, plan.k));
        }
        (plan.out_shape, out)
    }

    #[test]
    fn matmul_shapes() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[3, 4], &[4, 5]),
            (&[4], &[4, 5]),
            (&[3, 4], &[4]),
            (&[4], &[4]),
            (&[2, 3, 4], &[4, 5]),
            (&[2, 3, 4], &[2, 4, 5]),
            (&[4], &[2, 4, 5]),
            (&[2, 1, 3, 4], &[1, 5, 4, 6]),
            (&[1, 3, 4], &[6, 4, 2]),
            (&[3, 4], &[6, 4, 2]),
            (&[5, 3, 0], &[0, 2]),
            (&[12, 64, 32], &[12, 32, 64]),
        ];
        for (i, (sa, sb)) in cases.iter().enumerate() {
            let a = random(DType::F32, sa, 10 + i as u64);
            let b = random(DType::F32, sb, 20 + i as u64);
            let (shape, want) = reference_matmul(&a, &b);
            let op = Op::MatMul { activation: None };
            let got = run_op(&op, &[Some(&a), Some(&b)], &[(DType::F32, &shape)]).remove(0);
            assert_close(&got, &want, 1e-5);
        }
    }

    #[test]
    fn matmul_f64_f16_bf16_and_ints() {
        for dtype in [DType::F64, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U32, DType::U64] {
            let a = random(dtype, &[2, 3, 5], 1);
            let b = random(dtype, &[5, 4], 2);
            let (shape, want) = reference_matmul(&a, &b);
            let got = run_op(&Op::MatMul { activation: None }, &[Some(&a), Some(&b)], &[(dtype, &shape)]).remove(0);
            let tol = match dtype {
                DType::F16 => 1e-2,
                DType::BF16 => 5e-2,
                _ => 1e-9,
            };
            assert_close(&got, &want, tol);
        }
    }

    #[test]
    fn matmul_bias_and_activation() {
        let a = random(DType::F32, &[2, 3, 8], 3);
        let b = random(DType::F32, &[8, 6], 4);
        let bias = random(DType::F32, &[6], 5);
        let (shape, mut want) = reference_matmul(&a, &b);
        let bv = bias.to_f64_vec();
        for (i, w) in want.iter_mut().enumerate() {
            *w = (*w + bv[i % 6]).max(0.0);
        }
        let op = Op::MatMul { activation: Some(UnaryOp::Relu) };
        let got = run_op(&op, &[Some(&a), Some(&b), Some(&bias)], &[(DType::F32, &shape)]).remove(0);
        assert_close(&got, &want, 1e-5);
        // The prepared kernel gives the same, with bias constant or not.
        let b_arc = Arc::new(b.clone());
        let bias_arc = Arc::new(bias.clone());
        for consts in [vec![None, Some(&b_arc), Some(&bias_arc)], vec![None, Some(&b_arc), None]] {
            let kernel = prepare(&op, &consts).expect("prepared MatMul");
            let prepared = run_kernel(kernel.as_ref(), &[Some(&a), Some(&b), Some(&bias)], &[(DType::F32, &shape)]);
            assert_eq!(prepared[0], got);
        }
        // A batched B is not prepared (its batches are not one weight matrix).
        let b3 = Arc::new(random(DType::F32, &[2, 8, 6], 6));
        assert!(prepare(&op, &[None, Some(&b3)]).is_none());
    }

    /// The fused residual `Z` is added after the bias and before the activation,
    /// on every path: one tall product (packed B or not) and batched B.
    #[test]
    fn matmul_residual_joins_before_the_activation() {
        let a = random(DType::F32, &[2, 40, 32], 13);
        let b = random(DType::F32, &[32, 24], 14);
        let bias = random(DType::F32, &[24], 15);
        let z = random(DType::F32, &[2, 40, 24], 16);
        let (shape, product) = reference_matmul(&a, &b);
        let (bv, zv) = (bias.to_f64_vec(), z.to_f64_vec());
        let want: Vec<f64> = product.iter().enumerate().map(|(i, p)| (p + bv[i % 24] + zv[i]).max(0.0)).collect();
        let op = Op::MatMul { activation: Some(UnaryOp::Relu) };
        let inputs = [Some(&a), Some(&b), Some(&bias), Some(&z)];
        let got = run_op(&op, &inputs, &[(DType::F32, &shape)]).remove(0);
        assert_close(&got, &want, 1e-5);
        let (b_arc, bias_arc) = (Arc::new(b.clone()), Arc::new(bias.clone()));
        let kernel = prepare(&op, &[None, Some(&b_arc), Some(&bias_arc)]).expect("prepared MatMul");
        let prepared = run_kernel(kernel.as_ref(), &inputs, &[(DType::F32, &shape)]).remove(0);
        assert_close(&prepared, &want, 1e-5);
        // Batched B: each batch's product takes its own rows of Z.
        let b3 = random(DType::F32, &[2, 32, 24], 17);
        let (_, product) = reference_matmul(&a, &b3);
        let want: Vec<f64> = product.iter().enumerate().map(|(i, p)| (p + zv[i]).max(0.0)).collect();
        let got = run_op(&op, &[Some(&a), Some(&b3), None, Some(&z)], &[(DType::F32, &shape)]).remove(0);
        assert_close(&got, &want, 1e-5);
        // A Z of another shape is refused, naming it.
        let bad = random(DType::F32, &[2, 40, 23], 18);
        let err =
            crate::ops::testing::try_run_op(&op, &[Some(&a), Some(&b), None, Some(&bad)], &[(DType::F32, &shape)]);
        assert!(err.unwrap_err().to_string().contains('Z'));
    }

    #[test]
    fn matmul_rejects_bad_shapes() {
        let a = random(DType::F32, &[3, 4], 1);
        let b = random(DType::F32, &[5, 2], 2);
        let op = Op::MatMul { activation: None };
        let err = crate::ops::testing::try_run_op(&op, &[Some(&a), Some(&b)], &[(DType::F32, &[3, 2])]);
        assert!(err.is_err());
        let b = random(DType::F32, &[4, 2], 2);
        let err = crate::ops::testing::try_run_op(&op, &[Some(&a), Some(&b)], &[(DType::F32, &[3, 3])]);
        assert!(err.is_err());
    }

    fn reference_gemm(a: &Tensor, b: &Tensor, c: Option<&Tensor>, attrs: &GemmAttrs) -> (Vec<usize>, Vec<f64>) {
        let (m, k, al) = gemm_a_shape(a.shape(), attrs.trans_a).unwrap();
        let (_, n, bl) = gemm_b_shape(b.shape(), attrs.trans_b).unwrap();
        let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| av[i * al.row + p * al.col] * bv[p * bl.row + j * bl.col]).sum();
                let cv = c.map_or(0.0, |c| {
                    let bc = CBroadcast::new(c.shape(), m, n).unwrap();
                    c.to_f64_vec()[i * bc.row + j * bc.col]
                });
                out[i * n + j] = attrs.alpha as f64 * s + attrs.beta as f64 * cv;
            }
        }
        (vec![m, n], out)
    }

    #[test]
    fn gemm_transposes_and_c_broadcasts() {
        let (m, n, k) = (5, 7, 9);
        let c_shapes: &[Option<&[usize]>] = &[None, Some(&[]), Some(&[7]), Some(&[1, 7]), Some(&[5, 1]), Some(&[5, 7])];
        let mut seed = 100;
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for &(alpha, beta) in &[(1.0, 1.0), (0.5, 0.0), (-2.0, 0.75)] {
                    for c_shape in c_shapes {
                        seed += 1;
                        let attrs = GemmAttrs { alpha, beta, trans_a, trans_b };
                        let a = random(DType::F32, &if trans_a { [k, m] } else { [m, k] }, seed);
                        let b = random(DType::F32, &if trans_b { [n, k] } else { [k, n] }, seed + 1000);
                        let c = c_shape.map(|s| random(DType::F32, s, seed + 2000));
                        let (shape, want) = reference_gemm(&a, &b, c.as_ref(), &attrs);
                        let op = Op::Gemm { alpha, beta, trans_a, trans_b, activation: None };
                        let inputs = [Some(&a), Some(&b), c.as_ref()];
                        let got = run_op(&op, &inputs, &[(DType::F32, &shape)]).remove(0);
                        assert_close(&got, &want, 1e-5);
                        let b_arc = Arc::new(b.clone());
                        let c_arc = c.clone().map(Arc::new);
                        for consts in [vec![None, Some(&b_arc), c_arc.as_ref()], vec![None, Some(&b_arc), None]] {
                            let kernel = prepare(&op, &consts).expect("prepared Gemm");
                            let prepared = run_kernel(kernel.as_ref(), &inputs, &[(DType::F32, &shape)]);
                            assert_close(&prepared[0], &want, 1e-5);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_activation_and_other_types() {
        let a = random(DType::F32, &[4, 6], 1);
        let b = random(DType::F32, &[6, 3], 2);
        let c = random(DType::F32, &[3], 3);
        let attrs = GemmAttrs { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false };
        let (shape, want) = reference_gemm(&a, &b, Some(&c), &attrs);
        let want: Vec<f64> = want.into_iter().map(|v| v.max(0.0)).collect();
        let op = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false, activation: Some(UnaryOp::Relu) };
        let got = run_op(&op, &[Some(&a), Some(&b), Some(&c)], &[(DType::F32, &shape)]).remove(0);
        assert_close(&got, &want, 1e-5);

        let attrs = GemmAttrs { alpha: 0.5, beta: 2.0, trans_a: true, trans_b: false };
        for dtype in [DType::F64, DType::F16, DType::I64, DType::I32] {
            let a = random(dtype, &[6, 4], 1);
            let b = random(dtype, &[6, 3], 2);
            let c = random(dtype, &[4, 3], 3);
            let (shape, want) = reference_gemm(&a, &b, Some(&c), &attrs);
            let op = Op::Gemm { alpha: 0.5, beta: 2.0, trans_a: true, trans_b: false, activation: None };
            let got = run_op(&op, &[Some(&a), Some(&b), Some(&c)], &[(dtype, &shape)]).remove(0);
            let want: Vec<f64> = if dtype.is_int() { want.iter().map(|v| v.trunc()).collect() } else { want };
            assert_close(&got, &want, if dtype == DType::F16 { 2e-2 } else { 1e-9 });
        }
    }
}
