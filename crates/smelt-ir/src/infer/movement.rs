//! Data movement: ops that rearrange, select or repeat elements. Several read a
//! shape-like input's values (Reshape's shape, Slice's bounds, Tile's repeats).

use super::dims::{
    broadcast_dims, const_ints, fact_with_values, fmt_vals, norm_axes, norm_axis, small_values, unify, values, Product,
    Val,
};
use super::{all_present, Args};
use crate::{Dim, Fact, Shape};

/// Bounds at or beyond this magnitude mean "to the end" (exporters write
/// `INT_MAX`, `INT64_MAX` or their negatives).
const OPEN_BOUND: i64 = i32::MAX as i64;

/// Checks that a shape-like input is 1-D and returns its length when fixed.
fn vector_len(f: &Fact, what: &str) -> Result<Option<usize>, String> {
    match f.shape.dims() {
        Some([d]) => Ok(d.fixed()),
        Some(_) => Err(format!("{what} must be 1-D, got shape {}", f.shape)),
        None => Ok(None),
    }
}

/// When the output is a short vector or scalar and the input's values are known,
/// carries the rearranged values along.
fn with_moved_values(dtype: crate::DType, shape: &Shape, vals: Option<Vec<Val>>) -> Fact {
    if let (Some(vals), Some(fixed)) = (vals, shape.as_fixed()) {
        if fixed.len() <= 1 && fixed.iter().product::<usize>() == vals.len() && dtype.is_int() {
            return fact_with_values(dtype, fixed.len(), vals);
        }
    }
    Fact::new(dtype, shape.clone())
}

pub(super) fn reshape(allowzero: bool, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "shape"], 2)?;
    a.int_input(1)?;
    let (x, s) = (a.req(0), a.req(1));
    let len = vector_len(s, "shape")?;
    let shape = match values(s) {
        Some(target) => reshape_dims(&x.shape, &target, allowzero)?,
        None => len.map_or_else(Shape::unknown, Shape::of_rank),
    };
    Ok(vec![with_moved_values(x.dtype, &shape, small_values(x))])
}

fn reshape_dims(input: &Shape, target: &[Val], allowzero: bool) -> Result<Shape, String> {
    let in_dims = input.dims();
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, v) in target.iter().enumerate() {
        let d = match v {
            Val::Int(-1) => {
                if infer_at.is_some() {
                    return Err(format!("shape {} has more than one -1", fmt_vals(target)));
                }
                infer_at = Some(i);
                Dim::Unknown
            }
            Val::Int(0) if !allowzero => match in_dims {
                Some(d) => d.get(i).cloned().ok_or_else(|| {
                    format!(
                        "shape {} copies dimension {i} (a 0), but the input {input} has rank {}",
                        fmt_vals(target),
                        d.len()
                    )
                })?,
                None => Dim::Unknown,
            },
            Val::Int(n) if *n < 0 => {
                return Err(format!("shape {} has {n} at position {i}; only -1 may be negative", fmt_vals(target)))
            }
            v => v.to_dim(),
        };
        out.push(d);
    }
    if allowzero && infer_at.is_some() && target.contains(&Val::Int(0)) {
        return Err(format!("with allowzero, shape {} cannot hold both 0 and -1", fmt_vals(target)));
    }
    let Some(in_dims) = in_dims else { return Ok(Shape::new(out)) };
    let total = Product::of(in_dims);
    match infer_at {
        Some(i) => {
            let known = Product::of(&[&out[..i], &out[i + 1..]].concat());
            match total.div(&known) {
                Some(q) => out[i] = q.to_dim(),
                None => {
                    if let (Some(t), Some(k)) = (total.fixed(), known.fixed()) {
                        return Err(format!(
                            "cannot reshape {input} ({t} elements) to {}: the other dims hold {k}, which does not divide {t}",
                            fmt_vals(target)
                        ));
                    }
                }
            }
        }
        None => {
            if let (Some(t), Some(o)) = (total.fixed(), Product::of(&out).fixed()) {
                if t != o {
                    return Err(format!(
                        "cannot reshape {input} ({t} elements) to {} ({o} elements)",
                        fmt_vals(target)
                    ));
                }
            }
        }
    }
    Ok(Shape::new(out))
}

pub(super) fn flatten(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input"], 1)?;
    let x = a.req(0);
    let shape = match x.shape.dims() {
        Some(d) => {
            // Flatten's axis may equal the rank (everything in the first dim).
            let r = d.len() as i64;
            if axis < -r || axis > r {
                return Err(format!("axis {axis} is out of range for rank {r} (valid: {} to {r})", -r));
            }
            let k = if axis < 0 { axis + r } else { axis } as usize;
            Shape::new(vec![Product::of(&d[..k]).to_dim(), Product::of(&d[k..]).to_dim()])
        }
        None if axis == 0 => Shape::new(vec![Dim::Fixed(1), Dim::Unknown]),
        None => Shape::of_rank(2),
    };
    Ok(vec![Fact::new(x.dtype, shape)])
}

pub(super) fn transpose(perm: Option<&[usize]>, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data"], 1)?;
    let x = a.req(0);
    let shape = match (x.shape.dims(), perm) {
        (None, None) => Shape::unknown(),
        (None, Some(p)) => {
            check_perm(p, p.len())?;
            Shape::of_rank(p.len())
        }
        (Some(d), None) => Shape::new(d.iter().rev().cloned().collect()),
        (Some(d), Some(p)) => {
            if p.len() != d.len() {
                return Err(format!(
                    "perm {p:?} has {} entries, but the input {} has rank {}",
                    p.len(),
                    x.shape,
                    d.len()
                ));
            }
            check_perm(p, d.len())?;
            Shape::new(p.iter().map(|&i| d[i].clone()).collect())
        }
    };
    Ok(vec![Fact::new(x.dtype, shape)])
}

