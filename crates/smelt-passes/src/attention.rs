//! Attention fusion: the chain exporters write for scaled dot-product attention,
//!
//! ```text
//! MatMul(q, kᵀ) → [Div(c) | Mul(c)] → [Add(mask) | Where(keep, ·, fill)] → Softmax(last axis) → MatMul(·, v)
//! ```
//!
//! becomes one [`Op::Attention`] node, whose kernel computes the scores a tile of
//! query rows at a time and never writes the whole score matrix to memory. The
//! scale and the mask are optional; an additive mask may be either operand of its
//! Add; `Where` must keep the scores where its condition is true and put a
//! one-element constant elsewhere (GPT-2's causal mask). Where `kᵀ` is made by a
//! Transpose that swaps only the last two axes, the fused node reads `k` itself.
//! Where q, k and v come from `[B, S, H, D]` projections through the Transposes
//! that bring the heads forward, and the result goes back through one, the fused
//! node takes those Transposes in too and works token-major
//! ([`AttentionLayout::TokenMajor`]).
//!
//! Every value inside the chain must be read only by the next node of the chain
//! (and not be a graph output), so nothing the fused node skips is lost. Only f32
//! chains are fused: that is what the CPU kernel runs.
//!
//! The pass is opt-in ([`crate::OptimizeOptions::fuse_attention`]): a backend
//! without an attention kernel is better served by the separate nodes.

use crate::consts::single_f32;
use crate::uses::Uses;
use crate::{PassError, Patch};
use smelt_ir::{AttentionAttrs, AttentionLayout, AttentionMask, BinaryOp, DType, Graph, Node, Op, ValueId};

/// Replaces attention chains by `Attention` nodes; returns how many.
pub fn fuse_attention(graph: &mut Graph) -> Result<usize, PassError> {
    let uses = Uses::new(graph);
    let mut patch = Patch::new("attention fusion", graph);
    let mut fused = 0;
    for index in 0..graph.nodes.len() {
        let Some(chain) = match_chain(graph, &uses, index) else { continue };
        if chain.nodes.iter().any(|&n| patch.touches(n)) {
            continue;
        }
        let mut inputs = vec![Some(chain.q), Some(chain.k), Some(chain.v)];
        inputs.extend(chain.mask_input.map(Some));
        patch.replace_chain(graph, &chain.nodes, chain.last, Op::Attention(chain.attrs), inputs);
        fused += 1;
    }
    if !patch.is_empty() {
        patch.apply(graph)?;
    }
    Ok(fused)
}

/// A matched chain and what the fused node takes from it.
struct Chain {
    q: ValueId,
    k: ValueId,
    v: ValueId,
    mask_input: Option<ValueId>,
    attrs: AttentionAttrs,
    /// Every node of the chain; `last` (the `· v` MatMul) is replaced, the rest removed.
    nodes: Vec<usize>,
    last: usize,
}

/// The chain whose Softmax is node `softmax`, if it is one.
fn match_chain(graph: &Graph, uses: &Uses, softmax: usize) -> Option<Chain> {
    let node = &graph.nodes[softmax];
    let Op::Softmax { axis, .. } = node.op else { return None };
    let [Some(masked)] = node.inputs[..] else { return None };
    let [probs] = node.outputs[..] else { return None };
    let rank = graph.fact(masked).shape.rank()?;
    // With `coerce_2d` (opset < 13) the last axis is the only one where both forms agree.
    if graph.fact(masked).dtype != DType::F32 || !(axis == -1 || axis == rank as i64 - 1) || rank < 2 {
        return None;
    }

    // softmax → MatMul(probs, v)
    let last = uses.only_reader(probs)?;
    let (probs_again, v) = plain_matmul(&graph.nodes[last])?;
    if probs_again != probs {
        return None;
    }

    // the mask, if any; `reader` follows the chain back: the node reading the
    // value matched next.
    let mut nodes = vec![softmax, last];
    let mut reader = softmax;
    let mut scaled = masked;
    let (mut mask, mut mask_input) = (AttentionMask::None, None);
    if let Some((p, (scores, kind, input))) =
        producer(graph, uses, masked, reader).and_then(|(p, pn)| masking(graph, uses, pn, p).map(|m| (p, m)))
    {
        // The mask must not widen the scores: the masked scores keep their shape.
        let shape = &graph.fact(masked).shape;
        if shape.dims().is_none() || *shape != graph.fact(scores).shape {
            return None;
        }
        (scaled, mask, mask_input) = (scores, kind, Some(input));
        nodes.push(p);
        reader = p;
    }

    // the scale, if any
    let mut scores = scaled;
    let mut scale = 1.0;
    if let Some((p, (unscaled, factor))) =
        producer(graph, uses, scaled, reader).and_then(|(p, pn)| scaling(graph, pn).map(|s| (p, s)))
    {
        (scores, scale) = (unscaled, factor);
        nodes.push(p);
        reader = p;
    }

    // MatMul(q, kᵀ)
    let (product, product_node) = producer(graph, uses, scores, reader)?;
    let (q, keys) = plain_matmul(product_node)?;
    nodes.push(product);

    // kᵀ made by swapping k's last two axes: read k itself.
    let (k, keys_transposed, k_reader) = match producer(graph, uses, keys, product) {
        Some((t, tn)) if swaps_last_two(tn) => {
            nodes.push(t);
            (tn.inputs[0]?, false, t)
        }
        _ => (keys, true, product),
    };
    let layout = AttentionLayout::HeadMajor;
    let chain =
        Chain { q, k, v, mask_input, attrs: AttentionAttrs { scale, keys_transposed, mask, layout }, nodes, last };
    Some(token_major(graph, uses, &chain, [product, k_reader, last]).unwrap_or(chain))
}

