//! Shape and dtype inference: for each op, the output facts from the input facts.
//!
//! One function serves both uses:
//! - at import/compile time, with symbolic dims (`batch`) and constants known only
//!   where the graph has them;
//! - at run time, with every shape fixed and the values of [`Op::shape_inputs`]
//!   given as constants, where it must return fully fixed shapes.
//!
//! Conventions every rule follows:
//! - Not knowing something is never an error: a dim that depends on an unknown
//!   value is [`Dim::Unknown`], a rank that does is [`Shape::unknown`]. Errors are
//!   for inputs that provably cannot work (mismatched dims, bad axes, wrong dtypes,
//!   wrong input counts), and their messages name the shapes involved.
//! - Symbols propagate: broadcasting `batch` with 1 gives `batch`, with a fixed
//!   size above 1 gives that size; products and quotients of dims are tracked
//!   symbolically where the symbols cancel (Reshape's `-1`, Flatten).
//! - Small integer tensors that hold dims (what `Shape` produces, and the
//!   Gather/Slice/Concat/Unsqueeze/arithmetic chains built on it) carry their
//!   element values in [`Fact::dims_value`], scalars included, so Reshape, Expand,
//!   Tile and ConstantOfShape can give symbolic shapes. Negative elements (Reshape's
//!   `-1`) are stored bit-cast; read them with [`dim_as_value`]. When every element
//!   is known the output also gets [`Fact::constant`].
//! - Symbolic dims are assumed large enough that Slice bounds do not clamp
//!   (`x[:, -1]` on `seq` gives 1, `x[:3]` on `batch` gives 3); the run-time pass,
//!   with fixed shapes, computes the exact clamped sizes.

mod conv;
mod dims;
pub(crate) mod einsum;
mod elementwise;
mod indexing;
mod linalg;
mod movement;
mod norm;
mod reduce;
mod resize;
mod shape_ops;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod test_util;

pub use dims::dim_as_value;

use crate::{DType, Dim, Fact, Op, Shape};