fn check_perm(p: &[usize], rank: usize) -> Result<(), String> {
    let mut seen = vec![false; rank];
    for &i in p {
        if i >= rank || std::mem::replace(&mut seen[i], true) {
            return Err(format!("perm {p:?} is not a permutation of 0..{rank}"));
        }
    }
    Ok(())
}

pub(super) fn squeeze(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "axes"], 1)?;
    a.int_input(1)?;
    let x = a.req(0);
    let axes = match a.opt(1) {
        None => None,
        Some(f) => {
            let len = vector_len(f, "axes")?;
            match const_ints(f) {
                Some(v) if v.is_empty() => None,
                Some(v) => Some(v),
                None => {
                    // Known count, unknown axes: only the rank is known.
                    let shape = match (x.shape.rank(), len) {
                        (Some(r), Some(k)) if k > 0 && k <= r => Shape::of_rank(r - k),
                        _ => Shape::unknown(),
                    };
                    return Ok(vec![Fact::new(x.dtype, shape)]);
                }
            }
        }
    };
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    let shape = match axes {
        // Without axes every size-1 dim goes, which is unknowable for symbols.
        None if d.iter().all(|d| d.fixed().is_some()) => {
            Shape::new(d.iter().filter(|d| **d != Dim::Fixed(1)).cloned().collect())
        }
        None => Shape::unknown(),
        Some(axes) => {
            let axes = norm_axes(&axes, d.len(), "axes")?;
            for &i in &axes {
                if let Dim::Fixed(n) = d[i] {
                    if n != 1 {
                        return Err(format!("cannot squeeze axis {i} of {}: its size is {n}, not 1", x.shape));
                    }
                }
            }
            Shape::new(d.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect())
        }
    };
    Ok(vec![with_moved_values(x.dtype, &shape, small_values(x))])
}

pub(super) fn unsqueeze(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "axes"], 2)?;
    a.int_input(1)?;
    let (x, axes_f) = (a.req(0), a.req(1));
    let len = vector_len(axes_f, "axes")?;
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    let Some(axes) = const_ints(axes_f) else {
        let shape = len.map_or_else(Shape::unknown, |k| Shape::of_rank(d.len() + k));
        return Ok(vec![Fact::new(x.dtype, shape)]);
    };
    // Axes refer to the output, whose rank is the input's plus one per axis.
    let out_rank = d.len() + axes.len();
    let axes = norm_axes(&axes, out_rank, "axes")?;
    let mut rest = d.iter();
    let out = (0..out_rank)
        .map(|i| if axes.contains(&i) { Dim::Fixed(1) } else { rest.next().cloned().unwrap_or(Dim::Unknown) })
        .collect();
    Ok(vec![with_moved_values(x.dtype, &Shape::new(out), small_values(x))])
}

pub(super) fn concat(axis: i64, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let facts = all_present(inputs, 1)?;
    let dtype = facts[0].dtype;
    let mut rank_from: Option<&Fact> = None;
    for (i, f) in facts.iter().enumerate() {
        if f.dtype != dtype {
            return Err(format!("inputs must share one dtype, but input 0 is {dtype} and input {i} is {}", f.dtype));
        }
        if let Some(r) = f.shape.rank() {
            match rank_from {
                Some(first) if first.shape.rank() != Some(r) => {
                    return Err(format!("inputs must have the same rank, got {} and {}", first.shape, f.shape))
                }
                None => rank_from = Some(f),
                _ => {}
            }
        }
    }
    let Some(first) = rank_from else { return Ok(vec![Fact::new(dtype, Shape::unknown())]) };
    let rank = first.shape.rank().unwrap_or_default();
    let axis = norm_axis(axis, rank, "axis")?;
    let known: Vec<&Fact> = facts.iter().copied().filter(|f| f.shape.rank().is_some()).collect();
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        if i == axis {
            out.push(if known.len() == facts.len() {
                sum_dims(known.iter().map(|f| &f.shape.dims().unwrap()[i]))
            } else {
                Dim::Unknown
            });
            continue;
        }
        let mut d = Dim::Unknown;
        for f in &known {
            let di = &f.shape.dims().unwrap_or_default()[i];
            d = unify(&d, di).ok_or_else(|| {
                format!(
                    "inputs {} and {} differ at dimension {i} ({} vs {di}), which is not the concat axis",
                    first.shape,
                    f.shape,
                    first.shape.dims().unwrap_or_default()[i]
                )
            })?;
        }
        out.push(d);
    }
    let shape = Shape::new(out);
    // Concatenated shape pieces keep their values: `[batch] ++ [-1]`. A piece of
    // known length but unknown values contributes unknown elements, so the others
    // still count.
    if rank == 1 && dtype.is_int() {
        let piece = |f: &Fact| {
            small_values(f).or_else(|| match f.shape.dims() {
                Some([Dim::Fixed(n)]) if *n <= super::dims::MAX_TRACKED_VALUES => Some(vec![Val::Unknown; *n]),
                _ => None,
            })
        };
        let vals: Option<Vec<Vec<Val>>> = facts.iter().map(|f| piece(f)).collect();
        if let Some(vals) = vals.filter(|v| v.iter().flatten().any(|x| *x != Val::Unknown)) {
            return Ok(vec![with_moved_values(dtype, &shape, Some(vals.concat()))]);
        }
    }
    Ok(vec![Fact::new(dtype, shape)])
}

