//! Einsum. The equation is parsed once per call (explicit or implicit output,
//! `...` broadcasting, repeated indices for diagonals and traces), then operands
//! are contracted left to right, two at a time. Each contraction is a batched
//! GEMM over strided views, so `bhid,bhjd->bhij`, `bhij,bhjd->bhid` and
//! `bij,bjk->bik` multiply in place without copies; an operand whose indices do
//! not line up is first copied into the order the GEMM reads. Indices only one
//! operand has (and single-operand equations) go through a direct loop.

use super::gemm::{gemm, gemm_wrapping, parallelism, Layout, Parallelism};
use super::operands::{expect_dtype, expect_shape, first_output};
use crate::team;
use crate::{CpuError, Result};
use half::{bf16, f16};
use smelt_ir::semantics::einsum::{EinsumSpec, Label};
use smelt_ir::{DType, TensorView, TensorViewMut};
use std::borrow::Cow;

const OP: &str = "Einsum";

pub fn eval(equation: &str, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let views: Vec<TensorView> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| CpuError::invalid(OP, format!("input {i} is missing"))))
        .collect::<Result<_>>()?;
    let Some(first) = views.first() else {
        return Err(CpuError::invalid(OP, "needs at least one input"));
    };
    let dtype = first.dtype;
    for (i, v) in views.iter().enumerate() {
        expect_dtype(OP, &format!("input {i}"), v.dtype, dtype)?;
    }
    let shapes: Vec<&[usize]> = views.iter().map(|v| v.shape).collect();
    let spec = Spec::parse(equation, &shapes)?;
    let y = first_output(OP, outputs)?;
    expect_shape(OP, "output", y.shape, &spec.out_shape())?;
    expect_dtype(OP, "output", y.dtype, dtype)?;
    match dtype {
        DType::F32 => typed::<f32>(&spec, &views, y),
        DType::F64 => typed::<f64>(&spec, &views, y),
        DType::I8 => typed::<i8>(&spec, &views, y),
        DType::U8 => typed::<u8>(&spec, &views, y),
        DType::I16 => typed::<i16>(&spec, &views, y),
        DType::U16 => typed::<u16>(&spec, &views, y),
        DType::I32 => typed::<i32>(&spec, &views, y),
        DType::U32 => typed::<u32>(&spec, &views, y),
        DType::I64 => typed::<i64>(&spec, &views, y),
        DType::U64 => typed::<u64>(&spec, &views, y),
        // Half types through f32: the sums over k would lose too much in 16 bits.
        DType::F16 => {
            let data: Vec<Vec<f32>> = views
                .iter()
                .map(|v| v.as_slice::<f16>().map(|s| s.iter().map(|x| x.to_f32()).collect()))
                .collect::<std::result::Result<_, _>>()?;
            let refs: Vec<&[f32]> = data.iter().map(|d| d.as_slice()).collect();
            let mut out = vec![0f32; y.len()];
            contract_all(&spec, &refs, &mut out);
            y.as_mut_slice::<f16>()?.iter_mut().zip(&out).for_each(|(d, &s)| *d = f16::from_f32(s));
            Ok(())
        }
        DType::BF16 => {
            let data: Vec<Vec<f32>> = views
                .iter()
                .map(|v| v.as_slice::<bf16>().map(|s| s.iter().map(|x| x.to_f32()).collect()))
                .collect::<std::result::Result<_, _>>()?;
            let refs: Vec<&[f32]> = data.iter().map(|d| d.as_slice()).collect();
            let mut out = vec![0f32; y.len()];
            contract_all(&spec, &refs, &mut out);
            y.as_mut_slice::<bf16>()?.iter_mut().zip(&out).for_each(|(d, &s)| *d = bf16::from_f32(s));
            Ok(())
        }
        DType::Bool => Err(CpuError::UnsupportedDType { op: OP, dtype }),
    }
}

fn typed<T: Scalar + smelt_ir::Element>(spec: &Spec, views: &[TensorView], y: &mut TensorViewMut) -> Result<()> {
    let data: Vec<&[T]> = views.iter().map(|v| v.as_slice::<T>()).collect::<std::result::Result<_, _>>()?;
    contract_all(spec, &data, y.as_mut_slice::<T>()?);
    Ok(())
}

