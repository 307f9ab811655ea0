//! Constant folding: nodes whose inputs are all constants are evaluated now, and
//! shape arithmetic is folded as far as the shape facts allow.

mod dims;

use crate::{ConstEval, PassError, Patch};
use dims::{DimsValue, Operand};
use smelt_ir::{Graph, Node, Op, Shape, Tensor, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

/// Default for [`fold_constants`]'s `max_bytes`: large enough for any weight
/// transform worth doing ahead of time, small enough that an `Expand` or
/// `ConstantOfShape` to activation size stays a node computed at run time.
pub const DEFAULT_MAX_FOLDED_BYTES: usize = 16 << 20;

/// What one [`fold_constants`] call did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FoldOutcome {
    /// Nodes replaced by the constants the evaluator computed.
    pub evaluated: usize,
    /// Nodes replaced by constants the facts already determine: shape arithmetic
    /// on fixed dims, and outputs that shape inference proved constant.
    pub from_facts: usize,
    /// Nodes left alone because an output would exceed `max_bytes`.
    pub too_large: usize,
    /// Nodes with constant inputs that could not be evaluated, with the reason.
    pub failures: Vec<String>,
}

impl FoldOutcome {
    pub fn folded(&self) -> usize {
        self.evaluated + self.from_facts
    }
}

/// Replaces nodes that can be computed at compile time by constants.
///
/// A node is folded when all its inputs are constants and `eval` computes outputs of
/// at most `max_bytes` each, or when it is shape arithmetic (`Shape`, `Size`, and
/// `Gather`/`Unsqueeze`/`Squeeze`/`Concat`/`Slice`/`Cast`/`Identity` on their
/// results) whose every element the shape facts fix. Nodes are visited in order, so
/// whole chains fold in one call. The folded outputs keep their ids and names and
/// get exact facts.
pub fn fold_constants(graph: &mut Graph, eval: &dyn ConstEval, max_bytes: usize) -> Result<FoldOutcome, PassError> {
    let mut patch = Patch::new("constant folding", graph);
    let mut outcome = FoldOutcome::default();
    let mut constants: Vec<Option<Arc<Tensor>>> = graph.values.iter().map(|v| v.fact.constant.clone()).collect();
    // Partial knowledge of shape-like values that are not (yet) constants.
    let mut partial: HashMap<ValueId, DimsValue> = HashMap::new();
    let consumers = graph.consumers();

    for (index, node) in graph.nodes.iter().enumerate() {
        let mut failure = None;
        let mut folded = already_constant(node, &constants);
        if folded.is_some() {
            outcome.from_facts += 1;
        } else if inputs_constant(node, &constants) {
            let limit = if is_weight_relayout(graph, &consumers, node) { usize::MAX } else { max_bytes };
            match evaluate(graph, node, &constants, eval, limit) {
                Ok(outputs) => {
                    folded = Some(outputs);
                    outcome.evaluated += 1;
                }
                Err(Unfolded::TooLarge) => outcome.too_large += 1,
                Err(Unfolded::Failed(reason)) => failure = Some(reason),
            }
        }
        if folded.is_none() {
            if let Some(known) = shape_arithmetic(graph, node, &constants, &partial) {
                match known.to_tensor() {
                    Some(tensor) => {
                        folded = Some(vec![Arc::new(tensor)]);
                        outcome.from_facts += 1;
                    }
                    None => {
                        partial.insert(node.outputs[0], known);
                    }
                }
            }
        }

        match folded {
            Some(outputs) => {
                for (&value, tensor) in node.outputs.iter().zip(outputs) {
                    constants[value] = Some(tensor.clone());
                    patch.set_constant(value, tensor);
                }
                patch.remove_node(index);
            }
            None => {
                if let Some(reason) = failure {
                    outcome.failures.push(format!("node '{}' ({}): {reason}", node.name, node.op.name()));
                }
            }
        }
    }
    if !patch.is_empty() {
        patch.apply(graph)?;
    }
    Ok(outcome)
}

/// Whether `node` transposes a constant that only matrix products read as their
/// weight (`B`): such a node is folded whatever its size, because the product's
/// kernel packs its constant weight once at compile time, while left as a node the
/// transpose (and the packing of its result) would run on every inference. A tied
/// language-model head (`x · Transpose(embeddings)`) is the case this is for.
fn is_weight_relayout(graph: &Graph, consumers: &[Vec<usize>], node: &Node) -> bool {
    let [output] = node.outputs[..] else { return false };
    let readers = &consumers[output];
    matches!(node.op, Op::Transpose { .. })
        && !graph.outputs.contains(&output)
        && !readers.is_empty()
        && readers.iter().all(|&r| {
            let reader = &graph.nodes[r];
            matches!(reader.op, Op::MatMul { .. } | Op::Gemm { .. })
                && reader.inputs.iter().position(|&v| v == Some(output)) == Some(1)
                && reader.inputs.iter().filter(|&&v| v == Some(output)).count() == 1
        })
}

enum Unfolded {
    TooLarge,
    Failed(String),
}

/// Outputs that shape inference already proved constant: the node is redundant.
fn already_constant(node: &Node, constants: &[Option<Arc<Tensor>>]) -> Option<Vec<Arc<Tensor>>> {
    if node.outputs.is_empty() {
        return None;
    }
    node.outputs.iter().map(|&o| constants[o].clone()).collect()
}

