//! The seam between the runtime and the devices: a backend compiles a graph into a
//! plan once; a plan runs many times, from many threads at once.

use crate::Result;
use smelt_ir::{Graph, Tensor, TensorView};

/// A device that can compile graphs.
pub trait Backend: Send + Sync {
    /// Short name for logs and reports (`cpu`, `gpu:0`).
    fn name(&self) -> String;
    /// Compiles an optimised graph. Its node order, facts and constants are final.
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Plan>>;
    /// The graph passes to run for this backend: fusions whose fused op only
    /// some backends have a kernel for are turned on here.
    fn optimize_options(&self) -> smelt_passes::OptimizeOptions {
        smelt_passes::OptimizeOptions::default()
    }
}

/// A compiled graph, ready to run.
pub trait Plan: Send + Sync {
    /// Runs the graph on inputs given in graph-input order (already validated
    /// against the graph's input facts) and returns outputs in graph-output order.
    fn run(&self, inputs: &[TensorView]) -> Result<Vec<Tensor>>;

    /// Like [`Plan::run`], but writes into `outputs` (graph-output order). A tensor
    /// there that already has its output's dtype and shape is overwritten in place;
    /// any other is replaced. Plans that keep their memory override this so that a
    /// steady-state run allocates nothing.
    fn run_into(&self, inputs: &[TensorView], outputs: &mut Vec<Tensor>) -> Result<()> {
        *outputs = self.run(inputs)?;
        Ok(())
    }

    /// What the plan knows about its memory use so far.
    fn memory_report(&self) -> MemoryReport;
}

/// Planned memory for the shapes seen so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Bytes of the intermediate-value arena for the largest input shapes seen.
    pub arena_peak_bytes: usize,
    /// What the same intermediates would take with one buffer each.
    pub unplanned_bytes: usize,
    /// Bytes of constant weights held by the plan (pre-packed copies included).
    pub weight_bytes: usize,
    /// Arenas allocated so far (one per concurrent run).
    pub arenas: usize,
}