// ── the equation ───────────────────────────────────────────────────────────

/// The parsed equation against concrete input shapes (smelt-ir parses it, as
/// for the GPU's launcher), with each operand's shape beside its labels.
#[derive(Debug)]
struct Spec {
    /// Each operand's label per dim (repeats kept) and its shape.
    inputs: Vec<(Vec<Label>, Vec<usize>)>,
    output: Vec<Label>,
    /// Size of every label (broadcast over operands).
    sizes: Vec<usize>,
}

impl Spec {
    fn parse(equation: &str, shapes: &[&[usize]]) -> Result<Spec> {
        let EinsumSpec { inputs, output, sizes } =
            EinsumSpec::new(equation, shapes).map_err(|e| CpuError::invalid(OP, e))?;
        let inputs = inputs.into_iter().zip(shapes).map(|(labels, s)| (labels, s.to_vec())).collect();
        Ok(Spec { inputs, output, sizes })
    }

    fn out_shape(&self) -> Vec<usize> {
        self.output.iter().map(|&l| self.sizes[l]).collect()
    }
}

// ── element arithmetic ─────────────────────────────────────────────────────

/// What the contraction needs of an element type: a sum, a product and a GEMM.
trait Scalar: Copy + Send + Sync + 'static {
    fn zero() -> Self;
    fn add(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
    /// `c = a·b` (`c` not read).
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        m: usize,
        n: usize,
        k: usize,
        a: &[Self],
        al: Layout,
        b: &[Self],
        bl: Layout,
        c: &mut [Self],
        cl: Layout,
        par: Parallelism,
    );
}

macro_rules! float_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            fn zero() -> Self {
                0.0
            }
            fn add(self, other: Self) -> Self {
                self + other
            }
            fn mul(self, other: Self) -> Self {
                self * other
            }
            fn matmul(
                m: usize,
                n: usize,
                k: usize,
                a: &[Self],
                al: Layout,
                b: &[Self],
                bl: Layout,
                c: &mut [Self],
                cl: Layout,
                par: Parallelism,
            ) {
                gemm(m, n, k, a, al, b, bl, c, cl, 1.0, 0.0, par)
            }
        }
    };
}
float_scalar!(f32);
float_scalar!(f64);

macro_rules! int_scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn zero() -> Self {
                0
            }
            fn add(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
            fn mul(self, other: Self) -> Self {
                self.wrapping_mul(other)
            }
            fn matmul(m: usize, n: usize, k: usize, a: &[Self], al: Layout, b: &[Self], bl: Layout, c: &mut [Self], cl: Layout, _par: Parallelism) {
                gemm_wrapping(m, n, k, a, al, b, bl, c, cl)
            }
        }
    )*};
}
int_scalar!(i8, u8, i16, u16, i32, u32, i64, u64);

// ── contraction ────────────────────────────────────────────────────────────

/// A strided view of an operand whose labels are distinct: repeated indices were
/// folded into one diagonal dim, size-1 dims broadcast to their label's size
/// with stride 0.
struct Operand<'a, T: Clone> {
    data: Cow<'a, [T]>,
    labels: Vec<Label>,
    strides: Vec<usize>,
}

impl<T: Clone> Operand<'_, T> {
    fn stride_of(&self, l: Label) -> Option<usize> {
        self.labels.iter().position(|&x| x == l).map(|i| self.strides[i])
    }
}

fn operand<'a, T: Clone>(data: &'a [T], labels: &[Label], shape: &[usize], sizes: &[usize]) -> Operand<'a, T> {
    let mut row_major = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        row_major[d] = row_major[d + 1] * shape[d + 1];
    }
    let (mut out_labels, mut out_strides): (Vec<Label>, Vec<usize>) = (Vec::new(), Vec::new());
    for (d, &l) in labels.iter().enumerate() {
        // A size-1 dim of a broadcast label reads the same element throughout.
        let stride = if shape[d] == 1 && sizes[l] != 1 { 0 } else { row_major[d] };
        match out_labels.iter().position(|&x| x == l) {
            // A repeated index walks the diagonal: both strides at once.
            Some(i) => out_strides[i] += stride,
            None => {
                out_labels.push(l);
                out_strides.push(stride);
            }
        }
    }
    Operand { data: Cow::Borrowed(data), labels: out_labels, strides: out_strides }
}

