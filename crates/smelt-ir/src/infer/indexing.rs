//! Indexed reads and writes: Gather family, Scatter family, TopK, OneHot.

use super::dims::{const_ints, fact_with_values, norm_axis, scalar_value, small_values, unify, Val};
use super::Args;
use crate::{DType, Dim, Fact, Shape};

pub(super) fn gather(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "indices"], 2)?;
    a.int_input(1)?;
    let (x, idx) = (a.req(0), a.req(1));
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    let axis = norm_axis(axis, d.len(), "axis")?;
    let known = if idx.constant.as_ref().is_some_and(|t| t.len() <= super::dims::MAX_TRACKED_VALUES) {
        const_ints(idx)
    } else {
        None
    };
    if let (Dim::Fixed(n), Some(ix)) = (&d[axis], &known) {
        let n = *n as i64;
        if let Some(bad) = ix.iter().find(|&&i| i < -n || i >= n) {
            return Err(format!("index {bad} is out of range for axis {axis} of {} (size {n})", x.shape));
        }
    }
    let Some(id) = idx.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    let mut out = d[..axis].to_vec();
    out.extend_from_slice(id);
    out.extend_from_slice(&d[axis + 1..]);
    // `Shape(x)[i]`: picking elements of a shape vector keeps their values.
    if d.len() == 1 && id.len() <= 1 {
        if let (Some(vals), Some(ix)) = (small_values(x), known) {
            let n = vals.len() as i64;
            let picked: Vec<Val> = ix
                .iter()
                .map(|&i| {
                    let i = if i < 0 { i + n } else { i };
                    vals.get(i as usize).cloned().unwrap_or(Val::Unknown)
                })
                .collect();
            if x.dtype.is_int() {
                return Ok(vec![fact_with_values(x.dtype, id.len(), picked)]);
            }
        }
    }
    Ok(vec![Fact::new(x.dtype, Shape::new(out))])
}

pub(super) fn gather_elements(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "indices"], 2)?;
    a.int_input(1)?;
    let (x, idx) = (a.req(0), a.req(1));
    if let Some(r) = x.shape.rank() {
        norm_axis(axis, r, "axis")?;
        if let Some(q) = idx.shape.rank() {
            if q != r {
                return Err(format!("indices {} must have the rank of data {}", idx.shape, x.shape));
            }
        }
    }
    Ok(vec![Fact::new(x.dtype, idx.shape.clone())])
}

pub(super) fn gather_nd(batch_dims: usize, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "indices"], 2)?;
    a.int_input(1)?;
    let (x, idx) = (a.req(0), a.req(1));
    let (Some(d), Some(id)) = (x.shape.dims(), idx.shape.dims()) else {
        return Ok(vec![Fact::new(x.dtype, Shape::unknown())]);
    };
    let b = batch_dims;
    if d.is_empty() || id.is_empty() || b >= d.len().min(id.len()) {
        return Err(format!(
            "data {} and indices {} need rank 1 or more, and batch_dims {b} must be below both ranks",
            x.shape, idx.shape
        ));
    }
    for i in 0..b {
        if unify(&d[i], &id[i]).is_none() {
            return Err(format!("batch dimension {i} differs: data {} vs indices {}", x.shape, idx.shape));
        }
    }
    let Dim::Fixed(k) = id[id.len() - 1] else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    if k < 1 || k > d.len() - b {
        return Err(format!(
            "the last dimension of indices {} ({k}) must be between 1 and the rank of data {} less batch_dims {b}",
            idx.shape, x.shape
        ));
    }
    let mut out = id[..id.len() - 1].to_vec();
    out.extend_from_slice(&d[b + k..]);
    Ok(vec![Fact::new(x.dtype, Shape::new(out))])
}

pub(super) fn scatter_nd(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "indices", "updates"], 3)?;
    a.int_input(1)?;
    a.same_dtype(&[0, 2])?;
    let (x, idx, upd) = (a.req(0), a.req(1), a.req(2));
    if let (Some(d), Some(id), Some(ud)) = (x.shape.dims(), idx.shape.dims(), upd.shape.dims()) {
        if let Some(Dim::Fixed(k)) = id.last() {
            if *k > d.len() {
                return Err(format!("indices {} index {k} axes, but data {} has rank {}", idx.shape, x.shape, d.len()));
            }
            let mut want = id[..id.len() - 1].to_vec();
            want.extend_from_slice(&d[*k..]);
            let fits = want.len() == ud.len() && want.iter().zip(ud).all(|(w, u)| unify(w, u).is_some());
            if !fits {
                return Err(format!(
                    "updates must be {} (indices {} without its last dim, then data {} past {k} axes), got {}",
                    Shape::new(want),
                    idx.shape,
                    x.shape,
                    upd.shape
                ));
            }
        }
    }
    Ok(vec![Fact::new(x.dtype, x.shape.clone())])
}

