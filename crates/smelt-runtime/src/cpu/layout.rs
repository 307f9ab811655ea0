//! Resolving every value's concrete shape for one set of input shapes, and placing
//! the intermediates in one arena by lifetime.

use super::batch_split::{BatchSplit, SplitSetting};
use crate::{Result, RuntimeError};
use smelt_ir::{infer, Fact, Graph, Op, Shape, TensorView};
use smelt_passes::memory::{lifetimes, plan_memory, BufferLifetime, MemoryPlan, ARENA_ALIGNMENT};
use std::sync::Arc;

/// Which nodes must be evaluated on the host while resolving shapes.
pub struct ShapeDependence {
    /// `value_needed[v]`: v's *contents* decide some output shape (Reshape's shape
    /// input and what it is computed from).
    value_needed: Vec<bool>,
    /// Shapes depend on the values of graph inputs, so no layout can be reused.
    pub data_dependent: bool,
}

impl ShapeDependence {
    pub fn analyse(graph: &Graph) -> ShapeDependence {
        let mut value_needed = vec![false; graph.values.len()];
        for node in &graph.nodes {
            for &k in node.op.shape_inputs() {
                if let Some(Some(v)) = node.inputs.get(k) {
                    value_needed[*v] = true;
                }
            }
        }
        // Walk backwards: a node producing a needed value needs its inputs' values,
        // except Shape and Size, which read only their input's shape.
        for node in graph.nodes.iter().rev() {
            let needed = node.outputs.iter().any(|&o| value_needed[o]);
            if needed && !matches!(node.op, Op::Shape { .. } | Op::Size) {
                for &v in node.inputs.iter().flatten() {
                    value_needed[v] = true;
                }
            }
        }
        let data_dependent = graph.inputs.iter().any(|&v| value_needed[v]);
        ShapeDependence { value_needed, data_dependent }
    }
}

/// Concrete shapes and arena placement for one set of input shapes.
pub struct Layout {
    pub shapes: Vec<Vec<usize>>,
    /// Byte offset and length of each arena value (unused for inputs and constants).
    ranges: Vec<(usize, usize)>,
    pub arena_bytes: usize,
    /// What the intermediates would take unplanned (one buffer each).
    pub unplanned_bytes: usize,
    /// Runs of nodes executed a chunk of the batch at a time.
    pub split: BatchSplit,
    /// Nodes not run: their output shares its input's bytes (see [`Aliases`]).
    pub skipped: Vec<bool>,
}

impl Layout {
    /// Byte offset and length of arena value `v`: the whole value, or one
    /// chunk's for a value only its segment uses.
    pub fn range(&self, v: usize) -> (usize, usize) {
        self.ranges[v]
    }