fn contract_all<T: Scalar>(spec: &Spec, inputs: &[&[T]], y: &mut [T]) {
    if y.is_empty() {
        return;
    }
    let mut ops: Vec<Operand<T>> = spec
        .inputs
        .iter()
        .zip(inputs)
        .map(|((labels, shape), data)| operand(data, labels, shape, &spec.sizes))
        .collect();
    if ops.len() == 1 {
        return direct(&ops[..1], &spec.output, &spec.sizes, y);
    }
    let mut acc = ops.remove(0);
    let count = ops.len();
    for (i, next) in ops.into_iter().enumerate() {
        // Labels still needed: by the output, or by an operand not yet folded in.
        let later: Vec<Label> = spec.inputs[i + 2..].iter().flat_map(|(l, _)| l.iter().copied()).collect();
        let keep: Vec<Label> =
            spec.output.iter().copied().chain(later.into_iter().filter(|l| !spec.output.contains(l))).collect();
        let last = i + 1 == count;
        match pair(acc, next, &keep, &spec.sizes, if last { Some(&mut *y) } else { None }) {
            Some(result) if last => {
                // The product's dims came out in another order than the output's.
                return direct(std::slice::from_ref(&result), &spec.output, &spec.sizes, y);
            }
            Some(result) => acc = result,
            None => return,
        }
    }
}

/// `out[o] = Σ_s Π_i op_i[o, s]` by direct iteration: `out` is row-major over
/// `out_labels`, `s` runs over every other label of the operands. Handles sums,
/// traces, permutations and small products no GEMM fits.
fn direct<T: Scalar>(ops: &[Operand<T>], out_labels: &[Label], sizes: &[usize], out: &mut [T]) {
    let mut labels: Vec<Label> = out_labels.to_vec();
    for op in ops {
        for &l in &op.labels {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
    }
    let dims: Vec<usize> = labels.iter().map(|&l| sizes[l]).collect();
    // strides[i][d]: operand i's stride along labels[d] (0 if it lacks it).
    let strides: Vec<Vec<usize>> =
        ops.iter().map(|op| labels.iter().map(|&l| op.stride_of(l).unwrap_or(0)).collect()).collect();
    let n_out = out_labels.len();
    let inner: usize = dims[n_out..].iter().product();
    let mut idx = vec![0usize; labels.len()];
    let mut offsets = vec![0usize; ops.len()];
    for slot in out.iter_mut() {
        let mut acc = T::zero();
        for _ in 0..inner {
            let mut prod = ops[0].data[offsets[0]];
            for (op, &o) in ops.iter().zip(&offsets).skip(1) {
                prod = prod.mul(op.data[o]);
            }
            acc = acc.add(prod);
            advance(&mut idx, &dims, &strides, &mut offsets, n_out);
        }
        *slot = acc;
        advance(&mut idx, &dims[..n_out], &strides, &mut offsets, 0);
    }
}

/// Steps the multi-index over `dims[from..]` (odometer, last fastest), keeping
/// each operand's offset in step. Wraps to zero after the last position.
fn advance(idx: &mut [usize], dims: &[usize], strides: &[Vec<usize>], offsets: &mut [usize], from: usize) {
    for d in (from..dims.len()).rev() {
        idx[d] += 1;
        for (o, s) in offsets.iter_mut().zip(strides) {
            *o += s[d];
        }
        if idx[d] < dims[d] {
            return;
        }
        for (o, s) in offsets.iter_mut().zip(strides) {
            *o -= s[d] * dims[d];
        }
        idx[d] = 0;
    }
}

/// A group of labels read as one matrix dim: its total size and single stride,
/// if the operand's strides allow (each stride = next stride × next size).
fn merged<T: Clone>(op: &Operand<T>, group: &[Label], sizes: &[usize]) -> Option<(usize, usize)> {
    let (mut size, mut stride) = (1, 0);
    for &l in group.iter().rev() {
        let d = sizes[l];
        if d == 1 {
            continue;
        }
        let s = op.stride_of(l)?;
        if s == 0 {
            // Broadcast inside a matrix dim: copy it out instead.
            return None;
        }
        if size == 1 {
            stride = s;
        } else if s != stride * size {
            return None;
        }
        size *= d;
    }
    Some((size, stride))
}

/// Copies an operand into row-major order over `order` (which must name all its labels).
fn materialize<'a, T: Scalar>(op: &Operand<T>, order: &[Label], sizes: &[usize]) -> Operand<'a, T> {
    let len: usize = order.iter().map(|&l| sizes[l]).product();
    let mut data = vec![T::zero(); len];
    direct(std::slice::from_ref(op), order, sizes, &mut data);
    let mut strides = vec![1usize; order.len()];
    for d in (0..order.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * sizes[order[d + 1]];
    }
    Operand { data: Cow::Owned(data), labels: order.to_vec(), strides }
}

/// Sums out the labels of `op` no one else needs.
fn reduce_private<'a, T: Scalar>(
    op: Operand<'a, T>,
    needed: impl Fn(Label) -> bool,
    sizes: &[usize],
) -> Operand<'a, T> {
    let kept: Vec<Label> = op.labels.iter().copied().filter(|&l| needed(l)).collect();
    if kept.len() == op.labels.len() {
        return op;
    }
    materialize(&op, &kept, sizes)
}