/// The chain reading q, k and v before the `Transpose(perm = [0, 2, 1, 3])` that
/// makes them head-major (for k, `[0, 2, 3, 1]`, which makes kᵀ) and writing its
/// result where the same Transpose after it would, when all four Transposes are
/// there and private to the chain: the fused node then reads and writes the
/// projections' own layout, and those four copies disappear.
///
/// `readers` are the chain's nodes that read q, k and v.
fn token_major(graph: &Graph, uses: &Uses, chain: &Chain, readers: [usize; 3]) -> Option<Chain> {
    const HEADS_OUT: [usize; 4] = [0, 2, 1, 3];
    const KEYS_TRANSPOSED_OUT: [usize; 4] = [0, 2, 3, 1];
    let transposed_from = |value: ValueId, reader: usize, perm: [usize; 4]| {
        let (t, node) = producer(graph, uses, value, reader)?;
        Some((t, transpose_input(node, &perm)?))
    };
    let [q_reader, k_reader, v_reader] = readers;
    let (tq, q) = transposed_from(chain.q, q_reader, HEADS_OUT)?;
    let k_perm = if chain.attrs.keys_transposed { KEYS_TRANSPOSED_OUT } else { HEADS_OUT };
    let (tk, k) = transposed_from(chain.k, k_reader, k_perm)?;
    let (tv, v) = transposed_from(chain.v, v_reader, HEADS_OUT)?;
    let [out] = graph.nodes[chain.last].outputs[..] else { return None };
    let tout = uses.only_reader(out)?;
    transpose_input(&graph.nodes[tout], &HEADS_OUT)?;
    let mut nodes = chain.nodes.clone();
    nodes.extend([tq, tk, tv, tout]);
    let attrs = AttentionAttrs { keys_transposed: false, layout: AttentionLayout::TokenMajor, ..chain.attrs.clone() };
    Some(Chain { q, k, v, mask_input: chain.mask_input, attrs, nodes, last: tout })
}

/// The node computing `value`, if `reader` is its only reader and it has one output.
fn producer<'g>(graph: &'g Graph, uses: &Uses, value: ValueId, reader: usize) -> Option<(usize, &'g Node)> {
    let p = uses.private_producer(value, reader)?;
    let node = &graph.nodes[p];
    (node.outputs.len() == 1).then_some((p, node))
}

/// `MatMul(a, b)` without a fused bias or activation.
fn plain_matmul(node: &Node) -> Option<(ValueId, ValueId)> {
    match (&node.op, &node.inputs[..]) {
        (Op::MatMul { activation: None }, [Some(a), Some(b)]) => Some((*a, *b)),
        _ => None,
    }
}

/// A masking node `index` before the softmax: `Add(scores, mask)` (either order;
/// the scores are the operand with a private producer) or `Where(keep, scores,
/// fill)`. Returns the scores, the mask kind and the mask input.
fn masking(graph: &Graph, uses: &Uses, node: &Node, index: usize) -> Option<(ValueId, AttentionMask, ValueId)> {
    match (&node.op, &node.inputs[..]) {
        (Op::Binary(BinaryOp::Add), [Some(a), Some(b)]) => {
            // The scores come from the chain: the operand this Add alone reads.
            let from_chain = |v: ValueId| uses.private_producer(v, index).is_some();
            let (scores, mask) = if from_chain(*a) { (*a, *b) } else { (*b, *a) };
            (from_chain(scores) && graph.fact(mask).dtype == DType::F32).then_some((scores, AttentionMask::Add, mask))
        }
        (Op::Where, [Some(keep), Some(scores), Some(fill)]) => {
            let fill = graph.constant(*fill).and_then(|t| single_f32(t))?;
            (graph.fact(*keep).dtype == DType::Bool).then_some((*scores, AttentionMask::Select { fill }, *keep))
        }
        _ => None,
    }
}

/// `Div(scores, c)` or `Mul(scores, c)` (either order) with a one-element constant
/// `c`: the scores and the factor that multiplies them.
fn scaling(graph: &Graph, node: &Node) -> Option<(ValueId, f32)> {
    let constant = |v: ValueId| graph.constant(v).and_then(|t| single_f32(t));
    match (&node.op, &node.inputs[..]) {
        (Op::Binary(BinaryOp::Div), [Some(s), Some(c)]) => constant(*c).filter(|&c| c != 0.0).map(|c| (*s, 1.0 / c)),
        (Op::Binary(BinaryOp::Mul), [Some(a), Some(b)]) => match (constant(*a), constant(*b)) {
            (_, Some(c)) => Some((*a, c)),
            (Some(c), None) => Some((*b, c)),
            (None, None) => None,
        },
        _ => None,
    }
}

/// The input of `node` when it is a Transpose by exactly `perm`.
fn transpose_input(node: &Node, perm: &[usize]) -> Option<ValueId> {
    match (&node.op, &node.inputs[..]) {
        (Op::Transpose { perm: Some(p) }, [Some(input)]) if p[..] == *perm => Some(*input),
        _ => None,
    }
}

/// A Transpose that exchanges the last two axes and keeps the others in place.
fn swaps_last_two(node: &Node) -> bool {
    let (Op::Transpose { perm: Some(perm) }, [Some(_)]) = (&node.op, &node.inputs[..]) else { return false };
    match perm[..] {
        [ref leading @ .., a, b] => {
            leading.iter().enumerate().all(|(i, &p)| p == i) && a == perm.len() - 1 && b == a - 1
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
