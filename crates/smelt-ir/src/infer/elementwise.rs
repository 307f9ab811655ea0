//! Elementwise ops and the ops whose output has the shape of their input
//! (Softmax family, Trilu, CumSum).

use super::dims::{
    broadcast_shapes, check_broadcasts_to, fact_with_values, norm_axis, scalar_value, small_values, Val,
};
use super::{all_present, Args};
use crate::{BinaryOp, DType, Fact, Shape, UnaryOp};

fn expect_dtype(f: &Fact, ok: bool, what: &str, need: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{what} must be {need}, got {}", f.dtype))
    }
}

pub(super) fn unary(u: &UnaryOp, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X"], 1)?;
    let x = a.req(0);
    let dtype = match u {
        UnaryOp::Not => {
            expect_dtype(x, x.dtype == DType::Bool, "X", "bool")?;
            DType::Bool
        }
        UnaryOp::IsNaN | UnaryOp::IsInf { .. } => {
            expect_dtype(x, x.dtype.is_float(), "X", "a float tensor")?;
            DType::Bool
        }
        UnaryOp::BitwiseNot => {
            expect_dtype(x, x.dtype.is_int(), "X", "an integer tensor")?;
            x.dtype
        }
        _ => {
            expect_dtype(x, x.dtype != DType::Bool, "X", "numeric")?;
            x.dtype
        }
    };
    let mut out = Fact::new(dtype, x.shape.clone());
    // Negating a dimension appears in shape arithmetic (`-seq` as a Slice start).
    if *u == UnaryOp::Neg && x.dtype.is_int() {
        if let Some(v) = small_values(x) {
            let neg = v.iter().map(|v| v.int().map_or(Val::Unknown, |i| Val::Int(i.wrapping_neg()))).collect();
            out = value_fact(x.dtype, &x.shape, neg).unwrap_or(out);
        }
    }
    Ok(vec![out])
}

/// A fact for an elementwise result whose values are known, when the shape is a
/// scalar or a short vector.
fn value_fact(dtype: DType, shape: &Shape, vals: Vec<Val>) -> Option<Fact> {
    let rank = shape.rank()?;
    if rank > 1 || shape.as_fixed()?.iter().product::<usize>() != vals.len() {
        return None;
    }
    Some(fact_with_values(dtype, rank, vals))
}

pub(super) fn binary(op: BinaryOp, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["A", "B"], 2)?;
    let (x, y) = (a.req(0), a.req(1));
    if op == BinaryOp::PRelu {
        a.same_dtype(&[0, 1])?;
        check_broadcasts_to(&y.shape, &x.shape, "slope")?;
        return Ok(vec![Fact::new(x.dtype, x.shape.clone())]);
    }
    let dtype = match op {
        BinaryOp::Pow => {
            expect_dtype(x, x.dtype != DType::Bool, "the base", "numeric")?;
            expect_dtype(y, y.dtype != DType::Bool, "the exponent", "numeric")?;
            x.dtype
        }
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
            expect_dtype(x, x.dtype == DType::Bool, "A", "bool")?;
            expect_dtype(y, y.dtype == DType::Bool, "B", "bool")?;
            DType::Bool
        }
        BinaryOp::Equal | BinaryOp::Less | BinaryOp::LessOrEqual | BinaryOp::Greater | BinaryOp::GreaterOrEqual => {
            a.same_dtype(&[0, 1])?;
            DType::Bool
        }
        BinaryOp::BitShiftLeft | BinaryOp::BitShiftRight => {
            let t = a.same_dtype(&[0, 1])?;
            expect_dtype(x, t.is_int() && !t.is_signed(), "A", "an unsigned integer tensor")?;
            t
        }
        BinaryOp::BitwiseAnd | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor => {
            let t = a.same_dtype(&[0, 1])?;
            expect_dtype(x, t.is_int(), "A", "an integer tensor")?;
            t
        }
        _ => {
            let t = a.same_dtype(&[0, 1])?;
            expect_dtype(x, t != DType::Bool, "A", "numeric")?;
            t
        }
    };
    let shape = broadcast_shapes(&[&x.shape, &y.shape])?;
    let dim_arithmetic = matches!(
        op,
        BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Equal
            | BinaryOp::Less
            | BinaryOp::LessOrEqual
            | BinaryOp::Greater
            | BinaryOp::GreaterOrEqual
    );
    if dim_arithmetic && x.dtype.is_int() {
        if let (Some(vx), Some(vy)) = (small_values(x), small_values(y)) {
            if let Some(vals) = zip_broadcast(&vx, &vy, |p, q| value_op(op, p, q)) {
                if let Some(f) = value_fact(dtype, &shape, vals) {
                    return Ok(vec![f]);
                }
            }
        }
    }
    Ok(vec![Fact::new(dtype, shape)])
}