fn inputs_constant(node: &Node, constants: &[Option<Arc<Tensor>>]) -> bool {
    node.inputs.iter().flatten().all(|&v| constants[v].is_some())
}

fn evaluate(
    graph: &Graph,
    node: &Node,
    constants: &[Option<Arc<Tensor>>],
    eval: &dyn ConstEval,
    max_bytes: usize,
) -> Result<Vec<Arc<Tensor>>, Unfolded> {
    let inputs: Vec<Option<&Tensor>> = node.inputs.iter().map(|v| v.and_then(|v| constants[v].as_deref())).collect();
    // Ops whose output size comes from input *values* are checked before evaluating:
    // a ConstantOfShape of [65536, 65536] must not be allocated just to be refused.
    if predicted_bytes(&node.op, &inputs).is_some_and(|bytes| bytes > max_bytes) {
        return Err(Unfolded::TooLarge);
    }
    let outputs = eval.eval(&node.op, &inputs, node.outputs.len()).map_err(Unfolded::Failed)?;
    if outputs.len() != node.outputs.len() {
        return Err(Unfolded::Failed(format!(
            "the evaluator returned {} outputs for a node with {}",
            outputs.len(),
            node.outputs.len()
        )));
    }
    if outputs.iter().any(|t| t.bytes().len() > max_bytes) {
        return Err(Unfolded::TooLarge);
    }
    for (tensor, &value) in outputs.iter().zip(&node.outputs) {
        let fact = graph.fact(value);
        if !fact.shape.admits(tensor.shape()) {
            return Err(Unfolded::Failed(format!(
                "evaluated '{}' has shape {:?}, but its fact says {}",
                graph.name(value),
                tensor.shape(),
                fact.shape
            )));
        }
    }
    Ok(outputs.into_iter().map(Arc::new).collect())
}

/// Output bytes of ops whose output size is set by their inputs' values, saturating
/// on overflow; `None` for other ops (checked after evaluation) and invalid inputs
/// (the evaluator reports those).
fn predicted_bytes(op: &Op, inputs: &[Option<&Tensor>]) -> Option<usize> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let (elements, element_size) = match op {
        Op::ConstantOfShape { value } => (product(input(0)?.to_i64_vec())?, value.dtype().size()),
        Op::Expand => {
            let data = input(0)?;
            let target = input(1)?.to_i64_vec();
            let rank = data.rank().max(target.len());
            let dim = |shape: &[i64], axis: usize| {
                let offset = rank - shape.len();
                if axis < offset {
                    1
                } else {
                    shape[axis - offset]
                }
            };
            let data_shape: Vec<i64> = data.shape().iter().map(|&d| d as i64).collect();
            let out = (0..rank).map(|axis| dim(&data_shape, axis).max(dim(&target, axis)));
            (product(out)?, data.dtype().size())
        }
        Op::Tile => {
            let data = input(0)?;
            let repeats = product(input(1)?.to_i64_vec())?;
            (data.len().saturating_mul(repeats), data.dtype().size())
        }
        Op::Range => {
            let [start, limit, delta] = [input(0)?, input(1)?, input(2)?].map(|t| t.to_f64_vec());
            let (start, limit, delta) = (*start.first()?, *limit.first()?, *delta.first()?);
            let count = ((limit - start) / delta).ceil();
            if !count.is_finite() {
                return None;
            }
            (count.max(0.0) as usize, input(0)?.dtype().size())
        }
        _ => return None,
    };
    Some(elements.saturating_mul(element_size))
}

/// Product of sizes, saturating; `None` if any is negative.
fn product(sizes: impl IntoIterator<Item = i64>) -> Option<usize> {
    sizes.into_iter().try_fold(1usize, |acc, d| usize::try_from(d).ok().map(|d| acc.saturating_mul(d)))
}

/// What shape facts say about the output of a shape-arithmetic node.
fn shape_arithmetic(
    graph: &Graph,
    node: &Node,
    constants: &[Option<Arc<Tensor>>],
    partial: &HashMap<ValueId, DimsValue>,
) -> Option<DimsValue> {
    let relevant = matches!(
        node.op,
        Op::Shape { .. }
            | Op::Size
            | Op::Identity
            | Op::Cast { .. }
            | Op::Gather { .. }
            | Op::Unsqueeze
            | Op::Squeeze
            | Op::Concat { .. }
            | Op::Slice
    );
    if !relevant || node.outputs.len() != 1 {
        return None;
    }
    let operand = |input: Option<ValueId>| {
        let Some(v) = input else { return Operand::Absent };
        let known = match &constants[v] {
            Some(tensor) => DimsValue::from_constant(tensor),
            None => partial.get(&v).cloned().or_else(|| DimsValue::from_fact(graph.fact(v))),
        };
        known.map_or(Operand::Opaque, Operand::Known)
    };
    let inputs: Vec<Operand> = node.inputs.iter().map(|&v| operand(v)).collect();
    let first_shape = node.inputs.first().copied().flatten().map(|v| match &constants[v] {
        Some(tensor) => Shape::fixed(tensor.shape()),
        None => graph.fact(v).shape.clone(),
    });
    dims::propagate(&node.op, &inputs, first_shape.as_ref())
}

#[cfg(test)]
mod tests;
