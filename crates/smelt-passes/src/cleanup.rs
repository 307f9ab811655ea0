//! Dropping values nothing refers to, so that folded-away constants free their memory.

use smelt_ir::{Graph, ValueId};

/// Removes values that no node, graph input or graph output refers to, and renumbers
/// the rest (keeping their order). Returns how many were removed.
///
/// Value ids held outside the graph are invalid afterwards; look values up by name.
pub fn prune_values(graph: &mut Graph) -> usize {
    let mut used = vec![false; graph.values.len()];
    let referenced = graph
        .inputs
        .iter()
        .chain(&graph.outputs)
        .chain(graph.input_defaults.keys())
        .chain(graph.nodes.iter().flat_map(|n| n.inputs.iter().flatten().chain(&n.outputs)));
    for &v in referenced {
        used[v] = true;
    }
    let removed = used.iter().filter(|&&u| !u).count();
    if removed == 0 {
        return 0;
    }

    let mut new_id: Vec<Option<ValueId>> = vec![None; graph.values.len()];
    let mut next = 0;
    for (old, &keep) in used.iter().enumerate() {
        if keep {
            new_id[old] = Some(next);
            next += 1;
        }
    }
    let remap = |v: &mut ValueId| *v = new_id[*v].expect("every referenced value is kept");

    let mut keep = used.iter();
    graph.values.retain(|_| *keep.next().expect("one flag per value"));
    graph.inputs.iter_mut().for_each(remap);
    graph.outputs.iter_mut().for_each(remap);
    for node in &mut graph.nodes {
        node.inputs.iter_mut().flatten().for_each(remap);
        node.outputs.iter_mut().for_each(remap);
    }
    graph.input_defaults = std::mem::take(&mut graph.input_defaults)
        .into_iter()
        .map(|(mut v, default)| {
            remap(&mut v);
            (v, default)
        })
        .collect();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::{DType, Fact, Op, Shape, Tensor, UnaryOp};

    #[test]
    fn unused_values_are_dropped_and_ids_renumbered() {
        let mut g = Graph::new(17);
        let fact = Fact::new(DType::F32, Shape::fixed(&[1]));
        let unused_const = g.add_constant("unused", Tensor::scalar(1.0f32));
        let x = g.add_value("x", fact.clone());
        let dangling = g.add_value("dangling", fact.clone());
        let y = g.add_value("y", fact);
        g.inputs.push(x);
        g.outputs.push(y);
        g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(x)], vec![y]);
        g.input_defaults.insert(x, std::sync::Arc::new(Tensor::scalar(0.0f32)));
        let _ = (unused_const, dangling);

        assert_eq!(prune_values(&mut g), 2);
        let names: Vec<_> = g.values.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["x", "y"]);
        assert_eq!(g.inputs, vec![0]);
        assert_eq!(g.outputs, vec![1]);
        assert_eq!(g.nodes[0].inputs, vec![Some(0)]);
        assert_eq!(g.nodes[0].outputs, vec![1]);
        assert!(g.input_defaults.contains_key(&0));
        assert_eq!(prune_values(&mut g), 0);
    }
}