/// The sum of dims along a concat axis, kept symbolic when only one is not fixed
/// and the others are all zero.
fn sum_dims<'a>(dims: impl Iterator<Item = &'a Dim>) -> Dim {
    let mut fixed = 0usize;
    let mut open: Vec<&Dim> = Vec::new();
    for d in dims {
        match d {
            Dim::Fixed(n) => fixed += n,
            other => open.push(other),
        }
    }
    match open.as_slice() {
        [] => Dim::Fixed(fixed),
        [one] if fixed == 0 => (*one).clone(),
        _ => Dim::Unknown,
    }
}

pub(super) fn split(
    axis: i64,
    num_outputs: Option<usize>,
    inputs: &[Option<&Fact>],
    n_outputs: usize,
) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input", "split"], 1)?;
    a.int_input(1)?;
    let x = a.req(0);
    if n_outputs == 0 {
        return Err("Split needs at least one output".into());
    }
    if let Some(k) = num_outputs {
        if k != n_outputs {
            return Err(format!("num_outputs is {k}, but the node has {n_outputs} outputs"));
        }
    }
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown()); n_outputs]) };
    let axis = norm_axis(axis, d.len(), "axis")?;
    let size = &d[axis];
    let sizes: Vec<Dim> = match a.opt(1) {
        Some(s) => match const_ints(s) {
            Some(parts) => {
                if parts.len() != n_outputs {
                    return Err(format!(
                        "split {parts:?} has {} parts, but the node has {n_outputs} outputs",
                        parts.len()
                    ));
                }
                if let Some(p) = parts.iter().find(|p| **p < 0) {
                    return Err(format!("split {parts:?} has a negative part {p}"));
                }
                let sum: i128 = parts.iter().map(|&p| p as i128).sum();
                if let Dim::Fixed(n) = size {
                    if sum != *n as i128 {
                        return Err(format!(
                            "split {parts:?} sums to {sum}, but axis {axis} of {} has size {n}",
                            x.shape
                        ));
                    }
                }
                parts.iter().map(|&p| Dim::Fixed(p as usize)).collect()
            }
            None => vec![Dim::Unknown; n_outputs],
        },
        None => match size {
            Dim::Fixed(n) if num_outputs.is_some() => {
                // Equal chunks of ceil(n / k), the last one smaller.
                let chunk = n.div_ceil(n_outputs);
                let before_last = chunk.saturating_mul(n_outputs - 1);
                if before_last > *n {
                    return Err(format!(
                        "axis {axis} of {} (size {n}) cannot be split into {n_outputs} chunks",
                        x.shape
                    ));
                }
                let mut v = vec![Dim::Fixed(chunk); n_outputs - 1];
                v.push(Dim::Fixed(n - before_last));
                v
            }
            Dim::Fixed(n) => {
                if n % n_outputs != 0 {
                    return Err(format!(
                        "axis {axis} of {} (size {n}) does not split evenly into {n_outputs} outputs",
                        x.shape
                    ));
                }
                vec![Dim::Fixed(n / n_outputs); n_outputs]
            }
            other if n_outputs == 1 => vec![other.clone()],
            _ => vec![Dim::Unknown; n_outputs],
        },
    };
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut dims = d.to_vec();
            dims[axis] = s;
            Fact::new(x.dtype, Shape::new(dims))
        })
        .collect())
}

pub(super) fn slice(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "starts", "ends", "axes", "steps"], 3)?;
    for i in 1..5 {
        a.int_input(i)?;
    }
    let x = a.req(0);
    let mut lens = Vec::new();
    for i in 1..5 {
        if let Some(f) = a.opt(i) {
            if let Some(n) = vector_len(f, a.name(i))? {
                lens.push((i, n));
            }
        }
    }
    if let Some(&(i, n)) = lens.iter().find(|(_, n)| *n != lens[0].1) {
        return Err(format!(
            "starts, ends, axes and steps must have the same length, but {} has {} and {} has {n}",
            a.name(lens[0].0),
            lens[0].1,
            a.name(i)
        ));
    }
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    let starts = values(a.req(1));
    let ends = values(a.req(2));
    let count = starts.as_ref().or(ends.as_ref()).map(Vec::len).or(lens.first().map(|l| l.1));
    let axes: Option<Vec<usize>> = match a.opt(3) {
        None => count.map(|n| (0..n).collect()),
        Some(f) => match const_ints(f) {
            Some(v) => Some(norm_axes(&v, d.len(), "axes")?),
            None => None,
        },
    };
    let steps: Option<Vec<i64>> = match a.opt(4) {
        None => count.map(|n| vec![1; n]),
        Some(f) => const_ints(f),
    };
    if let Some(steps) = &steps {
        if steps.contains(&0) {
            return Err(format!("steps {steps:?} must not contain 0"));
        }
    }
    let Some(axes) = axes else {
        // Any axis may be sliced.
        return Ok(vec![Fact::new(x.dtype, Shape::of_rank(d.len()))]);
    };
    let mut out = d.to_vec();
    for (j, &axis) in axes.iter().enumerate() {
        let start = starts.as_ref().map_or(Val::Unknown, |v| v.get(j).cloned().unwrap_or(Val::Unknown));
        let end = ends.as_ref().map_or(Val::Unknown, |v| v.get(j).cloned().unwrap_or(Val::Unknown));
        out[axis] = match steps.as_ref().and_then(|s| s.get(j)) {
            Some(&step) => slice_len(&d[axis], &start, &end, step),
            None => Dim::Unknown,
        };
    }
    let shape = Shape::new(out);
    // Slicing a shape vector (`Shape(x)[1:]`) keeps the selected values.
    if d.len() == 1 {
        if let (Some(vals), Some(s), Some(e), Some(st)) = (
            small_values(x),
            starts.as_ref().and_then(|v| v.first()?.int()),
            ends.as_ref().and_then(|v| v.first()?.int()),
            steps.as_ref().and_then(|v| v.first().copied()),
        ) {
            let picked: Vec<Val> = slice_indices(vals.len(), s, e, st).map(|i| vals[i].clone()).collect();
            return Ok(vec![with_moved_values(x.dtype, &shape, Some(picked))]);
        }
    }
    Ok(vec![Fact::new(x.dtype, shape)])
}

