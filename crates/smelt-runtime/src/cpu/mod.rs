//! The CPU backend: compiles a graph into per-node kernels and runs them over one
//! planned arena of intermediate memory.
//!
//! Shapes are resolved once per distinct set of input shapes (a [`Layout`]); a run
//! with shapes seen before does no shape work and, through [`Plan::run_into`], no
//! heap allocation at all: the layout is found without building a key, node views
//! live on the stack, and intermediates and kernel scratch come from pooled arenas.

pub(crate) mod batch_split;
pub(crate) mod layout;
mod profile;

use crate::backend::{Backend, MemoryReport, Plan};
use crate::{Result, RuntimeError};
use batch_split::SplitSetting;
use layout::{Layout, ShapeDependence};
use smelt_cpu::team::Team;
use smelt_cpu::{Kernel, Scratch};
use smelt_ir::{AlignedBytes, DType, Graph, Tensor, TensorView, TensorViewMut, ValueId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Distinct input-shape sets whose layouts are kept; beyond this the cache is
/// cleared (a server sees a handful of batch sizes, not thousands).
const MAX_CACHED_LAYOUTS: usize = 64;

/// Node inputs and outputs up to these counts are viewed from arrays on the stack,
/// so running a node allocates nothing; wider nodes (a Concat of many tensors, a
/// many-way Split) fall back to a heap vector.
const INLINE_INPUTS: usize = 16;
const INLINE_OUTPUTS: usize = 8;

/// Runs graphs on the host CPU; every kernel's parallel loops split across one
/// team of threads that all the backend's plans share.
pub struct CpuBackend {
    team: Arc<Team>,
}

impl CpuBackend {
    /// `threads`: threads every kernel's parallel loops split across, the
    /// thread that calls a run included; `None` uses one per core.
    pub fn new(threads: Option<usize>) -> Result<CpuBackend> {
        let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let team = Team::new(threads.max(1), "smelt-cpu")
            .map_err(|e| RuntimeError::Other(format!("cannot start the CPU threads: {e}")))?;
        Ok(CpuBackend { team: Arc::new(team) })
    }

    /// The graph passes for CPU plans: the defaults, plus attention and residual
    /// fusion (the CPU has an attention kernel, and its Conv adds a residual).
    pub fn passes() -> smelt_passes::OptimizeOptions {
        smelt_passes::OptimizeOptions { fuse_attention: true, fuse_residual: true, ..Default::default() }
    }

    pub fn threads(&self) -> usize {
        self.team.threads()
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".to_string()
    }

    fn optimize_options(&self) -> smelt_passes::OptimizeOptions {
        CpuBackend::passes()
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
            profile: profile::NodeProfile::from_env(graph.nodes.len()),
            dependence: ShapeDependence::analyse(graph),
            split: SplitSetting::from_env(),
            graph: graph.clone(),
            kernels,
            slots,
            team: self.team.clone(),
            layouts: RwLock::new(Vec::new()),
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

/// A resolved layout and the input shapes it was resolved for.
struct CachedLayout {
    input_shapes: Vec<Vec<usize>>,
    layout: Arc<Layout>,
}

impl CachedLayout {
    fn fits(&self, inputs: &[TensorView]) -> bool {
        self.input_shapes.len() == inputs.len() && self.input_shapes.iter().zip(inputs).all(|(s, t)| s == t.shape)
    }
}

struct CpuPlan {
    graph: Graph,
    kernels: Vec<Box<dyn Kernel>>,
    slots: Vec<Slot>,
    dependence: ShapeDependence,
    /// Whether layouts run per-image layers a chunk of the batch at a time
    /// (`SMELT_CPU_BATCH_SPLIT`, read once when the plan is compiled).
    split: SplitSetting,
    team: Arc<Team>,
    /// Layouts by input shapes. Searched linearly: it holds a handful of entries,
    /// and comparing shapes in place needs no key to be built (no allocation).
    layouts: RwLock<Vec<CachedLayout>>,
    arenas: Mutex<Vec<Arena>>,
    arena_count: AtomicUsize,
    peak: AtomicUsize,
    unplanned: AtomicUsize,
    weight_bytes: usize,
    /// Per-node kernel times, with `SMELT_CPU_PROFILE` set.
    profile: Option<profile::NodeProfile>,
}

impl Drop for CpuPlan {
    fn drop(&mut self) {
        if let Some(profile) = &self.profile {
            let nodes: Vec<_> = self.graph.nodes.iter().map(|n| (n.name.clone(), n.op.name())).collect();
            eprint!("{}", profile.report(&nodes));
        }
    }
}

impl CpuPlan {
    fn layout_for(&self, inputs: &[TensorView]) -> Result<Arc<Layout>> {
        if self.dependence.data_dependent {
            // Shapes depend on input values: resolve every time, never cache.
            return Ok(Arc::new(Layout::resolve(&self.graph, &self.dependence, inputs, self.split)?));
        }
        if let Some(c) = self.layouts.read().map_err(|_| poisoned())?.iter().find(|c| c.fits(inputs)) {
            return Ok(c.layout.clone());
        }
        let layout = Arc::new(Layout::resolve(&self.graph, &self.dependence, inputs, self.split)?);
        self.peak.fetch_max(layout.arena_bytes, Ordering::Relaxed);
        self.unplanned.fetch_max(layout.unplanned_bytes, Ordering::Relaxed);
        let mut cache = self.layouts.write().map_err(|_| poisoned())?;
        // Another run may have resolved the same shapes meanwhile.
        if let Some(c) = cache.iter().find(|c| c.fits(inputs)) {
            return Ok(c.layout.clone());
        }
        if cache.len() >= MAX_CACHED_LAYOUTS {
            cache.clear();
        }
        let input_shapes = inputs.iter().map(|t| t.shape.to_vec()).collect();
        cache.push(CachedLayout { input_shapes, layout: layout.clone() });
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

    /// Runs every node over `arena`, then copies the graph outputs into `outputs`.
    fn execute(
        &self,
        layout: &Layout,
        inputs: &[TensorView],
        arena: &mut Arena,
        outputs: &mut Vec<Tensor>,
    ) -> Result<()> {
        arena.bytes.resize(layout.arena_bytes);
        let base = arena.bytes.as_mut_slice().as_mut_ptr();
        // Value `v` as a node sees it: whole, or (`chunk` = Some(c)) chunk c's
        // slice while a segment runs its nodes chunk by chunk.
        // Where value `v` lies in the arena as a node sees it: whole, or (`chunk`
        // = Some(c)) chunk c's slice while a segment runs chunk by chunk.
        let sliced = |v: ValueId, chunk: Option<usize>| chunk.and_then(|c| layout.split.chunk(v, c));
        let place = |v: ValueId, chunk: Option<usize>| -> (usize, usize, &[usize]) {
            let (off, len) = layout.range(v);
            match sliced(v, chunk) {
                Some((at, len, shape)) => (off + at, len, shape),
                None => (off, len, layout.shapes[v].as_slice()),
            }
        };
        let view = |v: ValueId, chunk: Option<usize>| -> TensorView<'_> {
            let dtype = self.graph.values[v].fact.dtype;
            let whole = match &self.slots[v] {
                Slot::Input(k) => inputs[*k],
                Slot::Const(t) => t.view(),
                Slot::Arena => {
                    let (off, len, shape) = place(v, chunk);
                    // SAFETY: the layout places every arena value (and each chunk
                    // of a sliced one) inside `arena_bytes`, which `base` covers,
                    // and values live at the same time never share bytes; a node's
                    // inputs are live while it runs, so they are disjoint from its
                    // outputs, which are borrowed mutably below.
                    let data = unsafe { std::slice::from_raw_parts(base.add(off), len) };
                    return TensorView::new(dtype, shape, data);
                }
            };
            match sliced(v, chunk) {
                Some((at, len, shape)) => TensorView::new(dtype, shape, &whole.data[at..][..len]),
                None => whole,
            }
        };
        let view_mut = |o: ValueId, chunk: Option<usize>| -> TensorViewMut<'_> {
            let (off, len, shape) = place(o, chunk);
            // SAFETY: as above; a node's outputs are distinct values with disjoint
            // ranges (their lifetimes all start at this node).
            let data = unsafe { std::slice::from_raw_parts_mut(base.add(off), len) };
            TensorViewMut::new(self.graph.values[o].fact.dtype, shape, data)
        };
        let mut run_node = |index: usize, chunk: Option<usize>| -> Result<()> {
            if layout.skipped[index] {
                // Its output already lies on its input's bytes.
                return Ok(());
            }
            let (node, kernel) = (&self.graph.nodes[index], &self.kernels[index]);
            let start = self.profile.as_ref().map(|_| std::time::Instant::now());
            let mut inline_ins = [None; INLINE_INPUTS];
            let heap_ins: Vec<Option<TensorView>>;
            let ins: &[Option<TensorView>] = if node.inputs.len() <= INLINE_INPUTS {
                for (slot, v) in inline_ins.iter_mut().zip(&node.inputs) {
                    *slot = v.map(|v| view(v, chunk));
                }
                &inline_ins[..node.inputs.len()]
            } else {
                heap_ins = node.inputs.iter().map(|v| v.map(|v| view(v, chunk))).collect();
                &heap_ins
            };
            let mut inline_outs: [TensorViewMut; INLINE_OUTPUTS] = std::array::from_fn(|_| empty_view_mut());
            let mut heap_outs: Vec<TensorViewMut>;
            let outs: &mut [TensorViewMut] = if node.outputs.len() <= INLINE_OUTPUTS {
                for (slot, &o) in inline_outs.iter_mut().zip(&node.outputs) {
                    *slot = view_mut(o, chunk);
                }
                &mut inline_outs[..node.outputs.len()]
            } else {
                heap_outs = node.outputs.iter().map(|&o| view_mut(o, chunk)).collect();
                &mut heap_outs
            };
            kernel.run(ins, outs, &mut arena.scratch).map_err(|e| RuntimeError::Node {
                node: node.name.clone(),
                op: node.op.name(),
                message: e.to_string(),
            })?;
            if let (Some(profile), Some(start)) = (&self.profile, start) {
                profile.record(index, start, chunk.unwrap_or(0) == 0);
            }
            Ok(())
        };
        let mut index = 0;
        while index < self.graph.nodes.len() {
            match layout.split.starting_at(index) {
                Some(segment) => {
                    for chunk in 0..segment.chunks {
                        for i in segment.nodes.clone() {
                            run_node(i, Some(chunk))?;
                        }
                    }
                    index = segment.nodes.end;
                }
                None => {
                    run_node(index, None)?;
                    index += 1;
                }
            }
        }
        outputs.truncate(self.graph.outputs.len());
        for (k, &o) in self.graph.outputs.iter().enumerate() {
            let value = view(o, None);
            match outputs.get_mut(k) {
                Some(t) if t.dtype() == value.dtype && t.shape() == value.shape => {
                    t.bytes_mut().copy_from_slice(value.data)
                }
                Some(t) => *t = value.to_owned(),
                None => outputs.push(value.to_owned()),
            }
        }
        Ok(())
    }
}

/// Fills the unused tail of a node's inline output array; never given to a kernel.
fn empty_view_mut<'a>() -> TensorViewMut<'a> {
    TensorViewMut { dtype: DType::U8, shape: &[], data: &mut [] }
}

fn poisoned() -> RuntimeError {
    RuntimeError::Other("a previous run panicked while holding the plan's layout cache".into())
}

impl Plan for CpuPlan {
    fn run(&self, inputs: &[TensorView]) -> Result<Vec<Tensor>> {
        let mut outputs = Vec::with_capacity(self.graph.outputs.len());
        self.run_into(inputs, &mut outputs)?;
        Ok(outputs)
    }

    fn run_into(&self, inputs: &[TensorView], outputs: &mut Vec<Tensor>) -> Result<()> {
        self.team.run(|| {
            let layout = self.layout_for(inputs)?;
            let mut arena = self.take_arena();
            let result = self.execute(&layout, inputs, &mut arena, outputs);
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