/// Contracts two operands over their shared labels not in `keep`, as a batched
/// GEMM. The result's labels are (batch, rows of `a`, columns of `b`), each in
/// `keep`'s order. When `dest` is given and that order is `keep`'s own, the
/// product is written there and `None` returned; otherwise the result is returned.
fn pair<'a, T: Scalar>(
    a: Operand<'a, T>,
    b: Operand<'a, T>,
    keep: &[Label],
    sizes: &[usize],
    dest: Option<&mut [T]>,
) -> Option<Operand<'a, T>> {
    let a = reduce_private(a, |l| keep.contains(&l) || b.labels.contains(&l), sizes);
    let b = reduce_private(b, |l| keep.contains(&l) || a.labels.contains(&l), sizes);
    let in_a = |l: &Label| a.labels.contains(l);
    let in_b = |l: &Label| b.labels.contains(l);
    let batch: Vec<Label> = keep.iter().copied().filter(|l| in_a(l) && in_b(l)).collect();
    let rows: Vec<Label> = keep.iter().copied().filter(|l| in_a(l) && !in_b(l)).collect();
    let cols: Vec<Label> = keep.iter().copied().filter(|l| !in_a(l) && in_b(l)).collect();
    let inner: Vec<Label> = a.labels.iter().copied().filter(|l| in_b(l) && !keep.contains(l)).collect();

    let a = match (merged(&a, &rows, sizes), merged(&a, &inner, sizes)) {
        (Some(_), Some(_)) => a,
        _ => materialize(&a, &[batch.as_slice(), &rows, &inner].concat(), sizes),
    };
    let b = match (merged(&b, &inner, sizes), merged(&b, &cols, sizes)) {
        (Some(_), Some(_)) => b,
        _ => materialize(&b, &[batch.as_slice(), &inner, &cols].concat(), sizes),
    };
    let (m, a_row) = merged(&a, &rows, sizes).expect("materialized operands merge");
    let (k, a_col) = merged(&a, &inner, sizes).expect("materialized operands merge");
    let (_, b_row) = merged(&b, &inner, sizes).expect("materialized operands merge");
    let (n, b_col) = merged(&b, &cols, sizes).expect("materialized operands merge");
    let batch_dims: Vec<usize> = batch.iter().map(|&l| sizes[l]).collect();
    let a_batch: Vec<usize> = batch.iter().map(|&l| a.stride_of(l).unwrap_or(0)).collect();
    let b_batch: Vec<usize> = batch.iter().map(|&l| b.stride_of(l).unwrap_or(0)).collect();
    let batches: usize = batch_dims.iter().product();

    let result_labels: Vec<Label> = [batch.as_slice(), &rows, &cols].concat();
    let mut owned = Vec::new();
    let into_dest = dest.is_some() && result_labels == keep;
    let c: &mut [T] = match dest {
        Some(d) if into_dest => d,
        _ => {
            owned = vec![T::zero(); batches * m * n];
            &mut owned
        }
    };
    let offsets = |mut i: usize| {
        let (mut ao, mut bo) = (0, 0);
        for d in (0..batch_dims.len()).rev() {
            let x = i % batch_dims[d];
            i /= batch_dims[d];
            ao += x * a_batch[d];
            bo += x * b_batch[d];
        }
        (ao, bo)
    };
    let (al, bl, cl) = (Layout { row: a_row, col: a_col }, Layout { row: b_row, col: b_col }, Layout::row_major(n));
    let run = |i: usize, ci: &mut [T], par: Parallelism| {
        let (ao, bo) = offsets(i);
        T::matmul(m, n, k, &a.data[ao..], al, &b.data[bo..], bl, ci, cl, par);
    };
    if m * n > 0 {
        let threads = team::threads();
        if threads > 1 && batches >= threads && batches * m * n * k >= 1 << 18 {
            team::for_each_piece(c, m * n, |i, ci| run(i, ci, Parallelism::None));
        } else {
            let par = parallelism(m, n, k);
            c.chunks_mut(m * n).enumerate().for_each(|(i, ci)| run(i, ci, par));
        }
    }
    if into_dest {
        return None;
    }
    let mut strides = vec![1usize; result_labels.len()];
    for d in (0..result_labels.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * sizes[result_labels[d + 1]];
    }
    Some(Operand { data: Cow::Owned(owned), labels: result_labels, strides })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, random, run_op, try_run_op};
    use smelt_ir::semantics::einsum::letter;
    use smelt_ir::{Op, Tensor};

    /// Einsum straight from the definition, on f64, via the parsed spec.
    fn reference(equation: &str, inputs: &[&Tensor]) -> (Vec<usize>, Vec<f64>) {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let spec = Spec::parse(equation, &shapes).unwrap();
        let mut all: Vec<Label> = spec.output.clone();
        for (labels, _) in &spec.inputs {
            for &l in labels {
                if !all.contains(&l) {
                    all.push(l);
                }
            }
        }
        let dims: Vec<usize> = all.iter().map(|&l| spec.sizes[l]).collect();
        let vals: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_f64_vec()).collect();
        let out_len: usize = spec.out_shape().iter().product();
        let mut out = vec![0.0; out_len];
        let total: usize = dims.iter().product();
        for flat in 0..total {
            let mut rem = flat;
            let mut idx = vec![0; all.len()];
            for d in (0..all.len()).rev() {
                idx[d] = rem % dims[d];
                rem /= dims[d];
            }
            let at = |l: Label| idx[all.iter().position(|&x| x == l).unwrap()];
            let mut prod = 1.0;
            for ((labels, shape), v) in spec.inputs.iter().zip(&vals) {
                let mut off = 0;
                for (&l, &d) in labels.iter().zip(shape) {
                    off = off * d + if d == 1 { 0 } else { at(l) };
                }
                prod *= v[off];
            }
            let mut o = 0;
            for &l in &spec.output {
                o = o * spec.sizes[l] + at(l);
            }
            out[o] += prod;
        }
        (spec.out_shape(), out)
    }

    fn check(equation: &str, shapes: &[&[usize]], dtype: DType) {
        let inputs: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| random(dtype, s, 7 * i as u64 + 1)).collect();
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let (shape, want) = reference(equation, &refs);
        let op = Op::Einsum { equation: equation.to_string() };
        let opt: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
        let got = run_op(&op, &opt, &[(dtype, &shape)]).remove(0);
        let tol = if dtype == DType::F16 { 1e-2 } else { 1e-5 };
        assert_close(&got, &want, tol);
    }

    #[test]
    fn attention_and_matmul_forms() {
        check("bhid,bhjd->bhij", &[&[2, 3, 5, 8], &[2, 3, 7, 8]], DType::F32);
        check("bhij,bhjd->bhid", &[&[2, 3, 5, 7], &[2, 3, 7, 8]], DType::F32);
        check("bij,bjk->bik", &[&[4, 5, 6], &[4, 6, 3]], DType::F32);
        check("ij,jk", &[&[5, 6], &[6, 3]], DType::F32);
        check("ij,jk->ki", &[&[5, 6], &[6, 3]], DType::F32);
        check("bid,bjd->bij", &[&[16, 64, 32], &[16, 64, 32]], DType::F32);
        check("abc,cd->abd", &[&[3, 4, 5], &[5, 6]], DType::F32);
        check("bn,anm,bm->ba", &[&[2, 3], &[4, 3, 5], &[2, 5]], DType::F32);
    }

    #[test]
    fn single_operand_forms() {
        check("ii->i", &[&[4, 4]], DType::F32);
        check("ii", &[&[4, 4]], DType::F32);
        check("ij->ji", &[&[3, 5]], DType::F32);
        check("ij->", &[&[3, 5]], DType::F32);
        check("ijk->ki", &[&[2, 3, 4]], DType::F32);
        check("...ii->...i", &[&[2, 3, 3]], DType::F32);
        check("iij->ji", &[&[3, 3, 2]], DType::F32);
    }

    #[test]
    fn ellipsis_broadcast_and_outer_products() {
        check("...ij,...jk->...ik", &[&[2, 3, 4, 5], &[3, 5, 2]], DType::F32);
        check("...ij,...jk", &[&[1, 4, 5], &[3, 5, 2]], DType::F32);
        check("i,j->ij", &[&[3], &[4]], DType::F32);
        check("i,i", &[&[5], &[5]], DType::F32);
        check("ij,ij->ij", &[&[3, 4], &[3, 4]], DType::F32);
        check("ij,kj->", &[&[3, 4], &[2, 4]], DType::F32);
        check("Ab,bA->A", &[&[3, 4], &[4, 3]], DType::F32);
        check("ii,ij->j", &[&[3, 3], &[3, 2]], DType::F32);
    }

    #[test]
    fn other_types() {
        check("bij,bjk->bik", &[&[2, 3, 4], &[2, 4, 5]], DType::F64);
        check("bij,bjk->bik", &[&[2, 3, 4], &[2, 4, 5]], DType::F16);
        check("bij,bjk->bik", &[&[2, 3, 4], &[2, 4, 5]], DType::I64);
        check("ii->i", &[&[3, 3]], DType::I32);
    }

    #[test]
    fn implicit_output_order() {
        let spec = Spec::parse("ba,Cb", &[&[2, 3], &[4, 2]]).unwrap();
        // 'C' sorts before 'a'.
        assert_eq!(spec.output, vec![letter(b'C').unwrap(), letter(b'a').unwrap()]);
        let spec = Spec::parse("...ij,jk", &[&[7, 2, 3], &[3, 4]]).unwrap();
        assert_eq!(spec.out_shape(), vec![7, 2, 4]);
    }

    #[test]
    fn malformed_equations() {
        let a = random(DType::F32, &[2, 3], 1);
        let op = |eq: &str| Op::Einsum { equation: eq.to_string() };
        assert!(try_run_op(&op("ijk->i"), &[Some(&a)], &[(DType::F32, &[2])]).is_err());
        assert!(try_run_op(&op("ij,jk->ik"), &[Some(&a)], &[(DType::F32, &[2])]).is_err());
        assert!(try_run_op(&op("ij->q"), &[Some(&a)], &[(DType::F32, &[2])]).is_err());
        assert!(try_run_op(&op("i.j->i"), &[Some(&a)], &[(DType::F32, &[2])]).is_err());
        assert!(try_run_op(&op("ij->ii"), &[Some(&a)], &[(DType::F32, &[2, 2])]).is_err());
    }
}