/// The start and end of a slice over `n` elements after ONNX's clamping.
fn clamp_bounds(n: i64, start: i64, end: i64, step: i64) -> (i64, i64) {
    let wrap = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (b, e) = (wrap(start), wrap(end));
    if step > 0 {
        (b.clamp(0, n), e.clamp(0, n))
    } else {
        (b.clamp(0, (n - 1).max(0)), e.clamp(-1, (n - 1).max(-1)))
    }
}

fn slice_indices(n: usize, start: i64, end: i64, step: i64) -> impl Iterator<Item = usize> {
    let (b, e) = clamp_bounds(n as i64, start, end, step);
    let count = slice_count(b, e, step);
    (0..count).map(move |k| (b + k as i64 * step) as usize)
}

fn slice_count(b: i64, e: i64, step: i64) -> usize {
    // i128: a step of i64::MIN has no i64 magnitude.
    let (b, e, step) = (b as i128, e as i128, step as i128);
    let span = if step > 0 { e - b } else { b - e };
    if span <= 0 {
        0
    } else {
        ((span + step.abs() - 1) / step.abs()) as usize
    }
}

/// A slice bound, relative to the start or end of an axis of unknown size.
#[derive(Clone, Copy, PartialEq)]
enum Bound {
    FromStart(i64),
    FromEnd(i64),
    Begin,
    End,
}

fn bound(v: i64) -> Bound {
    match v {
        v if v >= OPEN_BOUND => Bound::End,
        v if v <= -OPEN_BOUND => Bound::Begin,
        v if v < 0 => Bound::FromEnd(-v),
        v => Bound::FromStart(v),
    }
}

/// Length of a slice along one axis.
fn slice_len(d: &Dim, start: &Val, end: &Val, step: i64) -> Dim {
    match (d, start, end) {
        (Dim::Fixed(n), Val::Int(s), Val::Int(e)) => {
            if *n == 0 {
                return Dim::Fixed(0);
            }
            let (b, e) = clamp_bounds(*n as i64, *s, *e, step);
            Dim::Fixed(slice_count(b, e, step))
        }
        // `x[:seq]`: the symbolic end is assumed within the axis.
        (_, Val::Int(0), Val::Sym(e)) if step == 1 => Dim::Sym(e.clone()),
        (Dim::Fixed(_), _, _) => Dim::Unknown,
        (open, Val::Int(s), Val::Int(e)) => {
            let div = |span: i64| Dim::Fixed(slice_count(0, span, step.abs()));
            match (step > 0, bound(*s), bound(*e)) {
                (true, Bound::FromStart(b), Bound::FromStart(e)) => div(e - b),
                (true, Bound::FromEnd(b), Bound::FromEnd(e)) => div(b - e),
                (true, Bound::FromEnd(b), Bound::End) => div(b),
                (true, Bound::FromStart(0) | Bound::Begin, Bound::End) if step == 1 => open.clone(),
                (false, Bound::FromStart(b), Bound::FromStart(e)) => div(b - e),
                (false, Bound::FromEnd(b), Bound::FromEnd(e)) => div(e - b),
                (false, Bound::FromEnd(1) | Bound::End, Bound::Begin) if step == -1 => open.clone(),
                _ => Dim::Unknown,
            }
        }
        _ => Dim::Unknown,
    }
}

pub(super) fn expand(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input", "shape"], 2)?;
    a.int_input(1)?;
    let (x, s) = (a.req(0), a.req(1));
    let len = vector_len(s, "shape")?;
    let target: Vec<Dim> = match values(s) {
        Some(v) => {
            if let Some(n) = v.iter().find_map(|v| v.int().filter(|i| *i < 0)) {
                return Err(format!("shape {} has the negative size {n}", fmt_vals(&v)));
            }
            v.iter().map(Val::to_dim).collect()
        }
        None => match len {
            Some(k) => vec![Dim::Unknown; k],
            None => return Ok(vec![Fact::new(x.dtype, Shape::unknown())]),
        },
    };
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    let out = broadcast_dims(d, &target).ok_or_else(|| {
        format!("cannot expand {} to {}: the shapes do not broadcast", x.shape, Shape::new(target.clone()))
    })?;
    Ok(vec![Fact::new(x.dtype, Shape::new(out))])
}