/// Applies `f` to two value lists of equal length or where one has one element.
fn zip_broadcast(x: &[Val], y: &[Val], f: impl Fn(&Val, &Val) -> Val) -> Option<Vec<Val>> {
    match (x.len(), y.len()) {
        (n, m) if n == m => Some(x.iter().zip(y).map(|(p, q)| f(p, q)).collect()),
        (1, _) => Some(y.iter().map(|q| f(&x[0], q)).collect()),
        (_, 1) => Some(x.iter().map(|p| f(p, &y[0])).collect()),
        _ => None,
    }
}

/// Integer arithmetic on dims, kept symbolic where the identity is exact.
fn value_op(op: BinaryOp, p: &Val, q: &Val) -> Val {
    use Val::{Int, Sym};
    let bool_val = |b: bool| Int(b as i64);
    match (op, p, q) {
        (_, Int(a), Int(b)) => {
            let r = match op {
                BinaryOp::Add => a.checked_add(*b),
                BinaryOp::Sub => a.checked_sub(*b),
                BinaryOp::Mul => a.checked_mul(*b),
                // ONNX integer Div truncates, as C does.
                BinaryOp::Div => a.checked_div(*b),
                BinaryOp::Equal => Some((a == b) as i64),
                BinaryOp::Less => Some((a < b) as i64),
                BinaryOp::Greater => Some((a > b) as i64),
                BinaryOp::LessOrEqual => Some((a <= b) as i64),
                BinaryOp::GreaterOrEqual => Some((a >= b) as i64),
                _ => None,
            };
            r.map_or(Val::Unknown, Int)
        }
        (BinaryOp::Add, Sym(s), Int(0)) | (BinaryOp::Add, Int(0), Sym(s)) => Sym(s.clone()),
        (BinaryOp::Sub, Sym(s), Int(0)) => Sym(s.clone()),
        (BinaryOp::Sub, Sym(s), Sym(t)) if s == t => Int(0),
        (BinaryOp::Mul, Sym(s), Int(1)) | (BinaryOp::Mul, Int(1), Sym(s)) => Sym(s.clone()),
        (BinaryOp::Mul, _, Int(0)) | (BinaryOp::Mul, Int(0), _) => Int(0),
        (BinaryOp::Div, Sym(s), Int(1)) => Sym(s.clone()),
        // A dim is never negative: the exporters' `shape == -1` tests are decidable.
        (BinaryOp::Equal, Sym(_), Int(v)) | (BinaryOp::Equal, Int(v), Sym(_)) if *v < 0 => bool_val(false),
        (BinaryOp::Equal, Sym(s), Sym(t)) if s == t => bool_val(true),
        _ => Val::Unknown,
    }
}

pub(super) fn variadic(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let facts = all_present(inputs, 1)?;
    let dtype = facts[0].dtype;
    for (i, f) in facts.iter().enumerate() {
        if f.dtype != dtype {
            return Err(format!("inputs must share one dtype, but input 0 is {dtype} and input {i} is {}", f.dtype));
        }
    }
    let shapes: Vec<&Shape> = facts.iter().map(|f| &f.shape).collect();
    Ok(vec![Fact::new(dtype, broadcast_shapes(&shapes)?)])
}

pub(super) fn clip(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input", "min", "max"], 1)?;
    let x = a.req(0);
    a.same_dtype(&[0, 1, 2])?;
    for i in [1, 2] {
        if let Some(bound) = a.opt(i) {
            check_broadcasts_to(&bound.shape, &x.shape, a.name(i))?;
        }
    }
    Ok(vec![Fact::new(x.dtype, x.shape.clone())])
}

pub(super) fn where_(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["condition", "X", "Y"], 3)?;
    let (c, x, y) = (a.req(0), a.req(1), a.req(2));
    expect_dtype(c, c.dtype == DType::Bool, "condition", "bool")?;
    let dtype = a.same_dtype(&[1, 2])?;
    let shape = broadcast_shapes(&[&c.shape, &x.shape, &y.shape])?;
    // `Where(shape == -1, 1, shape)` is how exporters spell Expand's "keep this dim".
    if dtype.is_int() {
        if let (Some(vc), Some(vx), Some(vy)) = (small_values(c), small_values(x), small_values(y)) {
            let n = vc.len().max(vx.len()).max(vy.len());
            let pick = |v: &[Val], i: usize| if v.len() == 1 { v[0].clone() } else { v[i].clone() };
            let lens_ok = [vc.len(), vx.len(), vy.len()].iter().all(|&l| l == 1 || l == n);
            if lens_ok {
                let vals = (0..n)
                    .map(|i| match pick(&vc, i) {
                        Val::Int(0) => pick(&vy, i),
                        Val::Int(_) => pick(&vx, i),
                        _ => Val::Unknown,
                    })
                    .collect();
                if let Some(f) = value_fact(dtype, &shape, vals) {
                    return Ok(vec![f]);
                }
            }
        }
    }
    Ok(vec![Fact::new(dtype, shape)])
}

