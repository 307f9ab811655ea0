//! The CPU backend: compiles a graph into per-node kernels and runs them over one
//! planned arena of intermediate memory.
//!
//! Shapes are resolved once per distinct set of input shapes (a [`Layout`]); a run
//! with shapes seen before does no shape work and no allocation of intermediates.

pub(crate) mod layout;

use crate::backend::{Backend, MemoryReport, Plan};
use crate::{Result, RuntimeError};
use layout::{Layout, ShapeDependence};
use smelt_cpu::{Kernel, Scratch};
use smelt_ir::{AlignedBytes, Graph, Tensor, TensorView, TensorViewMut, ValueId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Distinct input-shape sets whose layouts are kept; beyond this the cache is
/// cleared (a server sees a handful of batch sizes, not thousands).
const MAX_CACHED_LAYOUTS: usize = 64;

/// Runs graphs on the host CPU with a dedicated rayon pool.
pub struct CpuBackend {
    pool: Arc<rayon::ThreadPool>,
}

impl CpuBackend {
    /// `threads`: size of the pool that every kernel's parallel work runs on;
    /// `None` uses one thread per core.
    pub fn new(threads: Option<usize>) -> Result<CpuBackend> {
        let mut builder = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("smelt-cpu-{i}"));
        if let Some(n) = threads {
            builder = builder.num_threads(n.max(1));
        }
        let pool =
            builder.build().map_err(|e| RuntimeError::Other(format!("cannot start the CPU thread pool: {e}")))?;
        Ok(CpuBackend { pool: Arc::new(pool) })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".to_string()
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Plan>> {
        let kernels = graph
            .nodes
            .iter()
            .map(|node| {
                let constants: Vec<Option<&Arc<Tensor>>> =
                    node.inputs.iter().map(|v| v.and_then(|v| graph.constant(v))).collect();
                smelt_cpu::prepare(&node.op, &constants)
            })
            .collect();
        let slots = (0..graph.values.len())
            .map(|v| {
                if let Some(k) = graph.inputs.iter().position(|&i| i == v) {
                    Slot::Input(k)
                } else if let Some(t) = graph.constant(v) {
                    Slot::Const(t.clone())
                } else {
                    Slot::Arena
                }
            })
            .collect();
        let weight_bytes = graph.values.iter().filter_map(|v| v.fact.constant.as_ref()).map(|t| t.bytes().len()).sum();
        Ok(Box::new(CpuPlan {
            dependence: ShapeDependence::analyse(graph),
            graph: graph.clone(),
            kernels,
            slots,
            pool: self.pool.clone(),
            layouts: RwLock::new(HashMap::new()),
            arenas: Mutex::new(Vec::new()),
            arena_count: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            unplanned: AtomicUsize::new(0),
            weight_bytes,
        }))
    }
}

/// Where a value's bytes live during a run.
enum Slot {
    /// The k-th graph input, owned by the caller.
    Input(usize),
    Const(Arc<Tensor>),
    /// Planned space in the run's arena.
    Arena,
}

/// Memory one run works in. Kept in a pool and reused, so steady-state runs
/// allocate no intermediate memory.
#[derive(Default)]
struct Arena {
    bytes: AlignedBytes,
    scratch: Scratch,
}

struct CpuPlan {
    graph: Graph,
    kernels: Vec<Box<dyn Kernel>>,
    slots: Vec<Slot>,
    dependence: ShapeDependence,
    pool: Arc<rayon::ThreadPool>,
    layouts: RwLock<HashMap<Vec<Vec<usize>>, Arc<Layout>>>,
    arenas: Mutex<Vec<Arena>>,
    arena_count: AtomicUsize,
    peak: AtomicUsize,
    unplanned: AtomicUsize,
    weight_bytes: usize,
}

impl CpuPlan {
    fn layout_for(&self, inputs: &[TensorView]) -> Result<Arc<Layout>> {
        if self.dependence.data_dependent {
            // Shapes depend on input values: resolve every time, never cache.
            return Ok(Arc::new(Layout::resolve(&self.graph, &self.dependence, inputs)?));
        }
        let key: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape.to_vec()).collect();
        if let Some(l) = self.layouts.read().map_err(|_| poisoned())?.get(&key) {
            return Ok(l.clone());
        }
        let layout = Arc::new(Layout::resolve(&self.graph, &self.dependence, inputs)?);
        self.peak.fetch_max(layout.arena_bytes, Ordering::Relaxed);
        self.unplanned.fetch_max(layout.unplanned_bytes, Ordering::Relaxed);
        let mut cache = self.layouts.write().map_err(|_| poisoned())?;
        if cache.len() >= MAX_CACHED_LAYOUTS {
            cache.clear();
        }
        cache.insert(key, layout.clone());
        Ok(layout)
    }

    fn take_arena(&self) -> Arena {
        let reused = self.arenas.lock().ok().and_then(|mut a| a.pop());
        reused.unwrap_or_else(|| {
            self.arena_count.fetch_add(1, Ordering::Relaxed);
            Arena::default()
        })
    }

    fn give_back(&self, arena: Arena) {
        if let Ok(mut a) = self.arenas.lock() {
            a.push(arena);
        }
    }

    fn execute(&self, layout: &Layout, inputs: &[TensorView], arena: &mut Arena) -> Result<Vec<Tensor>> {
        arena.bytes.resize(layout.arena_bytes);
        let base = arena.bytes.as_mut_slice().as_mut_ptr();
        let view = |v: ValueId| -> TensorView<'_> {
            match &self.slots[v] {
                Slot::Input(k) => inputs[*k],
                Slot::Const(t) => t.view(),
                Slot::Arena => {
                    let (off, len) = layout.range(v);
                    // SAFETY: the layout places every arena value inside `arena_bytes`,
                    // which `base` covers, and values live at the same time never share
                    // bytes; a node's inputs are live while it runs, so they are
                    // disjoint from its outputs, which are borrowed mutably below.
                    let data = unsafe { std::slice::from_raw_parts(base.add(off), len) };
                    TensorView::new(self.graph.values[v].fact.dtype, &layout.shapes[v], data)
                }
            }
        };
        for (node, kernel) in self.graph.nodes.iter().zip(&self.kernels) {
            let ins: Vec<Option<TensorView>> = node.inputs.iter().map(|v| v.map(view)).collect();
            let mut outs: Vec<TensorViewMut> = Vec::with_capacity(node.outputs.len());
            for &o in &node.outputs {
                let (off, len) = layout.range(o);
                // SAFETY: as above; a node's outputs are distinct values with disjoint
                // ranges (their lifetimes all start at this node).
                let data = unsafe { std::slice::from_raw_parts_mut(base.add(off), len) };
                outs.push(TensorViewMut::new(self.graph.values[o].fact.dtype, &layout.shapes[o], data));
            }
            kernel.run(&ins, &mut outs, &mut arena.scratch).map_err(|e| RuntimeError::Node {
                node: node.name.clone(),
                op: node.op.name(),
                message: e.to_string(),
            })?;
        }
        Ok(self.graph.outputs.iter().map(|&o| view(o).to_owned()).collect())
    }
}

fn poisoned() -> RuntimeError {
    RuntimeError::Other("a previous run panicked while holding the plan's layout cache".into())
}

impl Plan for CpuPlan {
    fn run(&self, inputs: &[TensorView]) -> Result<Vec<Tensor>> {
        self.pool.install(|| {
            let layout = self.layout_for(inputs)?;
            let mut arena = self.take_arena();
            let result = self.execute(&layout, inputs, &mut arena);
            self.give_back(arena);
            result
        })
    }

    fn memory_report(&self) -> MemoryReport {
        MemoryReport {
            arena_peak_bytes: self.peak.load(Ordering::Relaxed),
            unplanned_bytes: self.unplanned.load(Ordering::Relaxed),
            weight_bytes: self.weight_bytes,
            arenas: self.arena_count.load(Ordering::Relaxed),
        }
    }
}
