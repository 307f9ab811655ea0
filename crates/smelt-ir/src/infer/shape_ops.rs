//! Ops that produce shapes or build tensors from them: Shape, Size,
//! ConstantOfShape, Range.

use super::dims::{fact_with_values, fmt_vals, scalar_value, values, Product, Val, MAX_TRACKED_VALUES};
use super::Args;
use crate::{DType, Dim, Fact, Shape, Tensor};

pub(super) fn shape(start: i64, end: Option<i64>, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data"], 1)?;
    let Some(d) = a.req(0).shape.dims() else { return Ok(vec![Fact::new(DType::I64, Shape::of_rank(1))]) };
    // start and end are clamped to [0, rank] after wrapping negatives.
    let r = d.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
    let picked = if e > s { &d[s..e] } else { &d[..0] };
    Ok(vec![fact_with_values(DType::I64, 1, picked.iter().map(Val::from_dim).collect())])
}

pub(super) fn size(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data"], 1)?;
    Ok(vec![match a.req(0).shape.dims() {
        Some(d) => fact_with_values(DType::I64, 0, vec![Val::from_dim(&Product::of(d).to_dim())]),
        None => Fact::new(DType::I64, Shape::fixed(&[])),
    }])
}

pub(super) fn constant_of_shape(value: &Tensor, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input"], 1)?;
    a.int_input(0)?;
    let s = a.req(0);
    if value.len() != 1 {
        return Err(format!("value must hold one element, got shape {:?}", value.shape()));
    }
    let dtype = value.dtype();
    let shape = match values(s) {
        Some(v) => {
            if let Some(n) = v.iter().find_map(|v| v.int().filter(|i| *i < 0)) {
                return Err(format!("shape {} has the negative size {n}", fmt_vals(&v)));
            }
            Shape::new(v.iter().map(Val::to_dim).collect())
        }
        None => match s.shape.dims() {
            Some([Dim::Fixed(n)]) => Shape::of_rank(*n),
            Some([_]) | None => Shape::unknown(),
            Some(_) => return Err(format!("input must be a 1-D shape, got shape {}", s.shape)),
        },
    };
    // A short filled vector is shape arithmetic (exporters build `ones(rank)` this way).
    if let Some(fixed) = shape.as_fixed() {
        let n: usize = fixed.iter().product();
        if fixed.len() <= 1 && n <= MAX_TRACKED_VALUES && dtype.is_int() {
            let v = value.to_i64_vec()[0];
            return Ok(vec![fact_with_values(dtype, fixed.len(), vec![Val::Int(v); n])]);
        }
    }
    Ok(vec![Fact::new(dtype, shape)])
}

