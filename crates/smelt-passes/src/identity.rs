//! Removal of nodes that pass their input through: Identity, and inference-mode
//! Dropout whose mask nobody reads.

use crate::uses::Uses;
use crate::{PassError, Patch};
use smelt_ir::{Graph, Op, ValueId};
use std::collections::{HashMap, HashSet};

/// Removes pass-through nodes, making their readers read the input directly.
/// Returns how many nodes were removed.
///
/// When the node's output is a graph output, its input is renamed to the output's
/// name instead; that is impossible when the input is a graph input or output
/// itself (`Identity(x) → y` where both are names the caller uses), and such nodes
/// stay.
pub fn remove_identities(graph: &mut Graph) -> Result<usize, PassError> {
    let uses = Uses::new(graph);
    let mut patch = Patch::new("identity removal", graph);
    // Where each removed node's output now comes from, so a chain of pass-through
    // nodes is judged by the value at its start.
    let mut source: HashMap<ValueId, ValueId> = HashMap::new();
    // Values already renamed to a graph output's name in this patch.
    let mut renamed: HashSet<ValueId> = HashSet::new();
    let mut removed = 0;

    for (index, node) in graph.nodes.iter().enumerate() {
        let passes_through = match node.op {
            Op::Identity => true,
            // Inference-mode Dropout copies its input; it can go if the mask is unread.
            Op::Dropout => node.outputs[1..].iter().all(|&mask| !uses.is_used(mask)),
            _ => false,
        };
        let (Some(&Some(input)), Some(&output)) = (node.inputs.first(), node.outputs.first()) else {
            continue;
        };
        if !passes_through {
            continue;
        }
        let origin = source.get(&input).copied().unwrap_or(input);
        if uses.is_output(output) {
            let has_callers_name = uses.is_input(origin) || uses.is_output(origin);
            if has_callers_name || !renamed.insert(origin) {
                continue;
            }
        }
        patch.remove_node(index);
        patch.redirect(output, input);
        source.insert(output, origin);
        removed += 1;
    }
    if removed > 0 {
        patch.apply(graph)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::{DType, Fact, Shape, UnaryOp};

    fn fact() -> Fact {
        Fact::new(DType::F32, Shape::fixed(&[3]))
    }

    #[test]
    fn identity_chain_into_an_output_renames_the_producer() {
        let mut g = Graph::new(17);
        let [x, a, b, y] = ["x", "a", "b", "y"].map(|n| g.add_value(n, fact()));
        g.inputs.push(x);
        g.outputs.push(y);
        g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(x)], vec![a]);
        g.add_node("id1", Op::Identity, vec![Some(a)], vec![b]);
        g.add_node("id2", Op::Identity, vec![Some(b)], vec![y]);

        assert_eq!(remove_identities(&mut g).unwrap(), 2);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].outputs, vec![a]);
        assert_eq!(g.outputs, vec![a]);
        assert_eq!(g.name(a), "y");
    }

    #[test]
    fn identity_from_an_input_to_an_output_stays() {
        let mut g = Graph::new(17);
        let [x, a, y] = ["x", "a", "y"].map(|n| g.add_value(n, fact()));
        g.inputs.push(x);
        g.outputs.push(y);
        g.add_node("id1", Op::Identity, vec![Some(x)], vec![a]);
        g.add_node("id2", Op::Identity, vec![Some(a)], vec![y]);

        assert_eq!(remove_identities(&mut g).unwrap(), 1);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].inputs, vec![Some(x)]);
        assert_eq!(g.nodes[0].outputs, vec![y]);
        assert_eq!(g.name(y), "y");
        assert_eq!(remove_identities(&mut g).unwrap(), 0);
    }

    #[test]
    fn two_outputs_of_one_value_keep_one_identity() {
        let mut g = Graph::new(17);
        let [x, a, y1, y2] = ["x", "a", "y1", "y2"].map(|n| g.add_value(n, fact()));
        g.inputs.push(x);
        g.outputs.extend([y1, y2]);
        g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(x)], vec![a]);
        g.add_node("id1", Op::Identity, vec![Some(a)], vec![y1]);
        g.add_node("id2", Op::Identity, vec![Some(a)], vec![y2]);

        assert_eq!(remove_identities(&mut g).unwrap(), 1);
        assert_eq!(remove_identities(&mut g).unwrap(), 0);
        let outputs: Vec<_> = g.outputs.iter().map(|&o| g.name(o)).collect();
        assert_eq!(outputs, ["y1", "y2"]);
        assert_eq!(g.nodes.len(), 2);
    }

    #[test]
    fn dropout_goes_only_when_its_mask_is_unread() {
        let mut g = Graph::new(17);
        let [x, a, mask, b, mask2, y, z] = ["x", "a", "mask", "b", "mask2", "y", "z"].map(|n| g.add_value(n, fact()));
        g.inputs.push(x);
        g.outputs.extend([y, z]);
        g.add_node("drop1", Op::Dropout, vec![Some(x)], vec![a, mask]);
        g.add_node("drop2", Op::Dropout, vec![Some(a)], vec![b, mask2]);
        g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(b)], vec![y]);
        g.add_node("cast", Op::Cast { to: DType::F32 }, vec![Some(mask2)], vec![z]);

        assert_eq!(remove_identities(&mut g).unwrap(), 1);
        let names: Vec<_> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["drop2", "relu", "cast"]);
        assert_eq!(g.nodes[0].inputs, vec![Some(x)]);
    }
}
