//! Reduce{Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare} over any
//! set of axes.
//!
//! Each kind is `fin(fold(comb, phi(x)))` from an identity `e`: e.g. ReduceL2 is
//! `sqrt(sum(x^2))` from 0. Adjacent axes that are reduced (or kept) together are
//! merged first, which leaves three layouts: contiguous rows (reducing trailing axes,
//! the hot case), `[outer, r, inner]` columns (reducing a middle block), or anything
//! else, which is transposed so the reduced axes come last and becomes rows.
//!
//! Accumulation: f32, f16 and bf16 in f32; f64 in f64; integers in i64/u64
//! (wrapping, truncating Mean as onnxruntime does); L2, LogSum and LogSumExp in f64
//! for every type. Empty reductions give the identity (0 for sums, 1 for Prod, -inf
//! or the type's minimum for Max, ...); Mean of nothing is 0, as in onnxruntime.

use crate::ops::broadcast::for_each_row_block;
use crate::ops::dims::{Dims, IntValues};
use crate::ops::elementwise::checked::{expect_dtype, expect_shape, int_values, normalize_axis, slice, slice_mut};
use crate::ops::elementwise::num::Num;
use crate::{CpuError, Result};
use half::{bf16, f16};
use smallvec::{smallvec, SmallVec};
use smelt_ir::{strides_of, DType, ReduceKind, TensorView, TensorViewMut};

pub(super) fn eval(
    name: &'static str,
    kind: ReduceKind,
    keepdims: bool,
    noop_with_empty_axes: bool,
    x: TensorView,
    axes: Option<TensorView>,
    out: &mut TensorViewMut,
) -> Result<()> {
    let rank = x.rank();
    let axes = match axes {
        Some(a) => int_values(name, "axes", &a)?,
        None => IntValues::new(),
    };
    let mut reduced: SmallVec<[bool; 8]> = smallvec![false; rank];
    if axes.is_empty() {
        // No axes: everything, unless the op asks for a no-op (each element then
        // forms its own group, so e.g. ReduceSumSquare still squares).
        reduced.fill(!noop_with_empty_axes);
    } else {
        for &a in &axes {
            let d = normalize_axis(name, a, rank)?;
            if reduced[d] {
                return Err(CpuError::invalid(name, format!("axis {a} is listed twice in axes {axes:?}")));
            }
            reduced[d] = true;
        }
    }
    let want: Dims =
        x.shape.iter().zip(&reduced).filter_map(|(&d, &r)| if r { keepdims.then_some(1) } else { Some(d) }).collect();
    expect_shape(name, "output", out.shape, &want)?;
    expect_dtype(name, "output", out.dtype, x.dtype)?;

    let shape = x.shape;
    macro_rules! run_as {
        ($T:ty, $A:ty, $load:expr, $store:expr) => {{
            let load = $load;
            run_as!($T, $A, load, $store, (load(<$T as Num>::LOWEST), load(<$T as Num>::HIGHEST)))
        }};
        // `bounds`: the smallest and largest values, identities of Max and Min.
        ($T:ty, $A:ty, $load:expr, $store:expr, $bounds:expr) => {{
            let src = slice::<$T>(name, "input", &x)?;
            let dst = slice_mut::<$T>(name, "output", out)?;
            reduce_typed::<$T, $A>(kind, src, shape, &reduced, dst, $load, $store, $bounds);
            Ok(())
        }};
    }
    let wide = matches!(kind, ReduceKind::L2 | ReduceKind::LogSum | ReduceKind::LogSumExp);
    match (x.dtype, wide) {
        // ReduceMax of bools is "any", ReduceMin "all" (opset 20); false < true.
        (DType::Bool, _) if matches!(kind, ReduceKind::Max | ReduceKind::Min) => {
            run_as!(u8, u64, |v: u8| (v != 0) as u64, |a: u64| a as u8, (0, 1))
        }
        (DType::Bool, _) => Err(CpuError::UnsupportedDType { op: name, dtype: DType::Bool }),
        (DType::F32, false) => run_as!(f32, f32, |v: f32| v, |a: f32| a),
        (DType::F16, false) => run_as!(f16, f32, |v: f16| v.to_f32(), f16::from_f32),
        (DType::BF16, false) => run_as!(bf16, f32, |v: bf16| v.to_f32(), bf16::from_f32),
        (DType::F64, _) => run_as!(f64, f64, |v: f64| v, |a: f64| a),
        (DType::I8, false) => run_as!(i8, i64, |v: i8| v as i64, |a: i64| a as i8),
        (DType::I16, false) => run_as!(i16, i64, |v: i16| v as i64, |a: i64| a as i16),
        (DType::I32, false) => run_as!(i32, i64, |v: i32| v as i64, |a: i64| a as i32),
        (DType::I64, false) => run_as!(i64, i64, |v: i64| v, |a: i64| a),
        (DType::U8, false) => run_as!(u8, u64, |v: u8| v as u64, |a: u64| a as u8),
        (DType::U16, false) => run_as!(u16, u64, |v: u16| v as u64, |a: u64| a as u16),
        (DType::U32, false) => run_as!(u32, u64, |v: u32| v as u64, |a: u64| a as u32),
        (DType::U64, false) => run_as!(u64, u64, |v: u64| v, |a: u64| a),
        (dtype, true) => {
            smelt_ir::dispatch_dtype!(dtype, T => run_as!(T, f64, |v: T| smelt_ir::Element::to_f64(v), |a: f64| <T as Num>::from_f64_trunc(a)))
        }
    }
}

