//! Smelt's CPU backend.
//!
//! [`eval`] is the reference path: every op, every dtype it is defined for, writing
//! into outputs whose shapes come from `smelt_ir::infer`. [`prepare`] builds a
//! [`Kernel`] for one node, which may do work once at compile time (pre-packing
//! constant weights, fusing bias and activation, casting constant normalisation
//! parameters) and falls back to [`eval`].

mod error;
pub mod ops;
mod scratch;
pub mod team;

pub use error::{CpuError, Result};
pub use scratch::Scratch;

use smelt_ir::{infer, Fact, Op, Tensor, TensorView, TensorViewMut};
use std::sync::Arc;

/// A compiled CPU kernel for one node.
pub trait Kernel: Send + Sync {
    /// Computes the outputs. Output buffers are sized from shape inference and may
    /// hold stale data; the kernel must write every element.
    fn run(&self, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut], scratch: &mut Scratch) -> Result<()>;
}

/// The reference kernel: runs [`eval`] each time.
pub struct ReferenceKernel(pub Op);

impl Kernel for ReferenceKernel {
    fn run(&self, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut], scratch: &mut Scratch) -> Result<()> {
        eval(&self.0, inputs, outputs, scratch)
    }
}

/// Builds the kernel for a node. `constants[i]` is input i's value when it is a
/// compile-time constant (weights), so kernels can pre-pack it once.
pub fn prepare(op: &Op, constants: &[Option<&Arc<Tensor>>]) -> Box<dyn Kernel> {
    ops::linalg::prepare(op, constants)
        .or_else(|| ops::norm::prepare(op, constants))
        .unwrap_or_else(|| Box::new(ReferenceKernel(op.clone())))
}

/// Reference evaluation of one op into pre-shaped outputs.
pub fn eval(
    op: &Op,
    inputs: &[Option<TensorView>],
    outputs: &mut [TensorViewMut],
    scratch: &mut Scratch,
) -> Result<()> {
    use Op::*;
    match op {
        Unary(_) | Binary(_) | Variadic(_) | Clip | Where | Cast { .. } | CastLike | Identity | Dropout => {
            ops::elementwise::eval(op, inputs, outputs)
        }
        Softmax { .. }
        | LogSoftmax { .. }
        | Hardmax { .. }
        | Reduce { .. }
        | ArgMax { .. }
        | ArgMin { .. }
        | CumSum { .. }
        | TopK { .. } => ops::reduce::eval(op, inputs, outputs),
        BatchNormalization { .. }
        | LayerNormalization { .. }
        | InstanceNormalization { .. }
        | GroupNormalization { .. }
        | LpNormalization { .. } => ops::norm::eval(op, inputs, outputs),
        MatMul { .. } | Gemm { .. } | Einsum { .. } => ops::linalg::eval(op, inputs, outputs, scratch),
        Attention(attrs) => ops::attention::eval(attrs, inputs, outputs, scratch),
        Conv(_) | ConvTranspose(_) => ops::conv::eval(op, inputs, outputs, scratch),
        MaxPool(_) | AveragePool(_) | LpPool { .. } | GlobalAveragePool | GlobalMaxPool => {
            ops::pool::eval(op, inputs, outputs, scratch)
        }
        Resize(_) | DepthToSpace { .. } | SpaceToDepth { .. } => ops::resize::eval(op, inputs, outputs),
        Reshape { .. }
        | Flatten { .. }
        | Transpose { .. }
        | Squeeze
        | Unsqueeze
        | Concat { .. }
        | Split { .. }
        | Slice
        | Expand
        | Tile
        | Pad { .. }
        | Shape { .. }
        | Size
        | ConstantOfShape { .. }
        | Range
        | Trilu { .. }
        | OneHot { .. } => ops::movement::eval(op, inputs, outputs),
        Gather { .. } | GatherElements { .. } | GatherND { .. } | ScatterND { .. } | ScatterElements { .. } => {
            ops::gather::eval(op, inputs, outputs)
        }
    }
}

/// Evaluates one op on owned tensors, allocating outputs. Used by constant folding
/// and by tests; the executor uses planned buffers instead.
pub fn eval_alloc(op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
    let facts: Vec<Option<Fact>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.map(|t| {
                if op.shape_inputs().contains(&i) {
                    Fact::constant(Arc::new(t.clone()))
                } else {
                    Fact::new(t.dtype(), smelt_ir::Shape::fixed(t.shape()))
                }
            })
        })
        .collect();
    let fact_refs: Vec<Option<&Fact>> = facts.iter().map(|f| f.as_ref()).collect();
    let out_facts =
        infer::infer(op, &fact_refs, n_outputs).map_err(|m| CpuError::Invalid { op: op.name(), message: m })?;
    let mut outs: Vec<Tensor> = Vec::with_capacity(out_facts.len());
    for f in &out_facts {
        let shape = f.shape.as_fixed().ok_or_else(|| {
            CpuError::invalid(op.name(), format!("output shape {} is not fixed after inference", f.shape))
        })?;
        outs.push(Tensor::zeros(f.dtype, &shape));
    }
    let views: Vec<Option<TensorView>> = inputs.iter().map(|t| t.map(|t| t.view())).collect();
    let mut out_views: Vec<TensorViewMut> = outs.iter_mut().map(|t| t.view_mut()).collect();
    eval(op, &views, &mut out_views, &mut Scratch::new())?;
    Ok(outs)
}