pub(super) fn tile(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input", "repeats"], 2)?;
    a.int_input(1)?;
    let (x, r) = (a.req(0), a.req(1));
    let len = vector_len(r, "repeats")?;
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    if let Some(k) = len {
        if k != d.len() {
            return Err(format!("repeats has {k} values, but the input {} has rank {}", x.shape, d.len()));
        }
    }
    let shape = match values(r) {
        Some(reps) => {
            if reps.len() != d.len() {
                return Err(format!("repeats {} must have one value per axis of {}", fmt_vals(&reps), x.shape));
            }
            let out = d
                .iter()
                .zip(&reps)
                .map(|(d, r)| match (d, r) {
                    (_, Val::Int(n)) if *n < 0 => {
                        Err(format!("repeats {} has the negative value {n}", fmt_vals(&reps)))
                    }
                    (Dim::Fixed(n), Val::Int(k)) => n
                        .checked_mul(*k as usize)
                        .map(Dim::Fixed)
                        .ok_or_else(|| format!("tiling {} by {} overflows", x.shape, fmt_vals(&reps))),
                    (d, Val::Int(1)) => Ok(d.clone()),
                    (_, Val::Int(0)) | (Dim::Fixed(0), _) => Ok(Dim::Fixed(0)),
                    (Dim::Fixed(1), r) => Ok(r.to_dim()),
                    _ => Ok(Dim::Unknown),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Shape::new(out)
        }
        None => Shape::of_rank(d.len()),
    };
    Ok(vec![Fact::new(x.dtype, shape)])
}

pub(super) fn pad(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["data", "pads", "constant_value", "axes"], 2)?;
    a.int_input(1)?;
    a.int_input(3)?;
    let x = a.req(0);
    if let Some(c) = a.opt(2) {
        if c.dtype != x.dtype {
            return Err(format!("constant_value is {}, but data is {}", c.dtype, x.dtype));
        }
    }
    let Some(d) = x.shape.dims() else { return Ok(vec![Fact::new(x.dtype, Shape::unknown())]) };
    let axes = match a.opt(3) {
        None => Some((0..d.len()).collect::<Vec<_>>()),
        Some(f) => const_ints(f).map(|v| norm_axes(&v, d.len(), "axes")).transpose()?,
    };
    let pads = const_ints(a.req(1));
    let (Some(axes), Some(pads)) = (axes, pads) else {
        return Ok(vec![Fact::new(x.dtype, Shape::of_rank(d.len()))]);
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("pads {pads:?} must hold a begin and an end for each of the {} padded axes", axes.len()));
    }
    let mut out = d.to_vec();
    for (j, &axis) in axes.iter().enumerate() {
        let (pb, pe) = (pads[j], pads[j + axes.len()]);
        out[axis] = match &d[axis] {
            Dim::Fixed(n) => {
                let size = (*n as i128) + pb as i128 + pe as i128;
                if size < 0 {
                    return Err(format!("pads {pb} and {pe} shrink axis {axis} of {} below zero", x.shape));
                }
                usize::try_from(size)
                    .map(Dim::Fixed)
                    .map_err(|_| format!("padding axis {axis} of {} overflows", x.shape))?
            }
            other if pb.checked_add(pe) == Some(0) => other.clone(),
            _ => Dim::Unknown,
        };
    }
    Ok(vec![Fact::new(x.dtype, Shape::new(out))])
}

/// DepthToSpace: `[N, C, H, W]` → `[N, C / b², H·b, W·b]`.
pub(super) fn depth_to_space(blocksize: usize, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    block_rearrange(blocksize, true, inputs)
}

/// SpaceToDepth: `[N, C, H, W]` → `[N, C·b², H / b, W / b]`.
pub(super) fn space_to_depth(blocksize: usize, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    block_rearrange(blocksize, false, inputs)
}