/// How the reduction walks memory once same-kind neighbouring axes are merged.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// Each output reduces `r` contiguous elements.
    Rows { r: usize },
    /// Input `[outer, r, inner]`, output `[outer, inner]`.
    Columns { r: usize, inner: usize },
    /// Reduced axes interleaved with kept ones in another way.
    General,
}

impl Layout {
    fn of(shape: &[usize], reduced: &[bool]) -> Layout {
        // (reduced?, merged size); size-1 axes do not affect the layout.
        let mut groups: SmallVec<[(bool, usize); 8]> = SmallVec::new();
        for (&d, &r) in shape.iter().zip(reduced) {
            if d == 1 {
                continue;
            }
            match groups.last_mut() {
                Some((gr, n)) if *gr == r => *n *= d,
                _ => groups.push((r, d)),
            }
        }
        match *groups.as_slice() {
            [] | [(false, _)] => Layout::Rows { r: 1 },
            [(true, r)] | [(false, _), (true, r)] => Layout::Rows { r },
            [(true, r), (false, inner)] | [(false, _), (true, r), (false, inner)] => Layout::Columns { r, inner },
            _ => Layout::General,
        }
    }
}

/// A copy of `x` with the kept axes first (in order) and the reduced axes last.
fn move_reduced_last<T: Copy>(x: &[T], shape: &[usize], reduced: &[bool]) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    if x.is_empty() || shape.is_empty() {
        out.extend_from_slice(x);
        return out;
    }
    let strides = strides_of(shape);
    let order: Vec<usize> =
        (0..shape.len()).filter(|&d| !reduced[d]).chain((0..shape.len()).filter(|&d| reduced[d])).collect();
    let dims: Vec<usize> = order.iter().map(|&d| shape[d]).collect();
    let st: Vec<usize> = order.iter().map(|&d| strides[d]).collect();
    let last = dims.len() - 1;
    let mut idx = vec![0usize; dims.len()];
    let mut off = 0usize;
    loop {
        out.extend((0..dims[last]).map(|i| x[off + i * st[last]]));
        let mut d = last;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            off += st[d];
            if idx[d] < dims[d] {
                break;
            }
            off -= st[d] * dims[d];
            idx[d] = 0;
        }
    }
}