    /// Walks the graph once with shape inference, evaluating on the host only the
    /// small nodes whose values decide shapes, and plans its batch split.
    pub fn resolve(graph: &Graph, dep: &ShapeDependence, inputs: &[TensorView], split: SplitSetting) -> Result<Layout> {
        let mut facts: Vec<Option<Fact>> =
            graph.values.iter().map(|v| v.fact.constant.as_ref().map(|_| v.fact.clone())).collect();
        for (k, &v) in graph.inputs.iter().enumerate() {
            let t = &inputs[k];
            let mut fact = Fact::new(t.dtype, Shape::fixed(t.shape));
            if dep.value_needed[v] {
                fact.constant = Some(Arc::new(t.to_owned()));
            }
            facts[v] = Some(fact);
        }
        for node in &graph.nodes {
            let node_err =
                |message: String| RuntimeError::Node { node: node.name.clone(), op: node.op.name(), message };
            let ins: Vec<Option<&Fact>> = node.inputs.iter().map(|v| v.and_then(|v| facts[v].as_ref())).collect();
            let mut outs = infer::infer(&node.op, &ins, node.outputs.len()).map_err(node_err)?;
            for (f, &o) in outs.iter().zip(&node.outputs) {
                if f.shape.as_fixed().is_none() {
                    return Err(node_err(format!(
                        "cannot determine the shape of '{}' (got {}) for these input shapes",
                        graph.name(o),
                        f.shape
                    )));
                }
            }
            let needs_values = node.outputs.iter().any(|&o| dep.value_needed[o]);
            if needs_values && outs.iter().any(|f| f.constant.is_none()) {
                let tensors: Option<Vec<Option<&smelt_ir::Tensor>>> = node
                    .inputs
                    .iter()
                    .map(|v| match v {
                        None => Some(None),
                        Some(v) => facts[*v].as_ref().and_then(|f| f.constant.as_deref()).map(Some),
                    })
                    .collect();
                let tensors = tensors.ok_or_else(|| {
                    node_err("an input whose value decides a shape is not known while planning".to_string())
                })?;
                let values = smelt_cpu::eval_alloc(&node.op, &tensors, node.outputs.len())
                    .map_err(|e| node_err(e.to_string()))?;
                for (f, t) in outs.iter_mut().zip(values) {
                    f.constant = Some(Arc::new(t));
                }
            }
            for (f, &o) in outs.into_iter().zip(&node.outputs) {
                facts[o] = Some(f);
            }
        }

        let shapes: Vec<Vec<usize>> =
            facts.iter().map(|f| f.as_ref().and_then(|f| f.shape.as_fixed()).unwrap_or_default()).collect();
        let split = BatchSplit::plan(graph, &shapes, split);
        let mut lifetimes = lifetimes(graph);
        // Every chunk of a segment reads and writes the values it touches, so
        // they hold their bytes from the segment's start to its end.
        for segment in &split.segments {
            let touched =
                graph.nodes[segment.nodes.clone()].iter().flat_map(|n| n.inputs.iter().flatten().chain(&n.outputs));
            for &v in touched {
                if let (Some((first, last)), None) = (&mut lifetimes[v], split.region[v]) {
                    *first = (*first).min(segment.nodes.start);
                    *last = (*last).max(segment.nodes.end - 1);
                }
            }
        }
        let full_bytes = |v: usize| smelt_ir::num_elements(&shapes[v]) * graph.values[v].fact.dtype.size();
        let unplanned_bytes = (0..graph.values.len())
            .filter(|&v| lifetimes[v].is_some())
            .map(|v| full_bytes(v).next_multiple_of(ARENA_ALIGNMENT))
            .sum();
        let aliases = Aliases::plan(graph, &mut lifetimes, &split);
        let lifetime = |v: usize, size: usize| {
            let (first, last) = lifetimes[v].expect("arena value");
            BufferLifetime { size, first_use: first, last_use: last }
        };
        let arena_values: Vec<usize> = (0..graph.values.len()).filter(|&v| lifetimes[v].is_some()).collect();
        // Each segment's own values, at chunk size, in one region of the arena
        // that lives as long as the segment.
        let regions: Vec<(Vec<usize>, MemoryPlan)> = (0..split.segments.len())
            .map(|k| {
                let values: Vec<usize> = arena_values.iter().copied().filter(|&v| split.region[v] == Some(k)).collect();
                let chunk_len = |v: usize| split.views[v].as_ref().expect("region values are sliced").len;
                let buffers: Vec<BufferLifetime> = values.iter().map(|&v| lifetime(v, chunk_len(v))).collect();
                (values, plan_memory(&buffers))
            })
            .collect();
        let whole: Vec<usize> = arena_values.iter().copied().filter(|&v| split.region[v].is_none()).collect();
        let mut buffers: Vec<BufferLifetime> = whole.iter().map(|&v| lifetime(v, full_bytes(v))).collect();
        for (segment, (_, region)) in split.segments.iter().zip(&regions) {
            let (first_use, last_use) = (segment.nodes.start, segment.nodes.end - 1);
            buffers.push(BufferLifetime { size: region.peak_bytes, first_use, last_use });
        }
        let plan = plan_memory(&buffers);
        let mut ranges = vec![(0, 0); graph.values.len()];
        for (i, &v) in whole.iter().enumerate() {
            ranges[v] = (plan.offsets[i], buffers[i].size);
        }
        for (k, (values, region)) in regions.iter().enumerate() {
            let base = plan.offsets[whole.len() + k];
            for (i, &v) in values.iter().enumerate() {
                ranges[v] = (base + region.offsets[i], split.views[v].as_ref().expect("sliced").len);
            }
        }
        for (y, root) in aliases.root.iter().enumerate() {
            if let Some(root) = *root {
                ranges[y] = ranges[root];
            }
        }
        Ok(Layout { shapes, ranges, arena_bytes: plan.peak_bytes, unplanned_bytes, split, skipped: aliases.skipped })
    }
}

