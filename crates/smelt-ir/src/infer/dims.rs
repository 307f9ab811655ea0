//! Dimension algebra shared by the shape rules: unifying and broadcasting single
//! dims, symbolic products (for Reshape's `-1`, Flatten, Size), and the integer
//! *values* of small shape tensors (`Fact::dims_value`).

use crate::{DType, Dim, Fact, Shape, Tensor};
use std::fmt::Write as _;
use std::sync::Arc;

/// Longest 1-D tensor whose values are tracked through shape arithmetic. Shape
/// tensors have one element per axis; anything longer is data, not a shape.
pub(super) const MAX_TRACKED_VALUES: usize = 64;

/// The common value of two dims that must be equal (MatMul's inner dims, Concat's
/// other axes), or `None` when they provably differ. A fixed size beats a symbol
/// (the symbol must take that size), a symbol beats an unknown.
pub(super) fn unify(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => (x == y).then_some(Dim::Fixed(*x)),
        (Dim::Fixed(n), _) | (_, Dim::Fixed(n)) => Some(Dim::Fixed(*n)),
        (Dim::Sym(s), _) | (_, Dim::Sym(s)) => Some(Dim::Sym(s.clone())),
        (Dim::Unknown, Dim::Unknown) => Some(Dim::Unknown),
    }
}

/// numpy broadcasting of one pair of dims, or `None` when they cannot broadcast.
///
/// A symbol against a fixed size above 1 must be 1 or that size, so the result is
/// the fixed size. Two different symbols (or a symbol and an unknown) could each
/// be 1, so the result is unknown.
pub(super) fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Fixed(1), other) | (other, Dim::Fixed(1)) => Some(other.clone()),
        (Dim::Fixed(x), Dim::Fixed(y)) => (x == y).then_some(Dim::Fixed(*x)),
        (Dim::Fixed(n), _) | (_, Dim::Fixed(n)) => Some(Dim::Fixed(*n)),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => Some(Dim::Sym(x.clone())),
        _ => Some(Dim::Unknown),
    }
}

/// Multidirectional (numpy) broadcasting of several shapes.
pub(super) fn broadcast_shapes(shapes: &[&Shape]) -> Result<Shape, String> {
    let known: Vec<&[Dim]> = shapes.iter().filter_map(|s| s.dims()).collect();
    let rank = known.iter().map(|d| d.len()).max().unwrap_or(0);
    let mut out = vec![Dim::Fixed(1); rank];
    for dims in &known {
        let offset = rank - dims.len();
        for (i, d) in dims.iter().enumerate() {
            out[offset + i] = broadcast_dim(&out[offset + i], d).ok_or_else(|| {
                format!(
                    "shapes {} do not broadcast: dimension {} is {} in one and {} in another",
                    list_shapes(shapes),
                    i as i64 - dims.len() as i64,
                    out[offset + i],
                    d
                )
            })?;
        }
    }
    if known.len() < shapes.len() {
        // Some rank is unknown: the known shapes were checked, the result is open.
        return Ok(Shape::unknown());
    }
    Ok(Shape::new(out))
}

/// Checks that `from` broadcasts to `to` without changing `to` (unidirectional
/// broadcasting: PRelu's slope, Gemm's C, Clip's bounds).
pub(super) fn check_broadcasts_to(from: &Shape, to: &Shape, what: &str) -> Result<(), String> {
    let (Some(f), Some(t)) = (from.dims(), to.dims()) else { return Ok(()) };
    let err = || format!("{what} of shape {from} does not broadcast to {to}");
    if f.len() > t.len() {
        return Err(err());
    }
    let offset = t.len() - f.len();
    for (i, d) in f.iter().enumerate() {
        match (d, &t[offset + i]) {
            (Dim::Fixed(1), _) => {}
            (Dim::Fixed(a), Dim::Fixed(b)) if a != b => return Err(err()),
            _ => {}
        }
    }
    Ok(())
}

/// Broadcasts two dim lists (batch dims of MatMul, Expand's target).
pub(super) fn broadcast_dims(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let rank = a.len().max(b.len());
    let pad = |d: &[Dim]| -> Vec<Dim> {
        let mut v = vec![Dim::Fixed(1); rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    pad(a).iter().zip(pad(b).iter()).map(|(x, y)| broadcast_dim(x, y)).collect()
}

fn list_shapes(shapes: &[&Shape]) -> String {
    let mut s = String::new();
    for (i, sh) in shapes.iter().enumerate() {
        if i > 0 {
            s.push_str(" and ");
        }
        let _ = write!(s, "{sh}");
    }
    s
}

/// Normalises an axis in `[-rank, rank)` to `[0, rank)`.
pub(super) fn norm_axis(axis: i64, rank: usize, what: &str) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("{what} {axis} is out of range for rank {rank} (valid: {} to {})", -r, r - 1));
    }
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