/// Output facts of `op` given its input facts (`None` = omitted optional input).
/// `n_outputs` is the node's output count (Split, TopK, optional outputs).
/// Errors are messages for the user; the caller adds the node and op names.
pub fn infer(op: &Op, inputs: &[Option<&Fact>], n_outputs: usize) -> Result<Vec<Fact>, String> {
    let mut facts = match op {
        Op::Unary(u) => elementwise::unary(u, inputs)?,
        Op::Binary(b) => elementwise::binary(*b, inputs)?,
        Op::Variadic(_) => elementwise::variadic(inputs)?,
        Op::Clip => elementwise::clip(inputs)?,
        Op::Where => elementwise::where_(inputs)?,
        Op::Cast { to } => elementwise::cast(*to, inputs)?,
        Op::CastLike => elementwise::cast_like(inputs)?,
        Op::Identity => elementwise::identity(inputs)?,
        Op::Dropout => elementwise::dropout(inputs)?,
        Op::Softmax { axis, .. } | Op::LogSoftmax { axis, .. } | Op::Hardmax { axis, .. } => {
            elementwise::softmax(*axis, inputs)?
        }
        Op::Trilu { .. } => elementwise::trilu(inputs)?,
        Op::CumSum { .. } => elementwise::cumsum(inputs)?,

        Op::MatMul { .. } => linalg::matmul(inputs)?,
        Op::Gemm { trans_a, trans_b, .. } => linalg::gemm(*trans_a, *trans_b, inputs)?,
        Op::Einsum { equation } => einsum::einsum(equation, inputs)?,
        Op::Attention(attrs) => linalg::attention(attrs, inputs)?,
        Op::Conv(attrs) => conv::conv(attrs, inputs)?,
        Op::ConvTranspose(attrs) => conv::conv_transpose(attrs, inputs)?,
        Op::MaxPool(attrs) => conv::pool(attrs, true, inputs)?,
        Op::AveragePool(attrs) | Op::LpPool { attrs, .. } => conv::pool(attrs, false, inputs)?,
        Op::GlobalAveragePool | Op::GlobalMaxPool => conv::global_pool(inputs)?,

        Op::BatchNormalization { .. } => norm::batch_norm(inputs)?,
        Op::LayerNormalization { axis, .. } => norm::layer_norm(*axis, inputs)?,
        Op::InstanceNormalization { .. } => norm::instance_norm(inputs)?,
        Op::GroupNormalization { num_groups, per_channel, .. } => norm::group_norm(*num_groups, *per_channel, inputs)?,
        Op::LpNormalization { axis, .. } => norm::lp_norm(*axis, inputs)?,

        Op::Reshape { allowzero } => movement::reshape(*allowzero, inputs)?,
        Op::Flatten { axis } => movement::flatten(*axis, inputs)?,
        Op::Transpose { perm } => movement::transpose(perm.as_deref(), inputs)?,
        Op::Squeeze => movement::squeeze(inputs)?,
        Op::Unsqueeze => movement::unsqueeze(inputs)?,
        Op::Concat { axis } => movement::concat(*axis, inputs)?,
        Op::Split { axis, num_outputs } => movement::split(*axis, *num_outputs, inputs, n_outputs)?,
        Op::Slice => movement::slice(inputs)?,
        Op::Expand => movement::expand(inputs)?,
        Op::Tile => movement::tile(inputs)?,
        Op::Pad { .. } => movement::pad(inputs)?,
        Op::DepthToSpace { blocksize, .. } => movement::depth_to_space(*blocksize, inputs)?,
        Op::SpaceToDepth { blocksize } => movement::space_to_depth(*blocksize, inputs)?,

        Op::Gather { axis } => indexing::gather(*axis, inputs)?,
        Op::GatherElements { axis } => indexing::gather_elements(*axis, inputs)?,
        Op::GatherND { batch_dims } => indexing::gather_nd(*batch_dims, inputs)?,
        Op::ScatterND { .. } => indexing::scatter_nd(inputs)?,
        Op::ScatterElements { axis, .. } => indexing::scatter_elements(*axis, inputs)?,
        Op::TopK { axis, .. } => indexing::topk(*axis, inputs)?,
        Op::OneHot { axis } => indexing::one_hot(*axis, inputs)?,

        Op::Shape { start, end } => shape_ops::shape(*start, *end, inputs)?,
        Op::Size => shape_ops::size(inputs)?,
        Op::ConstantOfShape { value } => shape_ops::constant_of_shape(value, inputs)?,
        Op::Range => shape_ops::range(inputs)?,

        Op::Resize(attrs) => resize::resize(attrs, inputs)?,

        Op::Reduce { kind, keepdims, noop_with_empty_axes } => {
            reduce::reduce(*kind, *keepdims, *noop_with_empty_axes, inputs)?
        }
        Op::ArgMax { axis, keepdims, .. } | Op::ArgMin { axis, keepdims, .. } => {
            reduce::arg_reduce(*axis, *keepdims, inputs)?
        }
    };
    if n_outputs > facts.len() {
        return Err(format!("{} has at most {} output(s), but the node has {n_outputs}", op.name(), facts.len()));
    }
    facts.truncate(n_outputs);
    Ok(facts)
}

/// Combines a declared fact with an inferred one, keeping the more precise of each part.
pub fn merge(declared: &Fact, inferred: Fact) -> Fact {
    let shape = match (&declared.shape.dims, &inferred.shape.dims) {
        (Some(d), Some(i)) if d.len() == i.len() => Shape::new(
            d.iter()
                .zip(i)
                .map(|(d, i)| match (d, i) {
                    (_, Dim::Fixed(n)) => Dim::Fixed(*n),
                    (Dim::Fixed(n), _) => Dim::Fixed(*n),
                    (_, Dim::Sym(s)) => Dim::Sym(s.clone()),
                    (Dim::Sym(s), _) => Dim::Sym(s.clone()),
                    _ => Dim::Unknown,
                })
                .collect(),
        ),
        (_, Some(_)) => inferred.shape.clone(),
        (Some(_), None) => declared.shape.clone(),
        (None, None) => Shape::unknown(),
    };
    Fact { dtype: inferred.dtype, shape, constant: inferred.constant, dims_value: inferred.dims_value }
}

/// A node's inputs, checked for count and presence once so rules can index them.
struct Args<'a> {
    inputs: &'a [Option<&'a Fact>],
    names: &'static [&'static str],
}