pub(super) fn range(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["start", "limit", "delta"], 3)?;
    let dtype = a.same_dtype(&[0, 1, 2])?;
    for i in 0..3 {
        if let Some(d) = a.req(i).shape.dims() {
            if d.len() > 1 || d.first().is_some_and(|d| *d != Dim::Fixed(1)) {
                return Err(format!("{} must be a scalar, got shape {}", a.name(i), a.req(i).shape));
            }
        }
    }
    let len = if dtype.is_float() {
        let scalar = |i: usize| a.req(i).constant.as_ref().map(|t| t.to_f64_vec()[0]);
        match (scalar(0), scalar(1), scalar(2)) {
            (_, _, Some(0.0)) => return Err("delta must not be 0".into()),
            (Some(s), Some(l), Some(d)) => {
                let n = ((l - s) / d).ceil().max(0.0);
                if !n.is_finite() {
                    return Err(format!("Range from {s} to {l} by {d} has no finite length"));
                }
                Dim::Fixed(n as usize)
            }
            _ => Dim::Unknown,
        }
    } else {
        let (s, l, d) = (scalar_value(a.req(0)), scalar_value(a.req(1)), scalar_value(a.req(2)));
        match (s, l, d) {
            (_, _, Some(Val::Int(0))) => return Err("delta must not be 0".into()),
            (Some(Val::Int(s)), Some(Val::Int(l)), Some(Val::Int(d))) => {
                // max(ceil((limit - start) / delta), 0), in a width that cannot overflow.
                let (span, step) = (l as i128 - s as i128, d as i128);
                let n = if span.signum() == step.signum() {
                    ((span.abs() + step.abs() - 1) / step.abs()) as usize
                } else {
                    0
                };
                if n <= MAX_TRACKED_VALUES {
                    let vals = (0..n as i64).map(|k| Val::Int(s + k * d)).collect();
                    return Ok(vec![fact_with_values(dtype, 1, vals)]);
                }
                Dim::Fixed(n)
            }
            // `Range(0, seq, 1)`: position ids have the symbolic length.
            (Some(Val::Int(0)), Some(Val::Sym(l)), Some(Val::Int(1))) => Dim::Sym(l),
            _ => Dim::Unknown,
        }
    };
    Ok(vec![Fact::new(dtype, Shape::new(vec![len]))])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{DType, Dim, Op, Shape, Tensor};

    fn shape_op(start: i64, end: Option<i64>) -> Op {
        Op::Shape { start, end }
    }

    #[test]
    fn shape_gives_dims_and_constants() {
        let s = one(&shape_op(0, None), &[&f32(shape!["b", 3])]);
        assert_eq!(s.dtype, DType::I64);
        assert_eq!(s.shape, shape![2]);
        assert_eq!(dims_value(&s), vec![Dim::Sym("b".into()), Dim::Fixed(3)]);
        assert!(s.constant.is_none());
        let c = one(&shape_op(0, None), &[&f32(shape![2, 3, 4])]);
        assert_eq!(c.constant.as_ref().unwrap().to_i64_vec(), vec![2, 3, 4]);
        let sliced = one(&shape_op(-2, Some(100)), &[&f32(shape![2, 3, 4])]);
        assert_eq!(sliced.constant.as_ref().unwrap().to_i64_vec(), vec![3, 4]);
        let empty = one(&shape_op(2, Some(1)), &[&f32(shape![2, 3, 4])]);
        assert_eq!(empty.shape, shape![0]);
        assert_eq!(one(&shape_op(0, None), &[&f32(Shape::unknown())]).shape, shape!["?"]);
    }

    #[test]
    fn size_is_a_scalar() {
        let s = one(&Op::Size, &[&f32(shape![2, 3, 4])]);
        assert_eq!(s.shape, shape![]);
        assert_eq!(s.constant.as_ref().unwrap().to_i64_vec(), vec![24]);
        let sym = one(&Op::Size, &[&f32(shape!["n", 1])]);
        assert_eq!(dims_value(&sym), vec![Dim::Sym("n".into())]);
        assert!(sym.constant.is_none());
    }

    #[test]
    fn constant_of_shape_takes_the_value_dtype() {
        let op = Op::ConstantOfShape { value: Tensor::scalar(1.5f32) };
        let shape_in = one(&Op::Shape { start: 0, end: None }, &[&f32(shape!["b", 7])]);
        let out = one(&op, &[&shape_in]);
        assert_eq!(out.dtype, DType::F32);
        assert_eq!(out.shape, shape!["b", 7]);
        let ints = Op::ConstantOfShape { value: Tensor::from_slice(&[1], &[1i64]).unwrap() };
        let ones = one(&ints, &[&i64s(&[3])]);
        assert_eq!(ones.constant.as_ref().unwrap().to_i64_vec(), vec![1, 1, 1]);
        assert_eq!(one(&op, &[&fact(DType::I64, shape![3])]).shape, Shape::of_rank(3));
        assert!(err(&op, &[&i64s(&[2, -1])]).contains("negative"));
    }

    #[test]
    fn range_lengths() {
        let r = one(&Op::Range, &[&i64_scalar(0), &i64_scalar(10), &i64_scalar(3)]);
        assert_eq!(r.constant.as_ref().unwrap().to_i64_vec(), vec![0, 3, 6, 9]);
        let down = one(&Op::Range, &[&i64_scalar(10), &i64_scalar(4), &i64_scalar(-3)]);
        assert_eq!(down.constant.as_ref().unwrap().to_i64_vec(), vec![10, 7]);
        let empty = one(&Op::Range, &[&i64_scalar(5), &i64_scalar(1), &i64_scalar(1)]);
        assert_eq!(empty.shape, shape![0]);
        let big = one(&Op::Range, &[&i64_scalar(0), &i64_scalar(1000), &i64_scalar(1)]);
        assert_eq!(big.shape, shape![1000]);
        assert!(big.constant.is_none());
        let float = one(&Op::Range, &[&f32_scalar(1.0), &f32_scalar(2.0), &f32_scalar(0.3)]);
        assert_eq!(float.shape, shape![4]);
        assert_eq!(float.dtype, DType::F32);
        assert!(err(&Op::Range, &[&i64_scalar(0), &i64_scalar(3), &i64_scalar(0)]).contains("delta"));
    }

    #[test]
    fn range_with_symbolic_limit() {
        let seq = one(
            &Op::Gather { axis: 0 },
            &[&one(&Op::Shape { start: 0, end: None }, &[&f32(shape!["b", "seq"])]), &i64_scalar(1)],
        );
        let positions = one(&Op::Range, &[&i64_scalar(0), &seq, &i64_scalar(1)]);
        assert_eq!(positions.shape, shape!["seq"]);
        let offset = one(&Op::Range, &[&i64_scalar(2), &seq, &i64_scalar(1)]);
        assert_eq!(offset.shape, shape!["?"]);
        let unknown = one(&Op::Range, &[&i64_scalar(0), &fact(DType::I64, shape![]), &i64_scalar(1)]);
        assert_eq!(unknown.shape, shape!["?"]);
    }
}