pub(super) fn scatter_elements(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "indices", "updates"], 3)?;
    a.int_input(1)?;
    a.same_dtype(&[0, 2])?;
    let (x, idx, upd) = (a.req(0), a.req(1), a.req(2));
    if let Some(r) = x.shape.rank() {
        norm_axis(axis, r, "axis")?;
        for f in [idx, upd] {
            if f.shape.rank().is_some_and(|q| q != r) {
                return Err(format!("indices and updates must have the rank of data {}, got {}", x.shape, f.shape));
            }
        }
    }
    if let (Some(i), Some(u)) = (idx.shape.dims(), upd.shape.dims()) {
        if i.len() != u.len() || i.iter().zip(u).any(|(p, q)| unify(p, q).is_none()) {
            return Err(format!("indices {} and updates {} must have the same shape", idx.shape, upd.shape));
        }
    }
    Ok(vec![Fact::new(x.dtype, x.shape.clone())])
}

pub(super) fn topk(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X", "K"], 2)?;
    a.int_input(1)?;
    let (x, k) = (a.req(0), a.req(1));
    let shape = match x.shape.dims() {
        None => Shape::unknown(),
        Some(d) => {
            let axis = norm_axis(axis, d.len(), "axis")?;
            let kd = match scalar_value(k) {
                Some(Val::Int(n)) if n < 0 => return Err(format!("K must not be negative, got {n}")),
                Some(Val::Int(n)) => {
                    if let Dim::Fixed(size) = d[axis] {
                        if n as usize > size {
                            return Err(format!("K = {n} exceeds axis {axis} of {} (size {size})", x.shape));
                        }
                    }
                    Dim::Fixed(n as usize)
                }
                Some(v) => v.to_dim(),
                None => Dim::Unknown,
            };
            let mut out = d.to_vec();
            out[axis] = kd;
            Shape::new(out)
        }
    };
    Ok(vec![Fact::new(x.dtype, shape.clone()), Fact::new(DType::I64, shape)])
}