pub(super) fn cast(to: DType, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input"], 1)?;
    Ok(vec![cast_fact(a.req(0), to)])
}

pub(super) fn cast_like(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input", "target_type"], 2)?;
    Ok(vec![cast_fact(a.req(0), a.req(1).dtype)])
}

/// Casting between integer types keeps the values of shape tensors.
fn cast_fact(x: &Fact, to: DType) -> Fact {
    if x.dtype.is_int() && to.is_int() {
        if let Some(v) = small_values(x) {
            if let Some(f) = value_fact(to, &x.shape, v) {
                return f;
            }
        }
    }
    Fact::new(to, x.shape.clone())
}

pub(super) fn identity(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input"], 1)?;
    Ok(vec![a.req(0).clone()])
}

pub(super) fn dropout(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "ratio", "training_mode"], 1)?;
    let x = a.req(0);
    Ok(vec![x.clone(), Fact::new(DType::Bool, x.shape.clone())])
}

pub(super) fn softmax(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input"], 1)?;
    let x = a.req(0);
    if let Some(r) = x.shape.rank() {
        norm_axis(axis, r, "axis")?;
    }
    Ok(vec![Fact::new(x.dtype, x.shape.clone())])
}

pub(super) fn trilu(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input", "k"], 1)?;
    let x = a.req(0);
    a.int_input(1)?;
    if let Some(r) = x.shape.rank() {
        if r < 2 {
            return Err(format!("input must have rank 2 or more, got shape {}", x.shape));
        }
    }
    Ok(vec![Fact::new(x.dtype, x.shape.clone())])
}

