//! Reductions: ReduceX (axes as an input) and ArgMax/ArgMin.

use super::dims::{const_ints, fact_with_values, norm_axes, norm_axis, small_values, Product, Val};
use super::Args;
use crate::{DType, Dim, Fact, ReduceKind, Shape};

/// Output dims after reducing `axes` (normalised) of `d`.
fn reduced(d: &[Dim], axes: &[usize], keepdims: bool) -> Vec<Dim> {
    d.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Fixed(1)),
            (true, false) => None,
        })
        .collect()
}

pub(super) fn reduce(
    kind: ReduceKind,
    keepdims: bool,
    noop_with_empty_axes: bool,
    inputs: &[Option<&Fact>],
) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "axes"], 1)?;
    a.int_input(1)?;
    let x = a.req(0);
    let axes_len = match a.opt(1).map(|f| f.shape.dims()) {
        Some(Some([d])) => d.fixed(),
        Some(Some(d)) if !d.is_empty() => {
            return Err(format!("axes must be 1-D, got shape {}", a.req(1).shape));
        }
        _ => None,
    };
    // An absent or empty axes input reduces everything (or nothing, with the flag).
    let axes: Option<Vec<i64>> = match a.opt(1) {
        None => Some(Vec::new()),
        Some(f) => const_ints(f).or_else(|| (axes_len == Some(0)).then(Vec::new)),
    };
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    let shape = match axes {
        Some(v) if v.is_empty() && noop_with_empty_axes => x.shape.clone(),
        Some(v) => {
            let all: Vec<usize> = if v.is_empty() { (0..d.len()).collect() } else { norm_axes(&v, d.len(), "axes")? };
            // ReduceProd of a shape vector is an element count (`Flatten` spelled out).
            if kind == ReduceKind::Prod && d.len() == 1 && x.dtype.is_int() {
                if let Some(vals) = small_values(x) {
                    let dims: Vec<Dim> = vals
                        .iter()
                        .map(|v| if v.int().is_some_and(|i| i < 0) { Dim::Unknown } else { v.to_dim() })
                        .collect();
                    let rank = if keepdims { 1 } else { 0 };
                    return Ok(vec![fact_with_values(
                        x.dtype,
                        rank,
                        vec![Val::from_dim(&Product::of(&dims).to_dim())],
                    )]);
                }
            }
            Shape::new(reduced(d, &all, keepdims))
        }
        // Unknown axes: with keepdims the rank stays and any dim may become 1.
        None if keepdims => {
            Shape::new(d.iter().map(|d| if *d == Dim::Fixed(1) { d.clone() } else { Dim::Unknown }).collect())
        }
        None => match axes_len {
            Some(k) if k > 0 && k <= d.len() => Shape::of_rank(d.len() - k),
            _ => Shape::unknown(),
        },
    };
    Ok(vec![Fact::new(x.dtype, shape)])
}

pub(super) fn arg_reduce(axis: i64, keepdims: bool, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data"], 1)?;
    let x = a.req(0);
    let shape = match x.shape.dims() {
        Some(d) => {
            let axis = norm_axis(axis, d.len(), "axis")?;
            Shape::new(reduced(d, &[axis], keepdims))
        }
        None => Shape::unknown(),
    };
    Ok(vec![Fact::new(DType::I64, shape)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{DType, Dim, Op, ReduceKind, Shape};

    fn reduce(kind: ReduceKind, keepdims: bool, noop: bool) -> Op {
        Op::Reduce { kind, keepdims, noop_with_empty_axes: noop }
    }

    #[test]
    fn reduce_axes_and_keepdims() {
        let x = f32(shape!["b", "s", 768]);
        let mean = reduce(ReduceKind::Mean, true, false);
        assert_eq!(one(&mean, &[&x, &i64s(&[-1])]).shape, shape!["b", "s", 1]);
        let sum = reduce(ReduceKind::Sum, false, false);
        assert_eq!(one(&sum, &[&x, &i64s(&[0, 2])]).shape, shape!["s"]);
        assert_eq!(one(&sum, &[&x]).shape, shape![]);
        assert_eq!(one(&reduce(ReduceKind::Max, true, false), &[&x]).shape, shape![1, 1, 1]);
        let noop = reduce(ReduceKind::Sum, false, true);
        assert_eq!(one(&noop, &[&x, &i64s(&[])]).shape, x.shape);
        assert!(err(&sum, &[&x, &i64s(&[3])]).contains("out of range"));
        assert!(err(&sum, &[&x, &i64s(&[1, -2])]).contains("twice"));
    }

    #[test]
    fn reduce_with_unknown_axes() {
        let x = f32(shape!["b", 1, 8]);
        let axes = fact(DType::I64, shape![1]);
        assert_eq!(one(&reduce(ReduceKind::L2, true, false), &[&x, &axes]).shape, shape!["?", 1, "?"]);
        assert_eq!(one(&reduce(ReduceKind::L2, false, false), &[&x, &axes]).shape, Shape::of_rank(2));
    }

    #[test]
    fn reduce_prod_of_a_shape_counts_elements() {
        let s = one(
            &Op::Slice,
            &[&one(&Op::Shape { start: 0, end: None }, &[&f32(shape!["b", 4, 8])]), &i64s(&[1]), &i64s(&[3])],
        );
        let n = one(&reduce(ReduceKind::Prod, true, false), &[&s]);
        assert_eq!(n.constant.as_ref().unwrap().to_i64_vec(), vec![32]);
        let sym = one(&Op::Shape { start: 0, end: Some(1) }, &[&f32(shape!["b", 4])]);
        let p = one(&reduce(ReduceKind::Prod, false, false), &[&sym]);
        assert_eq!(dims_value(&p), vec![Dim::Sym("b".into())]);
    }

    #[test]
    fn argmax_gives_i64() {
        let x = f32(shape!["b", 10]);
        let am = one(&Op::ArgMax { axis: -1, keepdims: false, select_last_index: false }, &[&x]);
        assert_eq!((am.dtype, am.shape), (DType::I64, shape!["b"]));
        let keep = one(&Op::ArgMin { axis: 0, keepdims: true, select_last_index: false }, &[&x]);
        assert_eq!(keep.shape, shape![1, 10]);
        assert!(err(&Op::ArgMax { axis: 2, keepdims: true, select_last_index: false }, &[&x]).contains("axis"));
    }
}
