//! A toy evaluator and graph helpers shared by the passes' tests.

use crate::consts::tensor_from_f64;
use crate::ConstEval;
use smelt_ir::{BinaryOp, DType, Dim, Fact, Op, Shape, Tensor, UnaryOp};
use std::cell::Cell;

/// Evaluates Add, Mul (same shapes, or one side with one element), Neg, 2-D
/// Transpose and ConstantOfShape; every other op is an error. Counts its calls.
#[derive(Default)]
pub(crate) struct ToyEval {
    pub calls: Cell<usize>,
}

impl ConstEval for ToyEval {
    fn eval(&self, op: &Op, inputs: &[Option<&Tensor>], _n_outputs: usize) -> Result<Vec<Tensor>, String> {
        self.calls.set(self.calls.get() + 1);
        let arg = |i: usize| inputs.get(i).copied().flatten().ok_or_else(|| format!("input {i} is missing"));
        let out = match op {
            Op::Binary(kind @ (BinaryOp::Add | BinaryOp::Mul)) => {
                let (a, b) = (arg(0)?, arg(1)?);
                let (big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                if big.shape() != small.shape() && small.len() != 1 {
                    return Err(format!("toy evaluator cannot broadcast {:?} with {:?}", a.shape(), b.shape()));
                }
                let (x, y) = (big.to_f64_vec(), small.to_f64_vec());
                let values: Vec<f64> = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let w = y[if y.len() == 1 { 0 } else { i }];
                        if *kind == BinaryOp::Add {
                            v + w
                        } else {
                            v * w
                        }
                    })
                    .collect();
                tensor_from_f64(big.dtype(), big.shape(), &values)
            }
            Op::Unary(UnaryOp::Neg) => {
                let a = arg(0)?;
                let values: Vec<f64> = a.to_f64_vec().iter().map(|v| -v).collect();
                tensor_from_f64(a.dtype(), a.shape(), &values)
            }
            Op::Transpose { .. } => {
                let a = arg(0)?;
                let &[rows, cols] = a.shape() else { return Err("toy evaluator transposes 2-D only".into()) };
                let x = a.to_f64_vec();
                let values: Vec<f64> = (0..rows * cols).map(|i| x[(i % rows) * cols + i / rows]).collect();
                tensor_from_f64(a.dtype(), &[cols, rows], &values)
            }
            Op::ConstantOfShape { value } => {
                let shape: Vec<usize> = arg(0)?.to_i64_vec().iter().map(|&d| d as usize).collect();
                let n: usize = shape.iter().product();
                tensor_from_f64(value.dtype(), &shape, &vec![value.to_f64_vec()[0]; n])
            }
            _ => return Err(format!("toy evaluator has no {}", op.name())),
        };
        Ok(vec![out])
    }
}

pub(crate) fn f32s(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::from_slice(shape, values).expect("one value per element")
}

pub(crate) fn i64s(shape: &[usize], values: &[i64]) -> Tensor {
    Tensor::from_slice(shape, values).expect("one value per element")
}

pub(crate) fn fact(dtype: DType, dims: &[Dim]) -> Fact {
    Fact::new(dtype, Shape::new(dims.to_vec()))
}

pub(crate) fn sym(name: &str) -> Dim {
    Dim::Sym(name.to_string())
}

pub(crate) fn f32_fact(dims: &[usize]) -> Fact {
    Fact::new(DType::F32, Shape::fixed(dims))
}

/// A fact that knows nothing but the dtype: what values look like before inference.
pub(crate) fn unknown(dtype: DType) -> Fact {
    Fact::new(dtype, Shape::unknown())
}