fn block_rearrange(b: usize, to_space: bool, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["input"], 1)?;
    let x = a.req(0);
    let Some(b2) = b.checked_mul(b).filter(|_| b > 0) else {
        return Err(format!("blocksize {b} must be positive and its square must fit"));
    };
    let Some(d) = super::dims_of_rank(&x.shape, 4, "input")? else {
        return Ok(vec![Fact::new(x.dtype, Shape::of_rank(4))]);
    };
    let mul = |d: &Dim, k: usize| match d {
        Dim::Fixed(n) => n.checked_mul(k).map_or(Dim::Unknown, Dim::Fixed),
        other if k == 1 => other.clone(),
        _ => Dim::Unknown,
    };
    let div = |d: &Dim, k: usize, what: &str| match d {
        Dim::Fixed(n) if n % k != 0 => {
            Err(format!("{what} {n} of {} is not divisible by {k} (blocksize {b})", x.shape))
        }
        Dim::Fixed(n) => Ok(Dim::Fixed(n / k)),
        other if k == 1 => Ok(other.clone()),
        _ => Ok(Dim::Unknown),
    };
    let out = if to_space {
        vec![d[0].clone(), div(&d[1], b2, "channel count")?, mul(&d[2], b), mul(&d[3], b)]
    } else {
        vec![d[0].clone(), mul(&d[1], b2), div(&d[2], b, "height")?, div(&d[3], b, "width")?]
    };
    Ok(vec![Fact::new(x.dtype, Shape::new(out))])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{DType, Dim, Op, PadMode, Shape};

    fn reshape() -> Op {
        Op::Reshape { allowzero: false }
    }

    #[test]
    fn reshape_resolves_minus_one_with_symbols() {
        let x = f32(shape!["batch", 2048, 1, 1]);
        let s = crate::infer::dims::fact_with_values(
            DType::I64,
            1,
            vec![super::Val::Sym("batch".into()), super::Val::Int(-1)],
        );
        assert_eq!(one(&reshape(), &[&x, &s]).shape, shape!["batch", 2048]);
        let heads = one(&reshape(), &[&f32(shape!["b", "s", 768]), &i64s(&[0, 0, 12, -1])]);
        assert_eq!(heads.shape, shape!["b", "s", 12, 64]);
        let merged = one(&reshape(), &[&f32(shape!["b", "s", 768]), &i64s(&[-1, 768])]);
        assert_eq!(merged.shape, shape!["?", 768]);
        let fixed = one(&reshape(), &[&f32(shape![2, 3, 4]), &i64s(&[4, -1])]);
        assert_eq!(fixed.shape, shape![4, 6]);
    }

    #[test]
    fn reshape_zero_and_allowzero() {
        let x = f32(shape![0, 3]);
        assert_eq!(one(&Op::Reshape { allowzero: true }, &[&x, &i64s(&[3, 0])]).shape, shape![3, 0]);
        assert_eq!(one(&reshape(), &[&f32(shape![2, 3]), &i64s(&[0, 3])]).shape, shape![2, 3]);
        let e = err(&Op::Reshape { allowzero: true }, &[&x, &i64s(&[0, -1])]);
        assert!(e.contains("both 0 and -1"), "{e}");
    }

    #[test]
    fn reshape_errors() {
        let e = err(&reshape(), &[&f32(shape![2, 3]), &i64s(&[4, -1])]);
        assert!(e.contains("6 elements") && e.contains("[4, -1]"), "{e}");
        let e = err(&reshape(), &[&f32(shape![2, 3]), &i64s(&[5])]);
        assert!(e.contains("6 elements") && e.contains("5 elements"), "{e}");
        assert!(err(&reshape(), &[&f32(shape![6]), &i64s(&[-1, -1])]).contains("more than one -1"));
        assert!(err(&reshape(), &[&f32(shape![6]), &i64s(&[-2, 3])]).contains("-2"));
        let float_shape = f32s(&[2.0, 3.0]);
        assert!(err(&reshape(), &[&f32(shape![6]), &float_shape]).contains("integer"));
    }

    #[test]
    fn reshape_with_unknown_values_keeps_the_rank() {
        let s = fact(DType::I64, shape![3]);
        assert_eq!(one(&reshape(), &[&f32(shape![6]), &s]).shape, Shape::of_rank(3));
    }

    #[test]
    fn flatten_is_always_2d() {
        let f = |axis, s: Shape| one(&Op::Flatten { axis }, &[&f32(s)]).shape;
        assert_eq!(f(1, shape!["N", 2048, 1, 1]), shape!["N", 2048]);
        assert_eq!(f(0, shape![2, 3]), shape![1, 6]);
        assert_eq!(f(2, shape![2, 3]), shape![6, 1]);
        assert_eq!(f(-1, shape![2, 3, 4]), shape![6, 4]);
        assert_eq!(f(1, Shape::unknown()), Shape::of_rank(2));
        assert!(err(&Op::Flatten { axis: 3 }, &[&f32(shape![2, 3])]).contains("out of range"));
    }

    #[test]
    fn transpose_perms() {
        let x = f32(shape!["b", "s", 12, 64]);
        let t = one(&Op::Transpose { perm: Some(vec![0, 2, 1, 3]) }, &[&x]);
        assert_eq!(t.shape, shape!["b", 12, "s", 64]);
        let kt = one(&Op::Transpose { perm: Some(vec![0, 2, 3, 1]) }, &[&x]);
        assert_eq!(kt.shape, shape!["b", 12, 64, "s"]);
        assert_eq!(one(&Op::Transpose { perm: None }, &[&f32(shape![2, 3, 4])]).shape, shape![4, 3, 2]);
        assert!(err(&Op::Transpose { perm: Some(vec![0, 0, 1, 2]) }, &[&x]).contains("permutation"));
        assert!(err(&Op::Transpose { perm: Some(vec![1, 0]) }, &[&x]).contains("rank 4"));
    }

    #[test]
    fn squeeze_and_unsqueeze() {
        let x = f32(shape!["b", 1, 3, 1]);
        assert_eq!(one(&Op::Squeeze, &[&x, &i64s(&[1, -1])]).shape, shape!["b", 3]);
        assert_eq!(one(&Op::Squeeze, &[&f32(shape![1, 3, 1])]).shape, shape![3]);
        assert_eq!(one(&Op::Squeeze, &[&x]).shape, Shape::unknown());
        let e = err(&Op::Squeeze, &[&x, &i64s(&[2])]);
        assert!(e.contains("axis 2") && e.contains("size is 3"), "{e}");
        let u = one(&Op::Unsqueeze, &[&f32(shape!["b", "s"]), &i64s(&[1, 2])]);
        assert_eq!(u.shape, shape!["b", 1, 1, "s"]);
        let neg = one(&Op::Unsqueeze, &[&f32(shape![3, 4]), &i64s(&[-1])]);
        assert_eq!(neg.shape, shape![3, 4, 1]);
        let front = one(&Op::Unsqueeze, &[&f32(shape![3]), &i64s(&[0, 3, 2])]);
        assert_eq!(front.shape, shape![1, 3, 1, 1]);
        assert!(err(&Op::Unsqueeze, &[&f32(shape![3]), &i64s(&[2])]).contains("out of range"));
        assert!(err(&Op::Unsqueeze, &[&f32(shape![3]), &i64s(&[0, 0])]).contains("twice"));
        let unknown = one(&Op::Unsqueeze, &[&f32(shape![3]), &fact(DType::I64, shape![2])]);
        assert_eq!(unknown.shape, Shape::of_rank(3));
    }

    #[test]
    fn concat_sums_the_axis() {
        let c = Op::Concat { axis: 1 };
        let out = one(&c, &[&f32(shape!["b", 3, 8]), &f32(shape!["b", 5, 8])]);
        assert_eq!(out.shape, shape!["b", 8, 8]);
        let kv = one(&Op::Concat { axis: -2 }, &[&f32(shape!["b", 12, "past", 64]), &f32(shape!["b", 12, "s", 64])]);
        assert_eq!(kv.shape, shape!["b", 12, "?", 64]);
        let e = err(&c, &[&f32(shape![2, 3]), &f32(shape![3, 3])]);
        assert!(e.contains("dimension 0") && e.contains("2 vs 3"), "{e}");
        assert!(err(&c, &[&f32(shape![2, 3]), &f32(shape![2, 3, 1])]).contains("same rank"));
        assert!(err(&Op::Concat { axis: 2 }, &[&f32(shape![2, 3])]).contains("out of range"));
    }

    #[test]
    fn concat_keeps_known_pieces_of_a_shape() {
        let batch = one(&Op::Shape { start: 0, end: Some(1) }, &[&f32(shape!["b", 3])]);
        let opaque = fact(DType::I64, shape![1]);
        let s = one(&Op::Concat { axis: 0 }, &[&batch, &opaque, &i64s(&[64])]);
        assert_eq!(dims_value(&s), vec![Dim::Sym("b".into()), Dim::Unknown, Dim::Fixed(64)]);
        assert_eq!(one(&reshape(), &[&f32(shape!["b", 6, 64]), &s]).shape, shape!["b", "?", 64]);
        let none = one(&Op::Concat { axis: 0 }, &[&opaque, &opaque]);
        assert!(none.dims_value.is_none());
    }

    #[test]
    fn split_variants() {
        let x = f32(shape!["b", 10, 6]);
        let by_input = run(&Op::Split { axis: 1, num_outputs: None }, &[&x, &i64s(&[3, 7])], 2);
        assert_eq!(by_input[0].shape, shape!["b", 3, 6]);
        assert_eq!(by_input[1].shape, shape!["b", 7, 6]);
        let uneven = run(&Op::Split { axis: 1, num_outputs: Some(3) }, &[&x], 3);
        assert_eq!(
            uneven.iter().map(|f| f.shape.clone()).collect::<Vec<_>>(),
            vec![shape!["b", 4, 6], shape!["b", 4, 6], shape!["b", 2, 6]]
        );
        let equal = run(&Op::Split { axis: -1, num_outputs: None }, &[&x], 3);
        assert_eq!(equal[2].shape, shape!["b", 10, 2]);
        let sym = run(&Op::Split { axis: 0, num_outputs: None }, &[&x], 2);
        assert_eq!(sym[0].shape, shape!["?", 10, 6]);
        let inputs = [Some(&x)];
        let e = crate::infer::infer(&Op::Split { axis: 1, num_outputs: None }, &inputs, 3).unwrap_err();
        assert!(e.contains("size 10") && e.contains("3 outputs"), "{e}");
        let e = crate::infer::infer(&Op::Split { axis: 1, num_outputs: None }, &[Some(&x), Some(&i64s(&[3, 6]))], 2)
            .unwrap_err();
        assert!(e.contains("sums to 9"), "{e}");
    }

    #[test]
    fn slice_clamps_and_steps() {
        let x = f32(shape![10, 20, 30]);
        let s = |starts: &[i64], ends: &[i64], axes: &[i64], steps: &[i64]| {
            one(&Op::Slice, &[&x, &i64s(starts), &i64s(ends), &i64s(axes), &i64s(steps)]).shape
        };
        assert_eq!(s(&[2], &[8], &[0], &[1]), shape![6, 20, 30]);
        assert_eq!(s(&[-3], &[i64::MAX], &[1], &[1]), shape![10, 3, 30]);
        assert_eq!(s(&[0], &[100], &[-1], &[7]), shape![10, 20, 5]);
        assert_eq!(s(&[-1], &[i64::MIN], &[0], &[-1]), shape![10, 20, 30]);
        assert_eq!(s(&[8], &[2], &[0], &[-2]), shape![3, 20, 30]);
        assert_eq!(s(&[5], &[2], &[0], &[1]), shape![0, 20, 30]);
        assert_eq!(s(&[-100], &[-50], &[0], &[1]), shape![0, 20, 30]);
        let no_axes = one(&Op::Slice, &[&x, &i64s(&[1, 2]), &i64s(&[3, 4])]);
        assert_eq!(no_axes.shape, shape![2, 2, 30]);
        assert!(err(&Op::Slice, &[&x, &i64s(&[0]), &i64s(&[1]), &i64s(&[0]), &i64s(&[0])]).contains("steps"));
        assert!(err(&Op::Slice, &[&x, &i64s(&[0]), &i64s(&[1]), &i64s(&[3])]).contains("out of range"));
        assert!(err(&Op::Slice, &[&x, &i64s(&[0, 1]), &i64s(&[1])]).contains("same length"));
    }

    #[test]
    fn slice_on_symbolic_dims() {
        let x = f32(shape!["b", "seq", 768]);
        let last = one(&Op::Slice, &[&x, &i64s(&[-1]), &i64s(&[i64::MAX]), &i64s(&[1])]);
        assert_eq!(last.shape, shape!["b", 1, 768]);
        let all = one(&Op::Slice, &[&x, &i64s(&[0]), &i64s(&[i64::MAX]), &i64s(&[1])]);
        assert_eq!(all.shape, x.shape);
        let tail = one(&Op::Slice, &[&x, &i64s(&[1]), &i64s(&[i64::MAX]), &i64s(&[1])]);
        assert_eq!(tail.shape, shape!["b", "?", 768]);
        // GPT-2's causal mask: bias[:, :, :seq, :seq] from a fixed 1024×1024 buffer.
        let bias = f32(shape![1, 1, 1024, 1024]);
        let seq = one(&Op::Shape { start: 1, end: Some(2) }, &[&x]);
        let zero = i64s(&[0]);
        let rows = one(&Op::Slice, &[&bias, &zero, &seq, &i64s(&[2])]);
        assert_eq!(rows.shape, shape![1, 1, "seq", 1024]);
        let unknown = one(&Op::Slice, &[&x, &fact(DType::I64, shape![1]), &i64s(&[5]), &i64s(&[2])]);
        assert_eq!(unknown.shape, shape!["b", "seq", "?"]);
    }

    #[test]
    fn slice_of_a_shape_vector_keeps_values() {
        let s = one(&Op::Shape { start: 0, end: None }, &[&f32(shape!["b", "s", 12, 64])]);
        let tail = one(&Op::Slice, &[&s, &i64s(&[-2]), &i64s(&[i64::MAX])]);
        assert_eq!(tail.shape, shape![2]);
        assert_eq!(tail.constant.as_ref().unwrap().to_i64_vec(), vec![12, 64]);
        let head = one(&Op::Slice, &[&s, &i64s(&[0]), &i64s(&[2])]);
        assert_eq!(dims_value(&head), vec![Dim::Sym("b".into()), Dim::Sym("s".into())]);
    }

    #[test]
    fn expand_broadcasts_both_ways() {
        let mask = f32(shape![1, 1, "seq", "seq"]);
        let target = crate::infer::dims::fact_with_values(
            DType::I64,
            1,
            vec![super::Val::Sym("batch".into()), super::Val::Int(1), super::Val::Int(1), super::Val::Int(1)],
        );
        assert_eq!(one(&Op::Expand, &[&mask, &target]).shape, shape!["batch", 1, "seq", "seq"]);
        assert_eq!(one(&Op::Expand, &[&f32(shape![3, 1]), &i64s(&[2, 1, 6])]).shape, shape![2, 3, 6]);
        let e = err(&Op::Expand, &[&f32(shape![3, 2]), &i64s(&[4])]);
        assert!(e.contains("[3, 2]") && e.contains("[4]"), "{e}");
        let open = one(&Op::Expand, &[&f32(shape![3, 1]), &fact(DType::I64, shape![2])]);
        assert_eq!(open.shape, shape![3, "?"]);
    }

    #[test]
    fn tile_and_pad() {
        assert_eq!(one(&Op::Tile, &[&f32(shape![2, "s"]), &i64s(&[3, 1])]).shape, shape![6, "s"]);
        assert!(err(&Op::Tile, &[&f32(shape![2, 3]), &i64s(&[3])]).contains("rank 2"));
        let p = Op::Pad { mode: PadMode::Constant };
        assert_eq!(one(&p, &[&f32(shape![1, 3, 4, 4]), &i64s(&[0, 0, 1, 1, 0, 0, 1, 1])]).shape, shape![1, 3, 6, 6]);
        let with_axes = one(&p, &[&f32(shape!["b", 5]), &i64s(&[2, -1]), &f32_scalar(0.0), &i64s(&[-1])]);
        assert_eq!(with_axes.shape, shape!["b", 6]);
        assert!(err(&p, &[&f32(shape![2]), &i64s(&[-2, -1])]).contains("below zero"));
        assert!(err(&p, &[&f32(shape![2, 2]), &i64s(&[1, 1])]).contains("each of the 2"));
    }

    #[test]
    fn hostile_values_are_errors_not_panics() {
        let x = f32(shape![10, 20]);
        let min_step = one(&Op::Slice, &[&x, &i64s(&[9]), &i64s(&[i64::MIN]), &i64s(&[0]), &i64s(&[i64::MIN])]);
        assert_eq!(min_step.shape, shape![1, 20]);
        assert!(err(&Op::Tile, &[&x, &i64s(&[i64::MAX, 1])]).contains("overflows"));
        let p = Op::Pad { mode: PadMode::Constant };
        assert!(err(&p, &[&x, &i64s(&[i64::MAX, 0, i64::MAX, 0])]).contains("overflows"));
        let split = crate::infer::infer(
            &Op::Split { axis: 0, num_outputs: None },
            &[Some(&x), Some(&i64s(&[i64::MAX, i64::MAX]))],
            2,
        );
        assert!(split.unwrap_err().contains("sums to"));
        assert!(err(&Op::DepthToSpace { blocksize: usize::MAX, column_row: false }, &[&f32(shape![1, 4, 2, 2])])
            .contains("blocksize"));
    }

    #[test]
    fn depth_and_space() {
        let d2s = Op::DepthToSpace { blocksize: 2, column_row: false };
        assert_eq!(one(&d2s, &[&f32(shape![1, 8, 3, 4])]).shape, shape![1, 2, 6, 8]);
        assert!(err(&d2s, &[&f32(shape![1, 6, 3, 4])]).contains("channel count 6"));
        let s2d = Op::SpaceToDepth { blocksize: 2 };
        assert_eq!(one(&s2d, &[&f32(shape![1, 2, 6, 8])]).shape, shape![1, 8, 3, 4]);
        assert!(err(&s2d, &[&f32(shape![1, 2, 5, 8])]).contains("height 5"));
    }
}