/// Normalises a list of axes and rejects repeats.
pub(super) fn norm_axes(axes: &[i64], rank: usize, what: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = norm_axis(a, rank, what)?;
        if out.contains(&n) {
            return Err(format!("{what} {axes:?} name axis {n} twice"));
        }
        out.push(n);
    }
    Ok(out)
}

/// A product of dims kept symbolically: `coeff × sym₁ × sym₂ × …`, with a flag for
/// factors that are not known at all. Lets Reshape resolve `-1` when symbols cancel
/// (`batch·2048 / batch = 2048`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Product {
    coeff: usize,
    /// Sorted, with repeats.
    syms: Vec<String>,
    unknown: bool,
}

impl Product {
    pub(super) fn one() -> Product {
        Product { coeff: 1, syms: Vec::new(), unknown: false }
    }

    pub(super) fn of(dims: &[Dim]) -> Product {
        let mut p = Product::one();
        for d in dims {
            p.mul(d);
        }
        p
    }

    pub(super) fn mul(&mut self, d: &Dim) {
        match d {
            Dim::Fixed(n) => match self.coeff.checked_mul(*n) {
                Some(c) => self.coeff = c,
                None => self.unknown = true,
            },
            Dim::Sym(s) => {
                let at = self.syms.partition_point(|x| x < s);
                self.syms.insert(at, s.clone());
            }
            Dim::Unknown => self.unknown = true,
        }
    }

    /// Whether the product is zero whatever the symbols are.
    pub(super) fn is_zero(&self) -> bool {
        self.coeff == 0
    }

    pub(super) fn fixed(&self) -> Option<usize> {
        (self.is_zero() || (!self.unknown && self.syms.is_empty())).then_some(self.coeff)
    }

    /// The product as one dim: fixed, a single symbol, or unknown.
    pub(super) fn to_dim(&self) -> Dim {
        if let Some(n) = self.fixed() {
            return Dim::Fixed(n);
        }
        if !self.unknown && self.coeff == 1 && self.syms.len() == 1 {
            return Dim::Sym(self.syms[0].clone());
        }
        Dim::Unknown
    }

    /// `self / other` when it is provably exact: other's symbols all cancel and its
    /// coefficient divides ours. `None` when it cannot be known (or is not exact).
    pub(super) fn div(&self, other: &Product) -> Option<Product> {
        if self.unknown || other.unknown || self.coeff.checked_rem(other.coeff) != Some(0) {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let at = syms.iter().position(|x| x == s)?;
            syms.remove(at);
        }
        Some(Product { coeff: self.coeff / other.coeff, syms, unknown: false })
    }
}

/// One element of a small integer tensor whose value matters to shape inference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Val {
    Int(i64),
    /// Equal to a symbolic dimension (always ≥ 0).
    Sym(String),
    Unknown,
}