#[inline(always)]
fn max_nan<A: Num>(a: A, b: A) -> A {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

#[inline(always)]
fn min_nan<A: Num>(a: A, b: A) -> A {
    if b < a || b.is_nan() {
        b
    } else {
        a
    }
}

#[allow(clippy::too_many_arguments)]
fn reduce_typed<T, A>(
    kind: ReduceKind,
    x: &[T],
    shape: &[usize],
    reduced: &[bool],
    out: &mut [T],
    load: impl Fn(T) -> A + Sync + Copy,
    store: impl Fn(A) -> T + Sync + Copy,
    (lowest, highest): (A, A),
) where
    T: Copy + Send + Sync,
    A: Num,
{
    let mut layout = Layout::of(shape, reduced);
    let permuted;
    let x = if layout == Layout::General || (kind == ReduceKind::LogSumExp && matches!(layout, Layout::Columns { .. }))
    {
        let r = shape.iter().zip(reduced).filter(|(_, &r)| r).map(|(&d, _)| d).product();
        layout = Layout::Rows { r };
        permuted = move_reduced_last(x, shape, reduced);
        &permuted[..]
    } else {
        x
    };
    macro_rules! with {
        ($e:expr, $phi:expr, $comb:expr, $fin:expr) => {
            Reducer { e: $e, load, phi: $phi, comb: $comb, fin: $fin, store }.run(x, layout, out)
        };
    }
    let id = |a: A| a;
    let add = |a: A, b: A| a.add(b);
    let same = |a: A, _n: usize| a;
    match kind {
        ReduceKind::Sum => with!(A::ZERO, id, add, same),
        ReduceKind::Mean => with!(A::ZERO, id, add, |a: A, n: usize| {
            if n == 0 {
                A::ZERO
            } else {
                a.div(A::from_f64_trunc(n as f64))
            }
        }),
        ReduceKind::Max => with!(lowest, id, max_nan, same),
        ReduceKind::Min => with!(highest, id, min_nan, same),
        ReduceKind::Prod => with!(A::ONE, id, |a: A, b: A| a.mul(b), same),
        ReduceKind::L1 => with!(A::ZERO, |a: A| if a < A::ZERO { A::ZERO.sub(a) } else { a }, add, same),
        ReduceKind::SumSquare => with!(A::ZERO, |a: A| a.mul(a), add, same),
        ReduceKind::L2 => {
            with!(A::ZERO, |a: A| a.mul(a), add, |a: A, _n: usize| A::from_f64_trunc(a.to_f64().sqrt()))
        }
        ReduceKind::LogSum => with!(A::ZERO, id, add, |a: A, _n: usize| A::from_f64_trunc(a.to_f64().ln())),
        ReduceKind::LogSumExp => {
            let Layout::Rows { r } = layout else { return };
            for_each_row_block(out, 1, x.len(), |rows, o| {
                for (i, o) in rows.zip(o.iter_mut()) {
                    let row = &x[i * r..(i + 1) * r];
                    let m = row.iter().fold(lowest, |m, &v| max_nan(m, load(v))).to_f64();
                    // All -inf (or empty), +inf or NaN: the shifted sum has no meaning,
                    // and the answer is the maximum itself.
                    let v = if m.is_finite() {
                        let s: f64 = row.iter().map(|&v| (load(v).to_f64() - m).exp()).sum();
                        m + s.ln()
                    } else {
                        m
                    };
                    *o = store(A::from_f64_trunc(v));
                }
            });
        }
    }
}

/// One reduction kind, bound to an element type and its accumulator.
struct Reducer<A, L, P, C, F, S> {
    e: A,
    load: L,
    phi: P,
    comb: C,
    fin: F,
    store: S,
}

impl<A, L, P, C, F, S> Reducer<A, L, P, C, F, S>
where
    A: Num,
    P: Fn(A) -> A + Sync,
    C: Fn(A, A) -> A + Sync,
    F: Fn(A, usize) -> A + Sync,
{
    fn run<T>(&self, x: &[T], layout: Layout, out: &mut [T])
    where
        T: Copy + Send + Sync,
        L: Fn(T) -> A + Sync,
        S: Fn(A) -> T + Sync,
    {
        match layout {
            Layout::Rows { r } => for_each_row_block(out, 1, x.len().max(out.len()), |rows, o| {
                for (i, o) in rows.zip(o.iter_mut()) {
                    *o = (self.store)((self.fin)(self.fold(&x[i * r..(i + 1) * r]), r));
                }
            }),
            Layout::Columns { r, inner } => for_each_row_block(out, inner, x.len().max(out.len()), |rows, o| {
                let mut acc = vec![self.e; inner];
                for (k, o) in rows.zip(o.chunks_exact_mut(inner)) {
                    acc.fill(self.e);
                    for row in x[k * r * inner..(k + 1) * r * inner].chunks_exact(inner) {
                        for (a, &v) in acc.iter_mut().zip(row) {
                            *a = (self.comb)(*a, (self.phi)((self.load)(v)));
                        }
                    }
                    for (o, &a) in o.iter_mut().zip(&acc) {
                        *o = (self.store)((self.fin)(a, r));
                    }
                }
            }),
            Layout::General => unreachable!("general layouts are transposed to rows first"),
        }
    }

    /// Folds one contiguous row with eight independent lanes, so the loop vectorises.
    #[inline(always)]
    fn fold<T: Copy>(&self, row: &[T]) -> A
    where
        L: Fn(T) -> A,
    {
        let mut lanes = [self.e; 8];
        let chunks = row.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l = (self.comb)(*l, (self.phi)((self.load)(v)));
            }
        }
        let mut acc = self.e;
        for &v in rest {
            acc = (self.comb)(acc, (self.phi)((self.load)(v)));
        }
        lanes.iter().fold(acc, |a, &l| (self.comb)(a, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::elementwise::testing::*;
    use smelt_ir::{Op, Tensor};

    fn reduce(kind: ReduceKind, keepdims: bool, x: &Tensor, axes: &[i64], out_shape: &[usize]) -> Tensor {
        let op = Op::Reduce { kind, keepdims, noop_with_empty_axes: false };
        let axes = Tensor::from_vec(&[axes.len()], axes.to_vec()).unwrap();
        run(&op, &[Some(x), Some(&axes)], &[(x.dtype(), out_shape)]).unwrap().remove(0)
    }

    /// The reduction computed one output at a time in f64.
    fn naive(kind: ReduceKind, x: &[f64], shape: &[usize], axes: &[usize]) -> Vec<f64> {
        let rank = shape.len();
        let out_shape: Vec<usize> = (0..rank).map(|d| if axes.contains(&d) { 1 } else { shape[d] }).collect();
        let n_out: usize = out_shape.iter().product();
        let mut groups: Vec<Vec<f64>> = vec![Vec::new(); n_out];
        for (flat, &v) in x.iter().enumerate() {
            let mut r = flat;
            let mut idx = vec![0; rank];
            for d in (0..rank).rev() {
                idx[d] = r % shape[d];
                r /= shape[d];
            }
            let o = (0..rank).fold(0, |acc, d| acc * out_shape[d] + if axes.contains(&d) { 0 } else { idx[d] });
            groups[o].push(v);
        }
        groups
            .iter()
            .map(|g| match kind {
                ReduceKind::Sum => g.iter().sum(),
                ReduceKind::Mean => g.iter().sum::<f64>() / g.len() as f64,
                ReduceKind::Max => g.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                ReduceKind::Min => g.iter().cloned().fold(f64::INFINITY, f64::min),
                ReduceKind::Prod => g.iter().product(),
                ReduceKind::L1 => g.iter().map(|v| v.abs()).sum(),
                ReduceKind::L2 => g.iter().map(|v| v * v).sum::<f64>().sqrt(),
                ReduceKind::LogSum => g.iter().sum::<f64>().ln(),
                ReduceKind::LogSumExp => g.iter().map(|v| v.exp()).sum::<f64>().ln(),
                ReduceKind::SumSquare => g.iter().map(|v| v * v).sum(),
            })
            .collect()
    }

    const KINDS: [ReduceKind; 10] = [
        ReduceKind::Sum,
        ReduceKind::Mean,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
        ReduceKind::L1,
        ReduceKind::L2,
        ReduceKind::LogSum,
        ReduceKind::LogSumExp,
        ReduceKind::SumSquare,
    ];

    #[test]
    fn every_kind_over_every_layout() {
        let mut rng = Rng::new(5);
        let shape = [3, 4, 5, 2];
        let x = rng.tensor_f32(&shape, 0.5, 1.5);
        let xs = x.to_f64_vec();
        for axes in [vec![3], vec![2, 3], vec![1], vec![0], vec![0, 2], vec![1, 3], vec![0, 1, 2, 3], vec![-1, -3]] {
            let norm: Vec<usize> = axes.iter().map(|&a| if a < 0 { a + 4 } else { a } as usize).collect();
            let keep_shape: Vec<usize> = (0..4).map(|d| if norm.contains(&d) { 1 } else { shape[d] }).collect();
            let drop_shape: Vec<usize> = (0..4).filter(|d| !norm.contains(d)).map(|d| shape[d]).collect();
            for kind in KINDS {
                let want = naive(kind, &xs, &shape, &norm);
                let got = reduce(kind, true, &x, &axes, &keep_shape);
                assert_close(&got.to_f64_vec(), &want, 1e-5);
                let got = reduce(kind, false, &x, &axes, &drop_shape);
                assert_close(&got.to_f64_vec(), &want, 1e-5);
            }
        }
    }

    #[test]
    fn large_last_axis_mean_runs_in_parallel() {
        let mut rng = Rng::new(6);
        let x = rng.tensor_f32(&[512, 768], -1.0, 1.0);
        let got = reduce(ReduceKind::Mean, true, &x, &[-1], &[512, 1]);
        assert_close(&got.to_f64_vec(), &naive(ReduceKind::Mean, &x.to_f64_vec(), &[512, 768], &[1]), 1e-5);
        let got = reduce(ReduceKind::Sum, false, &x, &[0], &[768]);
        assert_close(&got.to_f64_vec(), &naive(ReduceKind::Sum, &x.to_f64_vec(), &[512, 768], &[0]), 1e-4);
    }

    #[test]
    fn absent_or_empty_axes() {
        let x = Tensor::from_vec(&[2, 2], vec![-2f32, 3.0, 1.0, 4.0]).unwrap();
        let op = Op::Reduce { kind: ReduceKind::Sum, keepdims: true, noop_with_empty_axes: false };
        let y = run(&op, &[Some(&x)], &[(DType::F32, &[1, 1])]).unwrap().remove(0);
        assert_eq!(y.to_f64_vec(), vec![6.0]);
        let empty = Tensor::from_vec::<i64>(&[0], vec![]).unwrap();
        let y = run(&op, &[Some(&x), Some(&empty)], &[(DType::F32, &[1, 1])]).unwrap().remove(0);
        assert_eq!(y.to_f64_vec(), vec![6.0]);
        // No-op: each element is its own group, as onnxruntime computes it.
        for (kind, want) in [
            (ReduceKind::Sum, vec![-2.0, 3.0, 1.0, 4.0]),
            (ReduceKind::SumSquare, vec![4.0, 9.0, 1.0, 16.0]),
            (ReduceKind::L1, vec![2.0, 3.0, 1.0, 4.0]),
            (ReduceKind::LogSumExp, vec![-2.0, 3.0, 1.0, 4.0]),
        ] {
            let op = Op::Reduce { kind, keepdims: true, noop_with_empty_axes: true };
            let y = run(&op, &[Some(&x), Some(&empty)], &[(DType::F32, &[2, 2])]).unwrap().remove(0);
            assert_close(&y.to_f64_vec(), &want, 1e-6);
        }
        let dup = Tensor::from_vec(&[2], vec![1i64, -1]).unwrap();
        let op = Op::Reduce { kind: ReduceKind::Sum, keepdims: true, noop_with_empty_axes: false };
        assert!(run(&op, &[Some(&x), Some(&dup)], &[(DType::F32, &[2, 1])]).is_err());
        let bad = Tensor::from_vec(&[1], vec![2i64]).unwrap();
        assert!(run(&op, &[Some(&x), Some(&bad)], &[(DType::F32, &[2, 1])]).is_err());
    }

    #[test]
    fn empty_reductions_give_identities() {
        let x = Tensor::from_vec::<f32>(&[2, 0], vec![]).unwrap();
        for (kind, want) in [
            (ReduceKind::Sum, 0.0),
            (ReduceKind::Mean, 0.0),
            (ReduceKind::Max, f64::NEG_INFINITY),
            (ReduceKind::Min, f64::INFINITY),
            (ReduceKind::Prod, 1.0),
            (ReduceKind::L1, 0.0),
            (ReduceKind::L2, 0.0),
            (ReduceKind::LogSum, f64::NEG_INFINITY),
            (ReduceKind::LogSumExp, f64::NEG_INFINITY),
            (ReduceKind::SumSquare, 0.0),
        ] {
            assert_eq!(reduce(kind, true, &x, &[1], &[2, 1]).to_f64_vec(), vec![want; 2], "{kind:?}");
        }
        let b = Tensor::from_bools(&[2, 0], &[]).unwrap();
        assert_eq!(reduce(ReduceKind::Max, false, &b, &[1], &[2]).as_slice::<u8>().unwrap(), &[0, 0]);
        assert_eq!(reduce(ReduceKind::Min, false, &b, &[1], &[2]).as_slice::<u8>().unwrap(), &[1, 1]);
        let xi = Tensor::from_vec::<i32>(&[2, 0], vec![]).unwrap();
        assert_eq!(reduce(ReduceKind::Max, false, &xi, &[1], &[2]).to_i64_vec(), vec![i32::MIN as i64; 2]);
        assert_eq!(reduce(ReduceKind::Min, false, &xi, &[1], &[2]).to_i64_vec(), vec![i32::MAX as i64; 2]);
        let none = Tensor::from_vec::<f32>(&[0, 3], vec![]).unwrap();
        assert_eq!(reduce(ReduceKind::Sum, false, &none, &[0], &[3]).to_f64_vec(), vec![0.0; 3]);
        assert_eq!(reduce(ReduceKind::Sum, false, &none, &[1], &[0]).len(), 0);
    }

    #[test]
    fn integers_halves_and_nan() {
        let x = Tensor::from_vec(&[3], vec![1i32, 2, 2]).unwrap();
        assert_eq!(reduce(ReduceKind::Mean, false, &x, &[0], &[]).to_i64_vec(), vec![1]);
        let x = Tensor::from_vec(&[4], vec![1i32, 2, 2, 1]).unwrap();
        assert_eq!(reduce(ReduceKind::L2, false, &x, &[0], &[]).to_i64_vec(), vec![3]);
        assert_eq!(reduce(ReduceKind::Prod, false, &x, &[0], &[]).to_i64_vec(), vec![4]);
        let big = Tensor::from_vec(&[2], vec![i32::MAX, 1]).unwrap();
        assert_eq!(reduce(ReduceKind::Sum, false, &big, &[0], &[]).to_i64_vec(), vec![i32::MIN as i64]);
        let b = Tensor::from_bools(&[2, 3], &[true, false, true, false, false, false]).unwrap();
        assert_eq!(reduce(ReduceKind::Max, false, &b, &[1], &[2]).as_slice::<u8>().unwrap(), &[1, 0]);
        assert_eq!(reduce(ReduceKind::Min, false, &b, &[0], &[3]).as_slice::<u8>().unwrap(), &[0, 0, 0]);
        assert!(run(
            &Op::Reduce { kind: ReduceKind::Sum, keepdims: false, noop_with_empty_axes: false },
            &[Some(&b)],
            &[(DType::Bool, &[])]
        )
        .is_err());
        let u = Tensor::from_vec(&[3], vec![200u8, 7, 255]).unwrap();
        assert_eq!(reduce(ReduceKind::Max, false, &u, &[0], &[]).to_i64_vec(), vec![255]);
        let h: Vec<f16> = (0..100).map(|i| f16::from_f32(i as f32 * 0.25)).collect();
        let h = Tensor::from_vec(&[100], h).unwrap();
        // 1237.5 accumulated in f32, then rounded to f16 (ties to even).
        assert_eq!(reduce(ReduceKind::Sum, false, &h, &[0], &[]).to_f64_vec(), vec![1238.0]);
        let n = Tensor::from_vec(&[2, 3], vec![1f32, f32::NAN, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let m = reduce(ReduceKind::Max, false, &n, &[1], &[2]).to_f64_vec();
        assert!(m[0].is_nan() && m[1] == 6.0);
        let m = reduce(ReduceKind::Min, false, &n, &[0], &[3]).to_f64_vec();
        assert!(m[1].is_nan() && m[0] == 1.0 && m[2] == 3.0);
        let l = Tensor::from_vec(&[2], vec![1000f32, 1000.0]).unwrap();
        assert_close(&reduce(ReduceKind::LogSumExp, false, &l, &[0], &[]).to_f64_vec(), &[1000.0 + 2f64.ln()], 1e-7);
    }

    #[test]
    fn layouts_are_recognised() {
        assert_eq!(Layout::of(&[4, 5], &[false, true]), Layout::Rows { r: 5 });
        assert_eq!(Layout::of(&[4, 5, 1], &[false, true, false]), Layout::Rows { r: 5 });
        assert_eq!(Layout::of(&[4, 5, 6], &[false, true, false]), Layout::Columns { r: 5, inner: 6 });
        assert_eq!(Layout::of(&[4, 5, 6], &[true, true, false]), Layout::Columns { r: 20, inner: 6 });
        assert_eq!(Layout::of(&[4, 5, 6], &[true, false, true]), Layout::General);
        assert_eq!(Layout::of(&[], &[]), Layout::Rows { r: 1 });
    }
}
