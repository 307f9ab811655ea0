//! Dead-node removal: nodes whose outputs neither another node nor the caller reads.

use crate::{PassError, Patch};
use smelt_ir::Graph;

/// Removes every node none of whose outputs is read by a live node or is a graph
/// output. Walking backwards removes whole dead chains in one call. Returns how many
/// nodes were removed.
pub fn remove_dead_nodes(graph: &mut Graph) -> Result<usize, PassError> {
    let mut live = vec![false; graph.values.len()];
    for &o in &graph.outputs {
        live[o] = true;
    }
    let mut patch = Patch::new("dead-node removal", graph);
    let mut removed = 0;
    for (index, node) in graph.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|&o| live[o]) {
            for &input in node.inputs.iter().flatten() {
                live[input] = true;
            }
        } else {
            patch.remove_node(index);
            removed += 1;
        }
    }
    if removed > 0 {
        patch.apply(graph)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::{DType, Fact, Op, Shape, UnaryOp};

    #[test]
    fn dead_chains_go_and_partly_read_nodes_stay() {
        let mut g = Graph::new(17);
        let fact = Fact::new(DType::F32, Shape::fixed(&[4]));
        let x = g.add_value("x", fact.clone());
        let [a, b, c, y, values, indices] =
            ["a", "b", "c", "y", "values", "indices"].map(|n| g.add_value(n, fact.clone()));
        g.inputs.push(x);
        g.outputs.push(y);
        // Dead chain: x → a → b.
        g.add_node("dead1", Op::Unary(UnaryOp::Exp), vec![Some(x)], vec![a]);
        g.add_node("dead2", Op::Unary(UnaryOp::Neg), vec![Some(a)], vec![b]);
        // A two-output node with only one output read stays.
        let k = g.add_constant("k", smelt_ir::Tensor::from_vec(&[1], vec![2i64]).unwrap());
        g.add_node(
            "topk",
            Op::TopK { axis: -1, largest: true, sorted: true },
            vec![Some(x), Some(k)],
            vec![values, indices],
        );
        g.add_node("live", Op::Unary(UnaryOp::Relu), vec![Some(values)], vec![c]);
        g.add_node("out", Op::Unary(UnaryOp::Abs), vec![Some(c)], vec![y]);

        assert_eq!(remove_dead_nodes(&mut g).unwrap(), 2);
        let names: Vec<_> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["topk", "live", "out"]);
        assert_eq!(remove_dead_nodes(&mut g).unwrap(), 0);
    }
}