/// Values that are another value's bytes under a new shape. Reshape, Flatten,
/// Squeeze, Unsqueeze and Identity change no byte, so where both their data
/// input and their output are whole arena values, the output is placed on the
/// input's bytes and the node does nothing at run time: no copy (BERT-base at
/// batch 8 copied 2.4 ms a run through its 48 Reshapes).
struct Aliases {
    /// For each value placed on another's bytes, the value that owns them.
    root: Vec<Option<usize>>,
    /// By node: its output is an alias, so it is not run.
    skipped: Vec<bool>,
}

impl Aliases {
    /// Finds the aliases and gives each owner the lifetime of all its aliases,
    /// taking theirs out of `lifetimes` (they need no bytes of their own).
    /// Values a batch-split segment touches are left alone: they are sliced.
    fn plan(graph: &Graph, lifetimes: &mut [Option<(usize, usize)>], split: &BatchSplit) -> Aliases {
        let mut root = vec![None; graph.values.len()];
        let mut skipped = vec![false; graph.nodes.len()];
        let whole = |v: usize| split.views[v].is_none() && split.region[v].is_none();
        for (index, node) in graph.nodes.iter().enumerate() {
            let same_bytes =
                matches!(node.op, Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze | Op::Unsqueeze | Op::Identity);
            let (Some(Some(x)), [y]) = (node.inputs.first().copied(), node.outputs.as_slice()) else { continue };
            let y = *y;
            if !same_bytes || !whole(x) || !whole(y) {
                continue;
            }
            let owner = root[x].unwrap_or(x);
            let (Some((first, last)), Some((_, y_last))) = (lifetimes[owner], lifetimes[y]) else { continue };
            lifetimes[owner] = Some((first, last.max(y_last)));
            lifetimes[y] = None;
            root[y] = Some(owner);
            skipped[index] = true;
        }
        Aliases { root, skipped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::{DType, Tensor, UnaryOp};

    /// x → Tanh (a) → Reshape (b) → Tanh (c) → Unsqueeze (d), then e = d + b:
    /// `b`, on `a`'s bytes, is read again by the last node.
    #[test]
    fn byte_preserving_nodes_alias_their_input() {
        let mut g = Graph::new(17);
        let x = g.add_value("x", Fact::new(DType::F32, Shape::fixed(&[4, 6])));
        g.inputs.push(x);
        let to = g.add_constant("to", Tensor::from_vec(&[2], vec![6i64, 4]).unwrap());
        let axes = g.add_constant("axes", Tensor::from_vec(&[1], vec![0i64]).unwrap());
        let [a, b, c, d, e] =
            ["a", "b", "c", "d", "e"].map(|n| g.add_value(n, Fact::new(DType::F32, Shape::unknown())));
        g.add_node("tanh_a", Op::Unary(UnaryOp::Tanh), vec![Some(x)], vec![a]);
        g.add_node("reshape", Op::Reshape { allowzero: false }, vec![Some(a), Some(to)], vec![b]);
        g.add_node("tanh_c", Op::Unary(UnaryOp::Tanh), vec![Some(b)], vec![c]);
        g.add_node("unsqueeze", Op::Unsqueeze, vec![Some(c), Some(axes)], vec![d]);
        g.add_node("add_e", Op::Binary(smelt_ir::BinaryOp::Add), vec![Some(d), Some(b)], vec![e]);
        g.outputs.push(e);
        let input = Tensor::from_vec(&[4, 6], vec![0.5f32; 24]).unwrap();
        let layout = Layout::resolve(&g, &ShapeDependence::analyse(&g), &[input.view()], SplitSetting::Off).unwrap();
        assert_eq!(layout.skipped, [false, true, false, true, false]);
        assert_eq!(layout.range(b), layout.range(a));
        assert_eq!(layout.range(d), layout.range(c));
        assert_eq!(layout.shapes[d], [1, 6, 4]);
        // `b` is read by the last node, so nothing else may take `a`'s bytes
        // before then: the owners a and c and the output e are all live there.
        let disjoint = |p: (usize, usize), q: (usize, usize)| p.0 + p.1 <= q.0 || q.0 + q.1 <= p.0;
        assert!(disjoint(layout.range(a), layout.range(c)));
        assert!(disjoint(layout.range(a), layout.range(e)));
        assert!(disjoint(layout.range(c), layout.range(e)));
    }
}
