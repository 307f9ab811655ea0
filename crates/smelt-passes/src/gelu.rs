//! GELU fusion: exporters spell GELU out as five to eight elementwise nodes; this
//! pass turns each such chain into one `Gelu` node, which epilogue fusion then
//! folds into the MatMul that feeds it. Two forms are recognised:
//!
//! - erf (BERT): `x * (1 + erf(x / √2)) * 0.5`, with `x / √2` also written
//!   `x * (1/√2)`;
//! - tanh (GPT-2's `gelu_new`): `0.5 * x * (1 + tanh(√(2/π) * (x + 0.044715 * x³)))`
//!   with `x³` written `Pow(x, 3)`.
//!
//! The final product may be grouped any way: `(x * u) * 0.5`, `(u * x) * 0.5`,
//! `(0.5 * x) * u`, `(x * 0.5) * u`, where `u` is the `1 + erf/tanh` term. Every
//! node of the chain except `x` must be read only inside the chain, so nothing
//! computed by the replaced nodes is lost.

use crate::consts::single_f32;
use crate::uses::Uses;
use crate::{PassError, Patch};
use smelt_ir::{BinaryOp, Graph, Node, Op, UnaryOp, ValueId};

/// Replaces decomposed GELU chains by `Gelu` nodes; returns how many.
pub fn fuse_gelu(graph: &mut Graph) -> Result<usize, PassError> {
    let uses = Uses::new(graph);
    let mut patch = Patch::new("GELU fusion", graph);
    let mut fused = 0;
    for (index, node) in graph.nodes.iter().enumerate() {
        let found = match node.op {
            Op::Unary(UnaryOp::Erf) => match_erf_form(graph, &uses, index),
            Op::Unary(UnaryOp::Tanh) => match_tanh_form(graph, &uses, index),
            _ => None,
        };
        let Some(chain) = found else { continue };
        if chain.nodes.iter().any(|&n| patch.touches(n)) || !graph.fact(chain.x).dtype.is_float() {
            continue;
        }
        let gelu = Op::Unary(UnaryOp::Gelu { tanh: chain.tanh });
        patch.replace_chain(graph, &chain.nodes, chain.last, gelu, vec![Some(chain.x)]);
        fused += 1;
    }
    if !patch.is_empty() {
        patch.apply(graph)?;
    }
    Ok(fused)
}

/// A matched chain: its input, its nodes (the last one writes the GELU's output).
struct Chain {
    x: ValueId,
    nodes: Vec<usize>,
    last: usize,
    tanh: bool,
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const SQRT_2: f32 = std::f32::consts::SQRT_2;
/// √(2/π), the tanh form's scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const CUBIC_COEFFICIENT: f32 = 0.044_715;

/// Whether `value` is a one-element constant equal to `expected` (to float rounding:
/// exporters write these constants in f32 or f64 and may compute them differently).
fn is_constant(graph: &Graph, value: ValueId, expected: f32) -> bool {
    graph.constant(value).and_then(|t| single_f32(t)).is_some_and(|v| (v - expected).abs() <= 1e-5 * expected.abs())
}

/// `node` as `op(a, b)` with both inputs present.
fn binary(node: &Node, op: BinaryOp) -> Option<(ValueId, ValueId)> {
    match (&node.op, &node.inputs[..]) {
        (Op::Binary(kind), [Some(a), Some(b)]) if *kind == op => Some((*a, *b)),
        _ => None,
    }
}

/// For a commutative `op(a, b)`: the operand that is not the constant `c`.
fn other_than_constant(graph: &Graph, node: &Node, op: BinaryOp, c: f32) -> Option<ValueId> {
    let (a, b) = binary(node, op)?;
    if is_constant(graph, b, c) {
        Some(a)
    } else if is_constant(graph, a, c) {
        Some(b)
    } else {
        None
    }
}

/// For a commutative `op(a, b)` where one operand is `known`: the other one.
fn other_than(node: &Node, op: BinaryOp, known: ValueId) -> Option<ValueId> {
    let (a, b) = binary(node, op)?;
    if a == known {
        Some(b)
    } else if b == known {
        Some(a)
    } else {
        None
    }
}

/// The node producing `value`, if `reader` is its only reader.
fn private<'g>(graph: &'g Graph, uses: &Uses, value: ValueId, reader: usize) -> Option<(usize, &'g Node)> {
    let p = uses.private_producer(value, reader)?;
    Some((p, &graph.nodes[p]))
}

