//! Where each node of a graph runs on a GPU plan, decided once at compile time.

use smelt_gpu::GpuKernel;
use smelt_ir::{Graph, Op, Tensor, ValueId};
use std::sync::Arc;

/// Where one node runs.
pub enum Placement {
    /// All inputs are constants: evaluated once at compile time on the host; its
    /// outputs are constants from then on.
    Folded,
    /// Depends on input shapes but not input data (shape arithmetic, masks sliced
    /// to the sequence length): evaluated on the host when a new set of input
    /// shapes is first seen, uploaded once for that shape set if the GPU reads it.
    Host,
    /// Output shares its input's device bytes (Reshape, Flatten, Squeeze,
    /// Unsqueeze, Identity, Dropout).
    Alias,
    /// A GPU kernel.
    Gpu(Box<dyn GpuKernel>),
    /// On the CPU: its device inputs are read back, smelt-cpu runs it, and its
    /// outputs are uploaded. `forced`: a GPU kernel exists but the configuration
    /// sends the op to the CPU (`SMELT_GPU_CPU_OPS`).
    Cpu { forced: bool },
}

impl Placement {
    pub fn describe(&self) -> String {
        match self {
            Placement::Folded => "folded at load (constant)".into(),
            Placement::Host => "host, per input-shape set (shape arithmetic)".into(),
            Placement::Alias => "gpu, alias (no copy)".into(),
            Placement::Gpu(k) => format!("gpu ({})", k.name()),
            Placement::Cpu { forced: false } => "cpu (no GPU kernel)".into(),
            Placement::Cpu { forced: true } => "cpu (SMELT_GPU_CPU_OPS)".into(),
        }
    }
}

/// Ops whose output is their first input's bytes under another shape.
pub fn is_alias(op: &Op, n_outputs: usize) -> bool {
    match op {
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze | Op::Unsqueeze | Op::Identity => true,
        Op::Dropout => n_outputs == 1,
        _ => false,
    }
}

/// Graph inputs whose values some shape depends on (axes, pads, `k`, sizes,
/// scales given as inputs rather than constants) may be read on the host at run
/// time when they hold at most this many elements: their values then join the
/// key of the per-shape plans.
pub const MAX_HOST_INPUT_ELEMENTS: usize = 1024;

/// Which values depend on the *data* of graph inputs other than `host_inputs`
/// (as opposed to only their shapes, or nothing): Shape and Size read only shapes.
pub fn data_dependent(graph: &Graph, host_inputs: &[ValueId]) -> Vec<bool> {
    let mut dep = vec![false; graph.values.len()];
    for &v in &graph.inputs {
        dep[v] = !host_inputs.contains(&v);
    }
    for node in &graph.nodes {
        let d = !matches!(node.op, Op::Shape { .. } | Op::Size) && node.inputs.iter().flatten().any(|&v| dep[v]);
        for &o in &node.outputs {
            dep[o] = d;
        }
    }
    dep
}

/// The graph inputs whose data some node's shape-deciding input depends on, when
/// each is small enough (a fixed shape of at most [`MAX_HOST_INPUT_ELEMENTS`]) for
/// the host to read at every run. Larger ones are left out: the model is then
/// refused on the GPU with a message.
pub fn host_read_inputs(graph: &Graph) -> Vec<ValueId> {
    // For each value, the graph inputs (by position) whose data it depends on.
    let mut from: Vec<Vec<usize>> = vec![Vec::new(); graph.values.len()];
    for (k, &v) in graph.inputs.iter().enumerate() {
        from[v].push(k);
    }
    let mut wanted = vec![false; graph.inputs.len()];
    for node in &graph.nodes {
        for &k in node.op.shape_inputs() {
            if let Some(Some(v)) = node.inputs.get(k) {
                for &i in &from[*v] {
                    wanted[i] = true;
                }
            }
        }
        if matches!(node.op, Op::Shape { .. } | Op::Size) {
            continue;
        }
        let mut deps: Vec<usize> = node.inputs.iter().flatten().flat_map(|&v| from[v].iter().copied()).collect();
        deps.sort_unstable();
        deps.dedup();
        for &o in &node.outputs {
            from[o].clone_from(&deps);
        }
    }
    graph
        .inputs
        .iter()
        .enumerate()
        .filter(|&(k, &v)| {
            wanted[k]
                && graph.fact(v).shape.as_fixed().is_some_and(|s| smelt_ir::num_elements(&s) <= MAX_HOST_INPUT_ELEMENTS)
        })
        .map(|(_, &v)| v)
        .collect()
}

/// Values known at compile time: the graph's constants and everything computed
/// from constants alone (evaluated here with the CPU reference).
pub fn fold_constants(graph: &Graph) -> crate::Result<Vec<Option<Arc<Tensor>>>> {
    let mut consts: Vec<Option<Arc<Tensor>>> = graph.values.iter().map(|v| v.fact.constant.clone()).collect();
    for node in &graph.nodes {
        if node.outputs.iter().all(|&o| consts[o].is_some()) {
            continue;
        }
        let inputs: Option<Vec<Option<&Tensor>>> = node
            .inputs
            .iter()
            .map(|v| match v {
                None => Some(None),
                Some(v) => consts[*v].as_deref().map(Some),
            })
            .collect();
        // Shape/Size of a value whose shape is fixed would also fold, but the graph
        // passes already did that.
        let Some(inputs) = inputs else { continue };
        if node.inputs.iter().flatten().next().is_none() {
            continue;
        }
        let outs = smelt_cpu::eval_alloc(&node.op, &inputs, node.outputs.len()).map_err(|e| {
            crate::RuntimeError::Node { node: node.name.clone(), op: node.op.name(), message: e.to_string() }
        })?;
        for (&o, t) in node.outputs.iter().zip(outs) {
            consts[o] = Some(Arc::new(t));
        }
    }
    Ok(consts)
}

/// The value whose device bytes `v` uses (following alias chains).
pub fn alias_root(roots: &[ValueId], v: ValueId) -> ValueId {
    let mut r = v;
    while roots[r] != r {
        r = roots[r];
    }
    r
}
