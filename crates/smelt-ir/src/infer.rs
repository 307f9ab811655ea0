//! Shape and dtype inference: for each op, the output facts from the input facts.
//!
//! One function serves both uses:
//! - at import/compile time, with symbolic dims (`batch`) and constants known only
//!   where the graph has them;
//! - at run time, with every shape fixed and the values of [`Op::shape_inputs`]
//!   given as constants, where it must return fully fixed shapes.

use crate::{Dim, Fact, Op, Shape};

/// Output facts of `op` given its input facts (`None` = omitted optional input).
/// `n_outputs` is the node's output count (Split, TopK, optional outputs).
/// Errors are messages for the user; the caller adds the node and op names.
pub fn infer(op: &Op, inputs: &[Option<&Fact>], n_outputs: usize) -> Result<Vec<Fact>, String> {
    let _ = (op, inputs, n_outputs);
    Err(format!("shape inference for {} is not written yet", op.name()))
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
