//! Residual fusion: `Add(Conv(x), z)`, where `z` has the Conv's output shape (a
//! ResNet block's skip connection), becomes the Conv with `z` as its residual
//! input, so the Conv's kernel adds `z` while its output tile is still in cache.
//! The activation after the Add (`Relu`) is then fused by epilogue fusion, which
//! applies it after the residual. [`fuse_matmul_residual`] does the same for
//! `Add(MatMul(x, W, bias), z)` (a transformer's output projections), after
//! epilogue fusion has given the MatMul its bias.
//!
//! The Conv or MatMul must have no activation yet (it would have to come after
//! the sum) and no residual; its output must be read by the Add alone. The fused
//! node takes the Add's place in the node order, since `z` may be computed after
//! the product (the other branch of the block), and the Add's output value, so a
//! graph output keeps its name.
//!
//! Opt-in ([`crate::OptimizeOptions::fuse_residual`]): only a backend whose Conv
//! kernel reads the residual input asks for it.

use crate::uses::Uses;
use crate::{PassError, Patch};
use smelt_ir::{BinaryOp, Graph, Node, Op, ValueId};

/// The residual's position among Conv's inputs (`X, W, B?, Z?`) and MatMul's
/// (`A, B, bias?, Z?`).
const RESIDUAL_INPUT: usize = 3;

/// Fuses residual Adds into the Conv before them; returns how many.
pub fn fuse_residual(graph: &mut Graph) -> Result<usize, PassError> {
    fuse_into(graph, |op| matches!(op, Op::Conv(attrs) if attrs.activation.is_none()))
}

/// Fuses residual Adds into the MatMul before them; returns how many.
pub fn fuse_matmul_residual(graph: &mut Graph) -> Result<usize, PassError> {
    fuse_into(graph, |op| matches!(op, Op::MatMul { activation: None }))
}

/// Fuses `Add(p, z)` into `p`'s producer where `takes` accepts its op.
fn fuse_into(graph: &mut Graph, takes: impl Fn(&Op) -> bool) -> Result<usize, PassError> {
    let uses = Uses::new(graph);
    let mut patch = Patch::new("residual fusion", graph);
    let mut fused = 0;
    for (index, node) in graph.nodes.iter().enumerate() {
        let (Op::Binary(BinaryOp::Add), [Some(a), Some(b)]) = (&node.op, &node.inputs[..]) else { continue };
        let Some((conv, residual)) = [(*a, *b), (*b, *a)].into_iter().find_map(|(main, other)| {
            let conv = uses.private_producer(main, index)?;
            let producer = &graph.nodes[conv];
            (!patch.touches(conv) && takes(&producer.op) && fusable(graph, producer, main, other, node.outputs[0]))
                .then_some((conv, other))
        }) else {
            continue;
        };
        let producer = &graph.nodes[conv];
        let mut inputs = producer.inputs.clone();
        inputs.resize(RESIDUAL_INPUT, None);
        inputs.push(Some(residual));
        let fused_node =
            Node { name: producer.name.clone(), op: producer.op.clone(), inputs, outputs: node.outputs.clone() };
        patch.replace_node(index, fused_node);
        patch.remove_node(conv);
        fused += 1;
    }
    if !patch.is_empty() {
        patch.apply(graph)?;
    }
    Ok(fused)
}

/// Whether `conv_node` (writing `conv_out`) can take `residual` as its residual
/// input in place of the Add writing `sum`: a node without a residual, and all
/// three values of one known shape and float dtype, so the Add does not
/// broadcast.
fn fusable(graph: &Graph, conv_node: &Node, conv_out: ValueId, residual: ValueId, sum: ValueId) -> bool {
    if conv_node.inputs.len() > RESIDUAL_INPUT || conv_node.outputs.len() != 1 {
        return false;
    }
    let (y, z, s) = (graph.fact(conv_out), graph.fact(residual), graph.fact(sum));
    y.dtype.is_float() && z.dtype == y.dtype && y.shape.dims().is_some() && z.shape == y.shape && s.shape == y.shape
}

#[cfg(test)]
mod tests;