impl Val {
    pub(super) fn int(&self) -> Option<i64> {
        match self {
            Val::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The value as a dimension of an output shape. Negative values are not dims;
    /// callers check for them first.
    pub(super) fn to_dim(&self) -> Dim {
        match self {
            Val::Int(v) if *v >= 0 => Dim::Fixed(*v as usize),
            Val::Sym(s) => Dim::Sym(s.clone()),
            _ => Dim::Unknown,
        }
    }

    pub(super) fn from_dim(d: &Dim) -> Val {
        match d {
            Dim::Fixed(n) => Val::Int(*n as i64),
            Dim::Sym(s) => Val::Sym(s.clone()),
            Dim::Unknown => Val::Unknown,
        }
    }
}

/// `[batch, -1, 3]`, for error messages.
pub(super) fn fmt_vals(vals: &[Val]) -> String {
    let parts: Vec<String> = vals
        .iter()
        .map(|v| match v {
            Val::Int(i) => i.to_string(),
            Val::Sym(s) => s.clone(),
            Val::Unknown => "?".to_string(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Reads a `dims_value` element. `Fact::dims_value` holds `Dim`s, which cannot be
/// negative, yet shape tensors carry `-1` (Reshape) and negative indices; those are
/// stored as the two's-complement bit pattern of the i64 in `Dim::Fixed`, which
/// this function reverses. Other crates reading `dims_value` should use it too.
pub fn dim_as_value(d: &Dim) -> Option<i64> {
    d.fixed().map(|n| n as i64)
}

fn encode(v: &Val) -> Dim {
    match v {
        Val::Int(i) => Dim::Fixed(*i as usize),
        Val::Sym(s) => Dim::Sym(s.clone()),
        Val::Unknown => Dim::Unknown,
    }
}

fn decode(d: &Dim) -> Val {
    match d {
        Dim::Fixed(_) => Val::Int(dim_as_value(d).unwrap_or_default()),
        Dim::Sym(s) => Val::Sym(s.clone()),
        Dim::Unknown => Val::Unknown,
    }
}

/// The element values of a fact, when known: from its constant (any length, any
/// dtype, floats truncated as ONNX does for OneHot's depth) or its `dims_value`.
pub(super) fn values(f: &Fact) -> Option<Vec<Val>> {
    if let Some(t) = &f.constant {
        return Some(t.to_i64_vec().into_iter().map(Val::Int).collect());
    }
    f.dims_value.as_ref().map(|d| d.iter().map(decode).collect())
}

/// [`values`] for tensors short enough to be shape arithmetic, so that data
/// tensors are never expanded element by element.
pub(super) fn small_values(f: &Fact) -> Option<Vec<Val>> {
    let len = match &f.constant {
        Some(t) => t.len(),
        None => f.dims_value.as_ref()?.len(),
    };
    if len > MAX_TRACKED_VALUES {
        return None;
    }
    values(f)
}

/// The element values when every one is a known integer.
pub(super) fn const_ints(f: &Fact) -> Option<Vec<i64>> {
    values(f)?.iter().map(Val::int).collect()
}

/// The single value of a scalar or one-element tensor.
pub(super) fn scalar_value(f: &Fact) -> Option<Val> {
    let v = values(f)?;
    (v.len() == 1).then(|| v[0].clone())
}

/// A fact for an integer tensor of rank 0 or 1 whose elements are `vals`: keeps
/// them as `dims_value`, and as a constant when all are known.
pub(super) fn fact_with_values(dtype: DType, rank: usize, vals: Vec<Val>) -> Fact {
    let shape = if rank == 0 { Shape::fixed(&[]) } else { Shape::fixed(&[vals.len()]) };
    let mut fact = Fact::new(dtype, shape);
    if !(dtype.is_int() || dtype == DType::Bool) || rank > 1 || vals.len() > MAX_TRACKED_VALUES {
        return fact;
    }
    if let Some(ints) = vals.iter().map(Val::int).collect::<Option<Vec<i64>>>() {
        let dims: Vec<usize> = fact.shape.as_fixed().unwrap_or_default();
        fact.constant = int_tensor(dtype, &dims, &ints).map(Arc::new);
    }
    if dtype != DType::Bool {
        fact.dims_value = Some(vals.iter().map(encode).collect());
    }
    fact
}

/// An integer (or bool) tensor from i64 values, converted as a cast would.
pub(super) fn int_tensor(dtype: DType, shape: &[usize], values: &[i64]) -> Option<Tensor> {
    if dtype == DType::Bool {
        let b: Vec<bool> = values.iter().map(|&v| v != 0).collect();
        return Tensor::from_bools(shape, &b).ok();
    }
    crate::dispatch_dtype!(dtype, T => {
        let v: Vec<T> = values.iter().map(|&x| <T as crate::Element>::from_f64(x as f64)).collect();
        Tensor::from_vec(shape, v).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Dim {
        Dim::Sym(s.into())
    }

    #[test]
    fn broadcasting_dims() {
        assert_eq!(broadcast_dim(&sym("b"), &Dim::Fixed(1)), Some(sym("b")));
        assert_eq!(broadcast_dim(&sym("b"), &Dim::Fixed(5)), Some(Dim::Fixed(5)));
        assert_eq!(broadcast_dim(&sym("b"), &sym("b")), Some(sym("b")));
        assert_eq!(broadcast_dim(&sym("a"), &sym("b")), Some(Dim::Unknown));
        assert_eq!(broadcast_dim(&Dim::Fixed(3), &Dim::Fixed(5)), None);
    }

    #[test]
    fn broadcast_error_names_the_dims() {
        let e = broadcast_shapes(&[&Shape::fixed(&[2, 3]), &Shape::fixed(&[5])]).unwrap_err();
        assert!(e.contains("3") && e.contains("5"), "{e}");
    }

    #[test]
    fn products_cancel_symbols() {
        let a = Product::of(&[sym("batch"), Dim::Fixed(2048), Dim::Fixed(1)]);
        let b = Product::of(&[sym("batch")]);
        assert_eq!(a.div(&b).unwrap().to_dim(), Dim::Fixed(2048));
        assert_eq!(b.div(&a), None);
        assert_eq!(Product::of(&[sym("s"), Dim::Fixed(1)]).to_dim(), sym("s"));
        assert_eq!(Product::of(&[sym("s"), Dim::Unknown, Dim::Fixed(0)]).to_dim(), Dim::Fixed(0));
    }

    #[test]
    fn negative_values_round_trip_through_dims_value() {
        let f = fact_with_values(DType::I64, 1, vec![Val::Sym("b".into()), Val::Int(-1)]);
        assert_eq!(values(&f).unwrap(), vec![Val::Sym("b".into()), Val::Int(-1)]);
        assert!(f.constant.is_none());
        let g = fact_with_values(DType::I32, 0, vec![Val::Int(-3)]);
        assert_eq!(g.constant.as_ref().unwrap().to_i64_vec(), vec![-3]);
        assert_eq!(g.shape, Shape::fixed(&[]));
    }
}
