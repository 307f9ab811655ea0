//! Builders that keep the shape-rule tests short.

use crate::{DType, Dim, Fact, Op, Shape, Tensor};
use std::sync::Arc;

/// A dim from a test literal: numbers are fixed, names are symbols, `?` is unknown.
pub(super) trait IntoDim {
    fn into_dim(self) -> Dim;
}

impl IntoDim for usize {
    fn into_dim(self) -> Dim {
        Dim::Fixed(self)
    }
}

impl IntoDim for i32 {
    fn into_dim(self) -> Dim {
        Dim::Fixed(self as usize)
    }
}

impl IntoDim for &str {
    fn into_dim(self) -> Dim {
        if self == "?" {
            Dim::Unknown
        } else {
            Dim::Sym(self.to_string())
        }
    }
}

/// `shape![1, "batch", "?"]`
macro_rules! shape {
    ($($d:expr),* $(,)?) => {
        $crate::Shape::new(vec![$($crate::infer::test_util::IntoDim::into_dim($d)),*])
    };
}
pub(super) use shape;

pub(super) fn fact(dtype: DType, shape: Shape) -> Fact {
    Fact::new(dtype, shape)
}

pub(super) fn f32(shape: Shape) -> Fact {
    Fact::new(DType::F32, shape)
}

pub(super) fn i64s(values: &[i64]) -> Fact {
    Fact::constant(Arc::new(Tensor::from_slice(&[values.len()], values).unwrap()))
}

pub(super) fn i64_scalar(v: i64) -> Fact {
    Fact::constant(Arc::new(Tensor::scalar(v)))
}

pub(super) fn f32s(values: &[f32]) -> Fact {
    Fact::constant(Arc::new(Tensor::from_slice(&[values.len()], values).unwrap()))
}

pub(super) fn f32_scalar(v: f32) -> Fact {
    Fact::constant(Arc::new(Tensor::scalar(v)))
}

/// Infers one output.
pub(super) fn one(op: &Op, inputs: &[&Fact]) -> Fact {
    run(op, inputs, 1).remove(0)
}

pub(super) fn run(op: &Op, inputs: &[&Fact], n: usize) -> Vec<Fact> {
    let inputs: Vec<Option<&Fact>> = inputs.iter().map(|f| Some(*f)).collect();
    super::infer(op, &inputs, n).unwrap_or_else(|e| panic!("{} failed: {e}", op.name()))
}

/// The error message for inputs that must be rejected.
pub(super) fn err(op: &Op, inputs: &[&Fact]) -> String {
    let inputs: Vec<Option<&Fact>> = inputs.iter().map(|f| Some(*f)).collect();
    match super::infer(op, &inputs, 1) {
        Ok(f) => panic!("{} should fail, got {:?}", op.name(), f),
        Err(e) => e,
    }
}

/// The elements of a fact's `dims_value`, decoded.
pub(super) fn dims_value(f: &Fact) -> Vec<Dim> {
    f.dims_value.clone().expect("dims_value is set")
}