impl<'a> Args<'a> {
    /// `names` lists every input in order; the first `required` must be present.
    fn new(inputs: &'a [Option<&'a Fact>], names: &'static [&'static str], required: usize) -> Result<Self, String> {
        if inputs.len() < required || inputs.len() > names.len() {
            let count =
                if required == names.len() { format!("{required}") } else { format!("{required} to {}", names.len()) };
            return Err(format!("expects {count} input(s) ({}), got {}", names.join(", "), inputs.len()));
        }
        for (i, name) in names.iter().enumerate().take(required) {
            if inputs[i].is_none() {
                return Err(format!("required input {i} ({name}) is missing"));
            }
        }
        Ok(Args { inputs, names })
    }

    /// A required input (checked present in [`Args::new`]).
    fn req(&self, i: usize) -> &'a Fact {
        self.inputs[i].expect("required inputs are checked in Args::new")
    }

    fn opt(&self, i: usize) -> Option<&'a Fact> {
        self.inputs.get(i).copied().flatten()
    }

    fn name(&self, i: usize) -> &'static str {
        self.names[i]
    }

    /// Checks that every listed input (where present) has the dtype of the first.
    fn same_dtype(&self, which: &[usize]) -> Result<DType, String> {
        let first = which.iter().find_map(|&i| self.opt(i).map(|f| (i, f.dtype)));
        let Some((i0, dtype)) = first else { return Err("no inputs to take a dtype from".into()) };
        for &i in which {
            if let Some(f) = self.opt(i) {
                if f.dtype != dtype {
                    return Err(format!(
                        "inputs must share one dtype, but {} is {} and {} is {}",
                        self.name(i0),
                        dtype,
                        self.name(i),
                        f.dtype
                    ));
                }
            }
        }
        Ok(dtype)
    }

    /// Checks that an input (where present) holds integers: indices, axes, shapes.
    fn int_input(&self, i: usize) -> Result<(), String> {
        match self.opt(i) {
            Some(f) if !f.dtype.is_int() => Err(format!("{} must be an integer tensor, got {}", self.name(i), f.dtype)),
            _ => Ok(()),
        }
    }
}

/// Every input of a variadic op present, at least `min` of them.
fn all_present<'a>(inputs: &[Option<&'a Fact>], min: usize) -> Result<Vec<&'a Fact>, String> {
    if inputs.len() < min {
        return Err(format!("expects at least {min} input(s), got {}", inputs.len()));
    }
    inputs.iter().enumerate().map(|(i, f)| f.ok_or_else(|| format!("input {i} is missing"))).collect()
}

/// The dims of a shape of known rank, or an error naming what rank was needed.
fn dims_of_rank<'s>(shape: &'s Shape, rank: usize, what: &str) -> Result<Option<&'s [Dim]>, String> {
    match shape.dims() {
        Some(d) if d.len() != rank => Err(format!("{what} must have rank {rank}, got shape {shape}")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_more_precise_dims() {
        let declared = Fact::new(DType::F32, Shape::new(vec![Dim::Sym("batch".into()), Dim::Unknown]));
        let inferred = Fact::new(DType::F32, Shape::new(vec![Dim::Unknown, Dim::Fixed(8)]));
        let m = merge(&declared, inferred);
        assert_eq!(m.shape, Shape::new(vec![Dim::Sym("batch".into()), Dim::Fixed(8)]));
    }

    #[test]
    fn too_many_outputs_is_an_error() {
        let x = Fact::new(DType::F32, Shape::fixed(&[2]));
        let e = infer(&Op::Identity, &[Some(&x)], 2).unwrap_err();
        assert!(e.contains("at most 1"), "{e}");
    }

    #[test]
    fn input_count_is_checked() {
        let x = Fact::new(DType::F32, Shape::fixed(&[2]));
        let e = infer(&Op::MatMul { activation: None }, &[Some(&x)], 1).unwrap_err();
        assert!(e.contains("expects 2 to 4 input(s)"), "{e}");
        let e = infer(&Op::Reshape { allowzero: false }, &[Some(&x), None], 1).unwrap_err();
        assert!(e.contains("shape") && e.contains("missing"), "{e}");
    }

    #[test]
    fn matmul_residual_must_match_the_output() {
        let (a, w) = (Fact::new(DType::F32, Shape::fixed(&[3, 4])), Fact::new(DType::F32, Shape::fixed(&[4, 5])));
        let op = Op::MatMul { activation: None };
        let z = Fact::new(DType::F32, Shape::fixed(&[3, 5]));
        let out = infer(&op, &[Some(&a), Some(&w), None, Some(&z)], 1).unwrap();
        assert_eq!(out[0].shape, Shape::fixed(&[3, 5]));
        let z = Fact::new(DType::F32, Shape::fixed(&[1, 5]));
        let e = infer(&op, &[Some(&a), Some(&w), None, Some(&z)], 1).unwrap_err();
        assert!(e.contains("Z") && e.contains("shape"), "{e}");
        let z = Fact::new(DType::F64, Shape::fixed(&[3, 5]));
        assert!(infer(&op, &[Some(&a), Some(&w), None, Some(&z)], 1).is_err());
    }
}
