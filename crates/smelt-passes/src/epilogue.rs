//! Epilogue fusion: a constant bias `Add` and an activation that follow a Conv,
//! Gemm or MatMul are done by that op's kernel as it writes its output, instead of
//! as separate passes over memory.
//!
//! - `Conv → Add(c)` with `c` broadcasting per output channel (`[Cout,1,1]`,
//!   `[1,Cout,1,1]`, or one element) merges into Conv's bias;
//! - `MatMul(x, W[K,N]) → Add(c[N])` becomes MatMul with bias input 2;
//! - `Gemm` without `C` → `Add(c)` with `c` broadcasting along the rows becomes `C`;
//! - Relu, LeakyRelu, Clip (constant bounds), Sigmoid, Tanh, HardSigmoid, HardSwish,
//!   Gelu and Elu become the op's `activation`.
//!
//! Only an intermediate value read by nothing else (and not a graph output) is
//! fused away; the fused node takes over the consumer's output value, so names of
//! graph outputs are kept.

use crate::consts::{single_f32, tensor_from_f64};
use crate::uses::Uses;
use crate::{PassError, Patch};
use smelt_ir::{BinaryOp, ConvAttrs, Dim, Graph, Node, Op, Tensor, UnaryOp, ValueId};

/// What one [`fuse_epilogues`] call fused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuseOutcome {
    pub biases: usize,
    pub activations: usize,
}

/// Fuses bias additions and activations into the Conv/Gemm/MatMul before them.
///
/// A node takes part in at most one fusion per call (`Conv → Add → Relu` fuses the
/// Add now and the Relu on the next call), which keeps every match independent.
pub fn fuse_epilogues(graph: &mut Graph) -> Result<FuseOutcome, PassError> {
    let uses = Uses::new(graph);
    let mut patch = Patch::new("epilogue fusion", graph);
    let mut outcome = FuseOutcome::default();
    for (index, node) in graph.nodes.iter().enumerate() {
        let producer_of = |value: ValueId| {
            uses.private_producer(value, index).filter(|&p| !patch.touches(p) && graph.nodes[p].outputs.len() == 1)
        };
        let fused = if node.op == Op::Binary(BinaryOp::Add) {
            let [Some(a), Some(b)] = node.inputs[..] else { continue };
            // Add commutes: the bias may be either operand.
            [(a, b), (b, a)].into_iter().find_map(|(main, addend)| {
                let producer = producer_of(main)?;
                let fused = with_bias(graph, &graph.nodes[producer], graph.constant(addend)?)?;
                Some((producer, fused))
            })
        } else if let Some(activation) = fusable_activation(graph, node) {
            let Some(&Some(input)) = node.inputs.first() else { continue };
            producer_of(input).and_then(|p| {
                let op = with_activation(&graph.nodes[p].op, activation)?;
                Some((p, Fused { op, bias: None }))
            })
        } else {
            None
        };
        let Some((producer_index, fused)) = fused else { continue };

        let producer = &graph.nodes[producer_index];
        let mut inputs = producer.inputs.clone();
        if let Some(bias) = fused.bias {
            let bias = patch.add_constant(format!("{}_fused_bias", producer.name), bias);
            inputs.resize(inputs.len().max(3), None);
            inputs[BIAS_INPUT] = Some(bias);
            outcome.biases += 1;
        } else {
            outcome.activations += 1;
        }
        let node = Node { name: producer.name.clone(), op: fused.op, inputs, outputs: node.outputs.clone() };
        patch.replace_node(producer_index, node);
        patch.remove_node(index);
    }
    if !patch.is_empty() {
        patch.apply(graph)?;
    }
    Ok(outcome)
}

/// The bias input's position in Conv (`B`), Gemm (`C`) and MatMul (Smelt's fused form).
const BIAS_INPUT: usize = 2;

/// The producer's new op, and the bias tensor to put at [`BIAS_INPUT`].
struct Fused {
    op: Op,
    bias: Option<Tensor>,
}

