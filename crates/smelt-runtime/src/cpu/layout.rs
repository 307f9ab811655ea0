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
        let lifetime = |v: usize, size: usize| {
            let (first, last) = lifetimes[v].expect("arena value");
            BufferLifetime { size, first_use: first, last_use: last }
        };
        let arena_values: Vec<usize> = (0..graph.values.len()).filter(|&v| lifetimes[v].is_some()).collect();
        let unplanned_bytes = arena_values.iter().map(|&v| full_bytes(v).next_multiple_of(ARENA_ALIGNMENT)).sum();
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
        Ok(Layout { shapes, ranges, arena_bytes: plan.peak_bytes, unplanned_bytes, split })
    }
}