pub(super) fn cumsum(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["x", "axis"], 2)?;
    let x = a.req(0);
    a.int_input(1)?;
    if let (Some(r), Some(Val::Int(axis))) = (x.shape.rank(), scalar_value(a.req(1))) {
        norm_axis(axis, r, "axis")?;
    }
    Ok(vec![Fact::new(x.dtype, x.shape.clone())])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{BinaryOp, DType, Op, UnaryOp, VariadicOp};

    #[test]
    fn binary_broadcasts_symbols() {
        let x = f32(shape!["batch", "seq", 768]);
        let b = f32(shape![768]);
        assert_eq!(one(&Op::Binary(BinaryOp::Add), &[&x, &b]).shape, shape!["batch", "seq", 768]);
        let m = f32(shape!["batch", 1, 1, "seq"]);
        let s = f32(shape!["batch", 12, "seq", "seq"]);
        assert_eq!(one(&Op::Binary(BinaryOp::Add), &[&s, &m]).shape, shape!["batch", 12, "seq", "seq"]);
        let sym_vs_fixed = f32(shape!["n", 4]);
        let fixed = f32(shape![3, 1]);
        assert_eq!(one(&Op::Binary(BinaryOp::Mul), &[&sym_vs_fixed, &fixed]).shape, shape![3, 4]);
    }

    #[test]
    fn incompatible_broadcast_names_the_dims() {
        let e = err(&Op::Binary(BinaryOp::Add), &[&f32(shape![2, 3]), &f32(shape![2, 5])]);
        assert!(e.contains("3") && e.contains("5") && e.contains("[2, 3]"), "{e}");
    }

    #[test]
    fn comparisons_and_logic_give_bool() {
        let x = f32(shape![4]);
        assert_eq!(one(&Op::Binary(BinaryOp::Less), &[&x, &x]).dtype, DType::Bool);
        let b = fact(DType::Bool, shape![4]);
        assert_eq!(one(&Op::Binary(BinaryOp::And), &[&b, &b]).dtype, DType::Bool);
        assert!(err(&Op::Binary(BinaryOp::And), &[&x, &b]).contains("bool"));
        assert_eq!(one(&Op::Unary(UnaryOp::Not), &[&b]).dtype, DType::Bool);
        assert_eq!(one(&Op::Unary(UnaryOp::IsNaN), &[&x]).dtype, DType::Bool);
        assert!(err(&Op::Binary(BinaryOp::Add), &[&x, &fact(DType::F16, shape![4])]).contains("f16"));
    }

    #[test]
    fn pow_keeps_the_base_dtype_and_prelu_is_unidirectional() {
        let x = f32(shape![2, 3]);
        let e = fact(DType::I64, shape![]);
        assert_eq!(one(&Op::Binary(BinaryOp::Pow), &[&x, &e]).dtype, DType::F32);
        let slope = f32(shape![3]);
        assert_eq!(one(&Op::Binary(BinaryOp::PRelu), &[&x, &slope]).shape, shape![2, 3]);
        assert!(err(&Op::Binary(BinaryOp::PRelu), &[&slope, &x]).contains("slope"));
    }

    #[test]
    fn variadic_where_and_clip() {
        let v = Op::Variadic(VariadicOp::Max);
        let out = one(&v, &[&f32(shape![3, 1]), &f32(shape![1, 4]), &f32(shape![4])]);
        assert_eq!(out.shape, shape![3, 4]);
        let c = fact(DType::Bool, shape![1, 1, "seq", "seq"]);
        let w = one(&Op::Where, &[&c, &f32(shape!["b", 12, "seq", "seq"]), &f32(shape![])]);
        assert_eq!(w.shape, shape!["b", 12, "seq", "seq"]);
        assert!(err(&Op::Where, &[&f32(shape![1]), &f32(shape![1]), &f32(shape![1])]).contains("condition"));
        let clip = one(&Op::Clip, &[&f32(shape!["n", 3]), &f32_scalar(0.0), &f32_scalar(6.0)]);
        assert_eq!(clip.shape, shape!["n", 3]);
    }

    #[test]
    fn cast_keeps_shape_values_between_int_types() {
        let s = one(&Op::Shape { start: 0, end: None }, &[&f32(shape!["b", 7])]);
        let c = one(&Op::Cast { to: DType::I32 }, &[&s]);
        assert_eq!(c.dtype, DType::I32);
        assert_eq!(dims_value(&c), vec![crate::Dim::Sym("b".into()), crate::Dim::Fixed(7)]);
        let f = one(&Op::Cast { to: DType::F32 }, &[&s]);
        assert!(f.dims_value.is_none());
        let like = one(&Op::CastLike, &[&f32(shape![2]), &fact(DType::F16, shape![])]);
        assert_eq!(like.dtype, DType::F16);
    }

    #[test]
    fn dim_arithmetic_stays_symbolic() {
        let s = one(&Op::Shape { start: 0, end: None }, &[&f32(shape!["b", 8])]);
        let doubled = one(&Op::Binary(BinaryOp::Mul), &[&s, &i64s(&[1, 2])]);
        assert_eq!(dims_value(&doubled), vec![crate::Dim::Sym("b".into()), crate::Dim::Fixed(16)]);
        let fixed = one(&Op::Shape { start: 0, end: None }, &[&f32(shape![3, 8])]);
        let halved = one(&Op::Binary(BinaryOp::Div), &[&fixed, &i64_scalar(2)]);
        assert_eq!(halved.constant.as_ref().unwrap().to_i64_vec(), vec![1, 4]);
    }

    #[test]
    fn exporter_expand_pattern_resolves() {
        // Where(Equal(shape, -1), ones, shape): what PyTorch emits for expand(-1, ..).
        let shape = one(&Op::Shape { start: 0, end: None }, &[&f32(shape!["b", 1, 4])]);
        let target = i64s(&[-1, 3, -1]);
        let eq = one(&Op::Binary(BinaryOp::Equal), &[&target, &i64s(&[-1])]);
        assert_eq!(eq.constant.as_ref().unwrap().to_i64_vec(), vec![1, 0, 1]);
        let picked = one(&Op::Where, &[&eq, &shape, &target]);
        assert_eq!(dims_value(&picked), vec![crate::Dim::Sym("b".into()), crate::Dim::Fixed(3), crate::Dim::Fixed(4)]);
    }

    #[test]
    fn softmax_checks_the_axis() {
        let x = f32(shape!["b", 12, "s", "s"]);
        assert_eq!(one(&Op::Softmax { axis: -1, coerce_2d: false }, &[&x]).shape, x.shape);
        assert!(err(&Op::LogSoftmax { axis: 4, coerce_2d: false }, &[&x]).contains("out of range"));
    }

    #[test]
    fn dropout_mask_is_bool() {
        let out = run(&Op::Dropout, &[&f32(shape![2, 3])], 2);
        assert_eq!(out[1].dtype, DType::Bool);
        assert_eq!(out[1].shape, shape![2, 3]);
    }

    #[test]
    fn trilu_and_cumsum_keep_the_shape() {
        let x = f32(shape!["s", "s"]);
        assert_eq!(one(&Op::Trilu { upper: true }, &[&x]).shape, x.shape);
        assert!(err(&Op::Trilu { upper: true }, &[&f32(shape![3])]).contains("rank 2"));
        assert_eq!(one(&Op::CumSum { exclusive: false, reverse: false }, &[&x, &i64_scalar(1)]).shape, x.shape);
        assert!(err(&Op::CumSum { exclusive: false, reverse: false }, &[&x, &i64_scalar(2)]).contains("axis"));
    }
}