/// The one node reading the single output of node `index`.
fn next<'g>(graph: &'g Graph, uses: &Uses, index: usize) -> Option<(usize, &'g Node)> {
    let [out] = graph.nodes[index].outputs[..] else { return None };
    let reader = uses.only_reader(out)?;
    Some((reader, &graph.nodes[reader]))
}

/// `Erf` at `erf`: `x / √2` (or `x * (1/√2)`) before it, `+ 1` after it, then the
/// product with `x` and 0.5.
fn match_erf_form(graph: &Graph, uses: &Uses, erf: usize) -> Option<Chain> {
    let (scale, scale_node) = private(graph, uses, graph.nodes[erf].inputs.first().copied()??, erf)?;
    let x = match binary(scale_node, BinaryOp::Div) {
        Some((x, d)) if is_constant(graph, d, SQRT_2) => x,
        _ => other_than_constant(graph, scale_node, BinaryOp::Mul, FRAC_1_SQRT_2)?,
    };
    let (one_plus, one_plus_node) = next(graph, uses, erf)?;
    other_than_constant(graph, one_plus_node, BinaryOp::Add, 1.0)?;
    let (last, mut nodes) = match_half_x_product(graph, uses, x, one_plus)?;
    nodes.extend([scale, erf, one_plus]);
    Some(Chain { x, nodes, last, tanh: false })
}

/// `Tanh` at `tanh`: `√(2/π) * (x + 0.044715 * Pow(x, 3))` before it, `+ 1` after
/// it, then the product with `x` and 0.5.
fn match_tanh_form(graph: &Graph, uses: &Uses, tanh: usize) -> Option<Chain> {
    let (scale, scale_node) = private(graph, uses, graph.nodes[tanh].inputs.first().copied()??, tanh)?;
    let inner_value = other_than_constant(graph, scale_node, BinaryOp::Mul, SQRT_2_OVER_PI)?;
    let (inner, inner_node) = private(graph, uses, inner_value, scale)?;
    let (a, b) = binary(inner_node, BinaryOp::Add)?;
    // `x + cubic` in either order: the cubic term is the operand made by a Mul.
    let (x, cubic, cube) = [(a, b), (b, a)].into_iter().find_map(|(x, cubic_value)| {
        let (cubic, cubic_node) = private(graph, uses, cubic_value, inner)?;
        let cube_value = other_than_constant(graph, cubic_node, BinaryOp::Mul, CUBIC_COEFFICIENT)?;
        let (cube, cube_node) = private(graph, uses, cube_value, cubic)?;
        match binary(cube_node, BinaryOp::Pow) {
            Some((base, exponent)) if base == x && is_constant(graph, exponent, 3.0) => Some((x, cubic, cube)),
            _ => None,
        }
    })?;
    let (one_plus, one_plus_node) = next(graph, uses, tanh)?;
    other_than_constant(graph, one_plus_node, BinaryOp::Add, 1.0)?;
    let (last, mut nodes) = match_half_x_product(graph, uses, x, one_plus)?;
    nodes.extend([cube, cubic, inner, scale, tanh, one_plus]);
    Some(Chain { x, nodes, last, tanh: true })
}

/// The two Muls that multiply the `1 + erf/tanh` term (output of node `one_plus`)
/// by `x` and by 0.5, in any grouping. Returns the last node and both Mul nodes.
fn match_half_x_product(graph: &Graph, uses: &Uses, x: ValueId, one_plus: usize) -> Option<(usize, Vec<usize>)> {
    let [u] = graph.nodes[one_plus].outputs[..] else { return None };
    let (first, first_node) = next(graph, uses, one_plus)?;
    let partner = other_than(first_node, BinaryOp::Mul, u)?;
    if partner == x {
        // (x * u) * 0.5
        let (second, second_node) = next(graph, uses, first)?;
        other_than_constant(graph, second_node, BinaryOp::Mul, 0.5)?;
        return Some((second, vec![first, second]));
    }
    if is_constant(graph, partner, 0.5) {
        // (0.5 * u) * x
        let (second, second_node) = next(graph, uses, first)?;
        let [half_u] = first_node.outputs[..] else { return None };
        return (other_than(second_node, BinaryOp::Mul, half_u)? == x).then(|| (second, vec![first, second]));
    }
    // (0.5 * x) * u
    let (half, half_node) = private(graph, uses, partner, first)?;
    (other_than_constant(graph, half_node, BinaryOp::Mul, 0.5)? == x).then(|| (first, vec![half, first]))
}

#[cfg(test)]
mod tests;