pub(super) fn one_hot(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["indices", "depth", "values"], 3)?;
    let (idx, depth, vals) = (a.req(0), a.req(1), a.req(2));
    if let Some(d) = vals.shape.dims() {
        if d.len() != 1 || !d[0].admits(2) {
            return Err(format!("values must be [off_value, on_value] of shape [2], got {}", vals.shape));
        }
    }
    let Some(id) = idx.shape.dims() else { return Ok(vec![Fact::new(vals.dtype, Shape::unknown())]) };
    // The new axis is counted in the output's rank.
    let axis = norm_axis(axis, id.len() + 1, "axis")?;
    let dd = match scalar_value(depth) {
        Some(Val::Int(n)) if n < 1 => return Err(format!("depth must be positive, got {n}")),
        Some(v) => v.to_dim(),
        None => Dim::Unknown,
    };
    let mut out = id.to_vec();
    out.insert(axis, dd);
    Ok(vec![Fact::new(vals.dtype, Shape::new(out))])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{DType, Dim, Op, ScatterReduction, Shape};

    #[test]
    fn gather_shapes() {
        let emb = f32(shape![50257, 768]);
        let ids = fact(DType::I64, shape!["b", "s"]);
        assert_eq!(one(&Op::Gather { axis: 0 }, &[&emb, &ids]).shape, shape!["b", "s", 768]);
        let x = f32(shape![2, 3, 4]);
        assert_eq!(one(&Op::Gather { axis: 1 }, &[&x, &i64_scalar(-1)]).shape, shape![2, 4]);
        assert_eq!(one(&Op::Gather { axis: -1 }, &[&x, &i64s(&[0, 1])]).shape, shape![2, 3, 2]);
        let e = err(&Op::Gather { axis: 1 }, &[&x, &i64s(&[3])]);
        assert!(e.contains("index 3") && e.contains("size 3"), "{e}");
        assert!(err(&Op::Gather { axis: 0 }, &[&x, &f32(shape![2])]).contains("integer"));
        assert!(err(&Op::Gather { axis: 3 }, &[&x, &i64_scalar(0)]).contains("out of range"));
    }

    #[test]
    fn gather_on_shape_values() {
        let s = one(&Op::Shape { start: 0, end: None }, &[&f32(shape!["b", "s", 768])]);
        let b = one(&Op::Gather { axis: 0 }, &[&s, &i64_scalar(0)]);
        assert_eq!(b.shape, shape![]);
        assert_eq!(dims_value(&b), vec![Dim::Sym("b".into())]);
        let last = one(&Op::Gather { axis: 0 }, &[&s, &i64s(&[-1])]);
        assert_eq!(last.constant.as_ref().unwrap().to_i64_vec(), vec![768]);
    }

    #[test]
    fn gather_elements_and_nd() {
        let x = f32(shape![3, 4]);
        let i = fact(DType::I64, shape![3, 2]);
        assert_eq!(one(&Op::GatherElements { axis: 1 }, &[&x, &i]).shape, shape![3, 2]);
        assert!(err(&Op::GatherElements { axis: 1 }, &[&x, &fact(DType::I64, shape![3])]).contains("rank"));
        let data = f32(shape![2, 3, 4, 5]);
        let nd = one(&Op::GatherND { batch_dims: 0 }, &[&data, &fact(DType::I64, shape![6, 2])]);
        assert_eq!(nd.shape, shape![6, 4, 5]);
        let batched = one(&Op::GatherND { batch_dims: 1 }, &[&data, &fact(DType::I64, shape![2, 7, 3])]);
        assert_eq!(batched.shape, shape![2, 7]);
        let e = err(&Op::GatherND { batch_dims: 1 }, &[&data, &fact(DType::I64, shape![2, 4])]);
        assert!(e.contains("(4)"), "{e}");
        assert!(err(&Op::GatherND { batch_dims: 1 }, &[&data, &fact(DType::I64, shape![3, 1])]).contains("batch"));
    }

    #[test]
    fn scatters_keep_the_data_shape() {
        let data = f32(shape![4, 5, 6]);
        let nd = Op::ScatterND { reduction: ScatterReduction::None };
        let out = one(&nd, &[&data, &fact(DType::I64, shape![2, 2]), &f32(shape![2, 6])]);
        assert_eq!(out.shape, data.shape);
        let e = err(&nd, &[&data, &fact(DType::I64, shape![2, 2]), &f32(shape![2, 5])]);
        assert!(e.contains("[2, 6]"), "{e}");
        let el = Op::ScatterElements { axis: 0, reduction: ScatterReduction::Add };
        let idx = fact(DType::I64, shape![1, 5, 6]);
        assert_eq!(one(&el, &[&data, &idx, &f32(shape![1, 5, 6])]).shape, data.shape);
        assert!(err(&el, &[&data, &idx, &f32(shape![1, 5, 5])]).contains("same shape"));
    }

    #[test]
    fn topk_outputs() {
        let op = Op::TopK { axis: -1, largest: true, sorted: true };
        let out = run(&op, &[&f32(shape!["b", 100]), &i64s(&[5])], 2);
        assert_eq!(out[0].shape, shape!["b", 5]);
        assert_eq!(out[1].dtype, DType::I64);
        let unknown = run(&op, &[&f32(shape!["b", 100]), &fact(DType::I64, shape![1])], 2);
        assert_eq!(unknown[1].shape, shape!["b", "?"]);
        assert!(err(&op, &[&f32(shape![2, 3]), &i64s(&[4])]).contains("K = 4"));
    }

    #[test]
    fn one_hot_inserts_the_depth_axis() {
        let idx = fact(DType::I64, shape!["b", 5]);
        let values = f32s(&[0.0, 1.0]);
        let last = one(&Op::OneHot { axis: -1 }, &[&idx, &i64_scalar(10), &values]);
        assert_eq!((last.dtype, last.shape), (DType::F32, shape!["b", 5, 10]));
        let first = one(&Op::OneHot { axis: 0 }, &[&idx, &f32_scalar(3.0), &values]);
        assert_eq!(first.shape, shape![3, "b", 5]);
        let open = one(&Op::OneHot { axis: 1 }, &[&idx, &fact(DType::I64, shape![]), &values]);
        assert_eq!(open.shape, shape!["b", "?", 5]);
        assert!(err(&Op::OneHot { axis: 3 }, &[&idx, &i64_scalar(3), &values]).contains("out of range"));
        assert!(err(&Op::OneHot { axis: 0 }, &[&idx, &i64_scalar(3), &f32s(&[1.0])]).contains("[2]"));
        assert_eq!(
            one(&Op::OneHot { axis: 0 }, &[&f32(Shape::unknown()), &i64_scalar(3), &values]).shape,
            Shape::unknown()
        );
    }
}
