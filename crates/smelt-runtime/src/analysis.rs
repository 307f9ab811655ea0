//! Static analysis of a prepared graph at concrete input shapes: every value's
//! shape, each node's estimated FLOPs, and the planned arena size.

use crate::cpu::batch_split::SplitSetting;
use crate::cpu::layout::{Layout, ShapeDependence};
use crate::Result;
use smelt_ir::{Graph, Tensor, TensorView};

pub struct Analysis {
    /// Concrete shape of every value.
    pub shapes: Vec<Vec<usize>>,
    /// Estimated floating-point operations per node.
    pub node_flops: Vec<u64>,
    pub total_flops: u64,
    /// Bytes of the planned intermediate arena.
    pub arena_bytes: usize,
    /// Bytes the intermediates would take with one buffer each.
    pub unplanned_bytes: usize,
    /// Runs of nodes the CPU backend executes a chunk of the batch at a time,
    /// and the chunks each is run in.
    pub split: Vec<(std::ops::Range<usize>, usize)>,
}

/// Analyses `graph` for the given inputs (graph-input order). Only shapes matter
/// unless the graph's shapes depend on input values.
pub fn analyse(graph: &Graph, inputs: &[Tensor]) -> Result<Analysis> {
    let views: Vec<TensorView> = inputs.iter().map(|t| t.view()).collect();
    let dep = ShapeDependence::analyse(graph);
    let layout = Layout::resolve(graph, &dep, &views, SplitSetting::from_env())?;
    let node_flops: Vec<u64> = graph
        .nodes
        .iter()
        .map(|node| {
            let ins: Vec<Option<&[usize]>> =
                node.inputs.iter().map(|v| v.map(|v| layout.shapes[v].as_slice())).collect();
            let outs: Vec<&[usize]> = node.outputs.iter().map(|&o| layout.shapes[o].as_slice()).collect();
            smelt_ir::cost::flops(&node.op, &ins, &outs)
        })
        .collect();
    Ok(Analysis {
        total_flops: node_flops.iter().sum(),
        node_flops,
        arena_bytes: layout.arena_bytes,
        unplanned_bytes: layout.unplanned_bytes,
        split: layout.split.segments.iter().map(|s| (s.nodes.clone(), s.chunks)).collect(),
        shapes: layout.shapes,
    })
}