/// `producer` rewritten to also add `addend` to its output, if its kernel can.
fn with_bias(graph: &Graph, producer: &Node, addend: &Tensor) -> Option<Fused> {
    if producer.op.activation().is_some() || !addend.dtype().is_float() {
        return None;
    }
    let input_fact = |slot: usize| producer.inputs.get(slot).copied().flatten().map(|v| graph.fact(v));
    let existing_bias = |len: usize| -> Option<Vec<f64>> {
        match producer.inputs.get(BIAS_INPUT).copied().flatten() {
            None => Some(vec![0.0; len]),
            Some(b) => {
                graph.constant(b).filter(|t| t.dtype() == addend.dtype() && t.len() == len).map(|t| t.to_f64_vec())
            }
        }
    };
    let weight = input_fact(1)?;
    if weight.dtype != addend.dtype() {
        return None;
    }
    let weight_dims = weight.shape.dims()?;

    let (op, len) = match &producer.op {
        Op::Conv(_) => {
            let out_channels = weight_dims.first()?.fixed()?;
            // The addend, aligned to the output's rank, may vary along the channel
            // axis only, and must not add axes.
            let rank = weight_dims.len();
            let padded = rank.checked_sub(addend.rank())?;
            let per_channel =
                addend.shape().iter().enumerate().all(|(i, &d)| d == 1 || (i + padded == 1 && d == out_channels));
            if !per_channel {
                return None;
            }
            (producer.op.clone(), out_channels)
        }
        Op::MatMul { .. } => {
            // A 2-D right operand makes the output's last axis N; a bias of [N] (or
            // one element) then broadcasts along it without adding axes.
            let [_, Dim::Fixed(n)] = weight_dims else { return None };
            if addend.rank() > 1 || !(addend.len() == 1 || addend.len() == *n) {
                return None;
            }
            (producer.op.clone(), *n)
        }
        Op::Gemm { alpha, trans_a, trans_b, .. } => {
            let n = weight_dims.get(if *trans_b { 0 } else { 1 })?.fixed()?;
            let rows_ok = addend.rank() < 2 || addend.shape()[0] == 1;
            let cols_ok = addend.rank() == 0 || matches!(addend.shape().last(), Some(&d) if d == 1 || d == n);
            // C must be absent: beta scales it, so merging into an existing C would
            // need beta folded into the constant first.
            let has_c = producer.inputs.get(BIAS_INPUT).copied().flatten().is_some();
            if addend.rank() > 2 || !rows_ok || !cols_ok || has_c {
                return None;
            }
            let op = Op::Gemm { alpha: *alpha, beta: 1.0, trans_a: *trans_a, trans_b: *trans_b, activation: None };
            (op, n)
        }
        _ => return None,
    };
    let addend_values = addend.to_f64_vec();
    let at = |i: usize| addend_values[if addend_values.len() == 1 { 0 } else { i }];
    let bias: Vec<f64> = existing_bias(len)?.iter().enumerate().map(|(i, b)| b + at(i)).collect();
    Some(Fused { op, bias: Some(tensor_from_f64(addend.dtype(), &[len], &bias)) })
}

/// The activation `node` computes, if a Conv/Gemm/MatMul kernel can apply it.
fn fusable_activation(graph: &Graph, node: &Node) -> Option<UnaryOp> {
    match &node.op {
        Op::Unary(
            activation @ (UnaryOp::Relu
            | UnaryOp::LeakyRelu { .. }
            | UnaryOp::Sigmoid
            | UnaryOp::Tanh
            | UnaryOp::HardSigmoid { .. }
            | UnaryOp::HardSwish
            | UnaryOp::Gelu { .. }
            | UnaryOp::Elu { .. }),
        ) => Some(activation.clone()),
        Op::Clip => {
            // An absent bound does not clip on that side.
            let bound = |slot: usize, absent: f32| match node.inputs.get(slot).copied().flatten() {
                None => Some(absent),
                Some(v) => graph.constant(v).and_then(|t| single_f32(t)),
            };
            Some(UnaryOp::Clip { min: bound(1, f32::NEG_INFINITY)?, max: bound(2, f32::INFINITY)? })
        }
        _ => None,
    }
}

/// `op` with `activation` applied to its output, if it has no activation yet.
fn with_activation(op: &Op, activation: UnaryOp) -> Option<Op> {
    match op {
        Op::Conv(attrs) if attrs.activation.is_none() => {
            Some(Op::Conv(ConvAttrs { activation: Some(activation), ..attrs.clone() }))
        }
        Op::MatMul { activation: None } => Some(Op::MatMul { activation: Some(activation) }),
        Op::Gemm { alpha, beta, trans_a, trans_b, activation: None } => Some(Op::Gemm {
            alpha: *alpha,
            beta: *beta,
            trans_a: *trans_a,
            trans_b: *trans_b,
            activation: Some(activation),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
