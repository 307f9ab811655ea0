//! Steady state allocates nothing: once a session has run a set of input shapes,
//! further runs of those shapes through `Session::run_into` make no heap
//! allocation, on the calling thread or on the CPU pool's workers: not in the
//! runtime, not in any kernel the graphs below run (a CNN with pooling, im2col
//! and Winograd convolutions and a GEMM large enough to split across threads; a
//! transformer block with Gather, LayerNorm, attention and Softmax).
//!
//! A counting global allocator wraps the system one. While a measurement is on,
//! every allocation (alloc, alloc_zeroed, realloc) made by the calling thread or
//! by a CPU thread (threads named `smelt-cpu-*`) is counted and its call stack
//! captured, so a failure names where each allocation came from. Other threads
//! (the test harness starting the next test) are not part of a run.
//!
//! One allocation source is outside Smelt's control and is allowed, counted and
//! printed separately, on hosts without AVX-512 only: there the f32 GEMM is the
//! `gemm` crate's, which splits its work on a rayon pool. Entering that pool
//! pushes a job onto rayon's global injector (a `crossbeam_deque::Injector`), a
//! linked list of 63-slot blocks that allocates a fresh block whenever one
//! fills. Stacks through `Injector` are put in that class, with the rarer
//! allocations of crossbeam's epoch collector (rayon's deques defer frees
//! through it; a full bag of 64 is sealed into a new node). Where the AVX-512
//! kernels run, every loop runs on Smelt's own threads and none is allowed.
//!
//! Every other allocation fails the test, with a count per allocating line (its
//! innermost Smelt function) and the first one's full stack.

use smelt_ir::{AutoPad, BinaryOp, ConvAttrs, DType, Dim, Fact, Graph, Op, PoolAttrs, Shape, Tensor, UnaryOp};
use smelt_runtime::{Session, SessionOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

// ── the counting allocator ────────────────────────────────────────────────────

struct CountingAllocator;

static MEASURING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Call stacks of the allocations made while measuring (captured unresolved;
/// resolved after the measurement ends).
static STACKS: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while this thread records an allocation: recording allocates too, and
    /// those allocations must not be recorded.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    /// Set on the thread that calls the session while measuring.
    static CALLER: Cell<bool> = const { Cell::new(false) };
}

fn record() {
    if !MEASURING.load(Ordering::Relaxed) {
        return;
    }
    let reentered = RECORDING.with(|r| r.replace(true));
    if reentered {
        return;
    }
    // Only the caller and the CPU threads run a session; the test harness
    // starting the next test's thread meanwhile is not part of a run.
    let runs_sessions =
        CALLER.with(Cell::get) || std::thread::current().name().is_some_and(|name| name.starts_with("smelt-cpu-"));
    if !runs_sessions {
        RECORDING.with(|r| r.set(false));
        return;
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let stack = Backtrace::force_capture();
    if let Ok(mut stacks) = STACKS.lock() {
        stacks.push(stack);
    }
    RECORDING.with(|r| r.set(false));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Tests in this binary run one at a time: the count is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

/// What one measurement saw, by source.
struct Allocations {
    /// Pushes onto rayon's injector queue (see the file's doc).
    rayon_injector: usize,
    /// Everything else, with its resolved call stack.
    unexpected: Vec<String>,
}

/// Runs `f` with counting on and sorts what it allocated.
fn measure(f: impl FnOnce()) -> Allocations {
    STACKS.lock().unwrap().clear();
    ALLOCATIONS.store(0, Ordering::Relaxed);
    CALLER.with(|c| c.set(true));
    MEASURING.store(true, Ordering::SeqCst);
    f();
    MEASURING.store(false, Ordering::SeqCst);
    CALLER.with(|c| c.set(false));
    // A worker that passed the MEASURING check just before it turned off may
    // still be capturing its stack (slow): wait for it rather than race it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while STACKS.lock().unwrap().len() < ALLOCATIONS.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let stacks = std::mem::take(&mut *STACKS.lock().unwrap());
    assert_eq!(stacks.len(), ALLOCATIONS.load(Ordering::Relaxed), "every counted allocation has a stack");
    let mut result = Allocations { rayon_injector: 0, unexpected: Vec::new() };
    for stack in stacks {
        let text = stack.to_string();
        if is_rayon_injection(&text) {
            result.rayon_injector += 1;
        } else {
            result.unexpected.push(text);
        }
    }
    result
}

/// One frame of a resolved stack: function name and `at` location.
fn frames(stack: &str) -> Vec<(&str, &str)> {
    let lines: Vec<&str> = stack.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some((number, function)) = line.split_once(": ") {
            if number.chars().all(|c| c.is_ascii_digit()) {
                let at = lines.get(i + 1).and_then(|l| l.strip_prefix("at ")).unwrap_or("");
                out.push((function, at));
            }
        }
    }
    out
}

/// Whether the allocation is rayon pushing a job onto its injector queue.
fn is_rayon_injection(stack: &str) -> bool {
    frames(stack).iter().any(|(function, at)| {
        let name = function.split('<').next().unwrap_or(function);
        (name == "inject" || name.ends_with("::inject")) && at.contains("rayon-core")
    }) && stack.contains("crossbeam-deque")
        // crossbeam's epoch collector (rayon's deques free memory through it) seals
        // a full bag of 64 deferred frees into its global queue: one allocation per
        // 64 deferred frees, inside rayon.
        || frames(stack).iter().any(|(function, _)| function.contains("crossbeam_epoch::internal::SealedBag"))
}

/// Whether every parallel loop runs on Smelt's own threads: where the AVX-512
/// GEMM runs, nothing hands work to rayon.
fn own_threads_only() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The innermost frame in Smelt's own source (this test excluded), as
/// "function at file:line", or the first frames when there is none.
fn allocation_site(stack: &str) -> String {
    let frames = frames(stack);
    let own = |at: &str| (at.contains("/crates/smelt") || at.starts_with("./src/")) && !at.contains("tests/");
    match frames.iter().find(|(_, at)| own(at)) {
        Some((function, at)) => format!("{} at {at}", function.split('<').next().unwrap_or(function)),
        None => frames.iter().take(10).map(|(f, _)| *f).collect::<Vec<_>>().join(" <- "),
    }
}

/// "count × site" lines, most frequent first.
fn count_sites(sites: impl Iterator<Item = String>) -> String {
    let mut counted: Vec<(String, usize)> = Vec::new();
    for site in sites {
        match counted.iter_mut().find(|(s, _)| *s == site) {
            Some((_, n)) => *n += 1,
            None => counted.push((site, 1)),
        }
    }
    counted.sort_by_key(|c| std::cmp::Reverse(c.1));
    counted.iter().map(|(s, n)| format!("  {n:>6} × {s}")).collect::<Vec<_>>().join("\n")
}

/// Runs of a warmed-up shape set allocate nothing (but rayon's injector blocks,
/// on hosts where the `gemm` crate runs the products).
fn assert_steady(what: &str, runs: usize, allocations: &Allocations) {
    // At most one entry into rayon per product; not counted exactly, since a
    // product's size decides whether it enters. One 63-slot block per 63
    // entries, plus one for a block already partly used.
    let injector_allowance = if own_threads_only() { 0 } else { runs.div_ceil(63) * 16 + 2 };
    eprintln!(
        "{what}: {runs} runs, {} allocations, {} rayon injector blocks (allowed {injector_allowance})",
        allocations.unexpected.len(),
        allocations.rayon_injector
    );
    if let Some(first) = allocations.unexpected.first() {
        panic!(
            "{what}: {} allocation(s) in {runs} steady-state runs, by innermost Smelt function:\n{}\n\
             the first one's stack:\n{first}",
            allocations.unexpected.len(),
            count_sites(allocations.unexpected.iter().map(|s| allocation_site(s)))
        );
    }
    assert!(
        allocations.rayon_injector <= injector_allowance,
        "{what}: {} rayon injector allocations in {runs} runs (at most {injector_allowance} expected)",
        allocations.rayon_injector
    );
}

// ── graphs ────────────────────────────────────────────────────────────────────

/// Deterministic values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Builds a graph whose intermediate facts are left to shape inference.
struct GraphBuilder {
    graph: Graph,
    seed: u64,
}

impl GraphBuilder {
    fn new() -> GraphBuilder {
        GraphBuilder { graph: Graph::new(17), seed: 0 }
    }

    fn input(&mut self, name: &str, dtype: DType, dims: Vec<Dim>) -> usize {
        let v = self.graph.add_value(name, Fact::new(dtype, Shape::new(dims)));
        self.graph.inputs.push(v);
        v
    }

    /// A constant of random f32 values.
    fn weight(&mut self, name: &str, shape: &[usize], scale: f32) -> usize {
        self.seed += 1;
        let n = shape.iter().product();
        self.graph.add_constant(name, Tensor::from_vec(shape, values(n, self.seed, scale)).unwrap())
    }

    fn constant(&mut self, name: &str, tensor: Tensor) -> usize {
        self.graph.add_constant(name, tensor)
    }

    /// Adds a node with one output and returns that output.
    fn node(&mut self, name: &str, op: Op, inputs: &[usize]) -> usize {
        let out = self.graph.add_value(name, Fact::new(DType::F32, Shape::unknown()));
        self.graph.add_node(name, op, inputs.iter().map(|&v| Some(v)).collect(), vec![out]);
        out
    }

    fn finish(mut self, outputs: &[usize]) -> Graph {
        self.graph.outputs.extend_from_slice(outputs);
        self.graph
    }
}

fn conv(pad: usize) -> Op {
    strided_conv(pad, 1)
}

fn strided_conv(pad: usize, stride: usize) -> Op {
    Op::Conv(ConvAttrs {
        kernel_shape: None,
        strides: vec![stride; 2],
        pads: vec![pad; 4],
        dilations: vec![1, 1],
        group: 1,
        auto_pad: AutoPad::NotSet,
        activation: None,
    })
}

/// Non-overlapping `window`×`window` pooling windows.
fn pool(window: usize) -> PoolAttrs {
    PoolAttrs {
        kernel_shape: vec![window; 2],
        strides: vec![window; 2],
        pads: vec![0; 4],
        dilations: vec![1, 1],
        auto_pad: AutoPad::NotSet,
        ceil_mode: false,
        count_include_pad: false,
        storage_order: 0,
    }
}

/// Conv + BatchNormalization (+ Relu when `relu`), as exported CNNs have them.
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    b: &mut GraphBuilder,
    name: &str,
    x: usize,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    relu: bool,
) -> usize {
    let w = b.weight(&format!("{name}.w"), &[c_out, c_in, k, k], 0.3);
    let bias = b.weight(&format!("{name}.b"), &[c_out], 0.1);
    let y = b.node(&format!("{name}.conv"), strided_conv(k / 2, stride), &[x, w, bias]);
    let scale = b.constant(&format!("{name}.bn.scale"), Tensor::from_vec(&[c_out], vec![1.1f32; c_out]).unwrap());
    let shift = b.weight(&format!("{name}.bn.shift"), &[c_out], 0.1);
    let mean = b.weight(&format!("{name}.bn.mean"), &[c_out], 0.1);
    let var = b.constant(&format!("{name}.bn.var"), Tensor::from_vec(&[c_out], vec![0.9f32; c_out]).unwrap());
    let y = b.node(&format!("{name}.bn"), Op::BatchNormalization { epsilon: 1e-5 }, &[y, scale, shift, mean, var]);
    if relu {
        b.node(&format!("{name}.relu"), Op::Unary(UnaryOp::Relu), &[y])
    } else {
        y
    }
}

/// image [batch, 3, 16, 16] → logits [batch, 10]: a stride-2 stem Conv+BN+Relu (the
/// direct kernel where the CPU has AVX-512), MaxPool, one
/// residual block (3×3 and 1×1 convolutions, Add, Relu), GlobalAveragePool, Gemm.
fn cnn() -> Graph {
    let mut b = GraphBuilder::new();
    let batch = Dim::Sym("batch".into());
    let x = b.input("image", DType::F32, vec![batch, Dim::Fixed(3), Dim::Fixed(16), Dim::Fixed(16)]);
    let stem = conv_bn(&mut b, "stem", x, 3, 8, 3, 2, true);
    let pooled = b.node("pool", Op::MaxPool(pool(2)), &[stem]);
    let a = conv_bn(&mut b, "block.a", pooled, 8, 8, 3, 1, true);
    let c = conv_bn(&mut b, "block.b", a, 8, 8, 1, 1, false);
    let sum = b.node("block.add", Op::Binary(BinaryOp::Add), &[c, pooled]);
    let act = b.node("block.relu", Op::Unary(UnaryOp::Relu), &[sum]);
    let gap = b.node("gap", Op::GlobalAveragePool, &[act]);
    let flat = b.node("flatten", Op::Flatten { axis: 1 }, &[gap]);
    let fc_w = b.weight("fc.w", &[10, 8], 0.3);
    let fc_b = b.weight("fc.b", &[10], 0.1);
    let gemm = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, activation: None };
    let logits = b.node("fc", gemm, &[flat, fc_w, fc_b]);
    b.finish(&[logits])
}

/// Channels of the wide CNN: enough that the cost model runs its 3×3 layer as
/// Winograd F(4,3) on a 16×16 image.
const WIDE: usize = 128;
/// Width of the wide CNN's hidden fully connected layer: at batch 2 and up its
/// GEMM reaches the parallel threshold (2·128·1024 multiply-adds) and splits
/// into bands across the pool's threads.
const WIDE_FC: usize = 1024;

/// features [batch, WIDE, 16, 16] → logits [batch, 10]: a 3×3 Conv+Relu (the
/// Winograd path), a pointwise Conv+Relu (large enough to spread its tasks over
/// the threads), GlobalAveragePool, and two Gemms, the first split into bands.
fn wide_cnn() -> Graph {
    let mut b = GraphBuilder::new();
    let dims = vec![Dim::Sym("batch".into()), Dim::Fixed(WIDE), Dim::Fixed(16), Dim::Fixed(16)];
    let x = b.input("features", DType::F32, dims);
    let w = b.weight("winograd.w", &[WIDE, WIDE, 3, 3], 0.05);
    let bias = b.weight("winograd.b", &[WIDE], 0.1);
    let y = b.node("winograd.conv", conv(1), &[x, w, bias]);
    let y = b.node("winograd.relu", Op::Unary(UnaryOp::Relu), &[y]);
    let w = b.weight("pointwise.w", &[WIDE, WIDE, 1, 1], 0.1);
    let y = b.node("pointwise.conv", conv(0), &[y, w]);
    let y = b.node("pointwise.relu", Op::Unary(UnaryOp::Relu), &[y]);
    let gap = b.node("gap", Op::GlobalAveragePool, &[y]);
    let flat = b.node("flatten", Op::Flatten { axis: 1 }, &[gap]);
    let gemm = || Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, activation: None };
    let fc_w = b.weight("fc1.w", &[WIDE_FC, WIDE], 0.1);
    let fc_b = b.weight("fc1.b", &[WIDE_FC], 0.1);
    let hidden = b.node("fc1", gemm(), &[flat, fc_w, fc_b]);
    let hidden = b.node("fc1.relu", Op::Unary(UnaryOp::Relu), &[hidden]);
    let out_w = b.weight("fc2.w", &[10, WIDE_FC], 0.05);
    let out_b = b.weight("fc2.b", &[10], 0.1);
    let logits = b.node("fc2", gemm(), &[hidden, out_w, out_b]);
    b.finish(&[logits])
}

/// Side of the large CNN's images: at batch 8 its first layers' tensors (1
/// MiB an image) are large enough for the CPU plan to run them image by image.
const LARGE: usize = 128;

/// image [batch, 8, LARGE, LARGE] → logits [batch, 10]: a 3×3 Conv+BN+Relu, a
/// 1×1 Conv+BN with a residual Add and Relu, and a 4×4 MaxPool, which a batch of
/// 8 runs image by image; then a 3×3 Conv on the pooled maps, GlobalAveragePool
/// and a Gemm, batched.
fn large_cnn() -> Graph {
    let mut b = GraphBuilder::new();
    let dims = vec![Dim::Sym("batch".into()), Dim::Fixed(8), Dim::Fixed(LARGE), Dim::Fixed(LARGE)];
    let x = b.input("image", DType::F32, dims);
    let a = conv_bn(&mut b, "a", x, 8, 16, 3, 1, true);
    let c = conv_bn(&mut b, "b", a, 16, 16, 1, 1, false);
    let sum = b.node("b.add", Op::Binary(BinaryOp::Add), &[c, a]);
    let act = b.node("b.relu", Op::Unary(UnaryOp::Relu), &[sum]);
    let pooled = b.node("pool", Op::MaxPool(pool(4)), &[act]);
    let d = conv_bn(&mut b, "d", pooled, 16, 32, 3, 1, true);
    let gap = b.node("gap", Op::GlobalAveragePool, &[d]);
    let flat = b.node("flatten", Op::Flatten { axis: 1 }, &[gap]);
    let fc_w = b.weight("fc.w", &[10, 32], 0.3);
    let fc_b = b.weight("fc.b", &[10], 0.1);
    let gemm = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, activation: None };
    let logits = b.node("fc", gemm, &[flat, fc_w, fc_b]);
    b.finish(&[logits])
}

const VOCAB: usize = 50;
const HIDDEN: usize = 16;
const HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 32;

fn i64s(shape: &[usize], v: Vec<i64>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

/// LayerNormalization over the last axis with random scale and bias.
fn layer_norm(b: &mut GraphBuilder, name: &str, x: usize) -> usize {
    let scale = b.constant(&format!("{name}.scale"), Tensor::from_vec(&[HIDDEN], vec![1.0f32; HIDDEN]).unwrap());
    let bias = b.weight(&format!("{name}.bias"), &[HIDDEN], 0.1);
    b.node(name, Op::LayerNormalization { axis: -1, epsilon: 1e-5 }, &[x, scale, bias])
}

/// x · W + b with W: [k, n].
fn linear(b: &mut GraphBuilder, name: &str, x: usize, k: usize, n: usize) -> usize {
    let w = b.weight(&format!("{name}.w"), &[k, n], 0.3);
    let bias = b.weight(&format!("{name}.b"), &[n], 0.1);
    let y = b.node(&format!("{name}.matmul"), Op::MatMul { activation: None }, &[x, w]);
    b.node(&format!("{name}.add"), Op::Binary(BinaryOp::Add), &[y, bias])
}

/// [batch, seq, HIDDEN] → [batch, HEADS, seq, HEAD_DIM], or with `keys` the key
/// layout [batch, HEADS, HEAD_DIM, seq].
fn split_heads(b: &mut GraphBuilder, name: &str, x: usize, keys: bool) -> usize {
    let shape = b.constant(&format!("{name}.shape"), i64s(&[4], vec![0, 0, HEADS as i64, HEAD_DIM as i64]));
    let r = b.node(&format!("{name}.reshape"), Op::Reshape { allowzero: false }, &[x, shape]);
    let perm = if keys { vec![0, 2, 3, 1] } else { vec![0, 2, 1, 3] };
    b.node(&format!("{name}.transpose"), Op::Transpose { perm: Some(perm) }, &[r])
}

/// (input_ids, attention_mask) [batch, seq] i64 → hidden [batch, seq, HIDDEN]: an
/// embedding Gather, LayerNorm, masked multi-head self-attention, a residual Add,
/// LayerNorm, an Erf-GELU feed-forward block, a residual Add, LayerNorm.
fn transformer_block() -> Graph {
    let mut b = GraphBuilder::new();
    let dims = || vec![Dim::Sym("batch".into()), Dim::Sym("sequence".into())];
    let ids = b.input("input_ids", DType::I64, dims());
    let mask = b.input("attention_mask", DType::I64, dims());
    let table = b.weight("embedding", &[VOCAB, HIDDEN], 1.0);
    let embedded = b.node("embed", Op::Gather { axis: 0 }, &[table, ids]);
    let h = layer_norm(&mut b, "ln0", embedded);

    let q = linear(&mut b, "q", h, HIDDEN, HIDDEN);
    let k = linear(&mut b, "k", h, HIDDEN, HIDDEN);
    let v = linear(&mut b, "v", h, HIDDEN, HIDDEN);
    let q = split_heads(&mut b, "q", q, false);
    let k = split_heads(&mut b, "k", k, true);
    let v = split_heads(&mut b, "v", v, false);
    let scores = b.node("scores", Op::MatMul { activation: None }, &[q, k]);
    let scale = b.constant("scale", Tensor::scalar(1.0 / (HEAD_DIM as f32).sqrt()));
    let scores = b.node("scores.scaled", Op::Binary(BinaryOp::Mul), &[scores, scale]);
    // (1 - mask) · -10000, broadcast over heads and query positions.
    let mask_f = b.node("mask.cast", Op::Cast { to: DType::F32 }, &[mask]);
    let one = b.constant("one", Tensor::scalar(1.0f32));
    let inverted = b.node("mask.invert", Op::Binary(BinaryOp::Sub), &[one, mask_f]);
    let big = b.constant("minus_big", Tensor::scalar(-10000.0f32));
    let bias = b.node("mask.bias", Op::Binary(BinaryOp::Mul), &[inverted, big]);
    let axes = b.constant("mask.axes", i64s(&[2], vec![1, 2]));
    let bias = b.node("mask.unsqueeze", Op::Unsqueeze, &[bias, axes]);
    let scores = b.node("scores.masked", Op::Binary(BinaryOp::Add), &[scores, bias]);
    let probs = b.node("probs", Op::Softmax { axis: -1, coerce_2d: false }, &[scores]);
    let context = b.node("context", Op::MatMul { activation: None }, &[probs, v]);
    let context = b.node("context.transpose", Op::Transpose { perm: Some(vec![0, 2, 1, 3]) }, &[context]);
    let merged_shape = b.constant("context.shape", i64s(&[3], vec![0, 0, HIDDEN as i64]));
    let context = b.node("context.reshape", Op::Reshape { allowzero: false }, &[context, merged_shape]);
    let attn = linear(&mut b, "out", context, HIDDEN, HIDDEN);
    let h = b.node("residual1", Op::Binary(BinaryOp::Add), &[attn, h]);
    let h = layer_norm(&mut b, "ln1", h);

    // GELU(x) = 0.5 · x · (1 + erf(x / √2)), spelled out as exporters write it.
    let up = linear(&mut b, "ffn.up", h, HIDDEN, FFN);
    let sqrt2 = b.constant("sqrt2", Tensor::scalar(std::f32::consts::SQRT_2));
    let scaled = b.node("gelu.div", Op::Binary(BinaryOp::Div), &[up, sqrt2]);
    let erf = b.node("gelu.erf", Op::Unary(UnaryOp::Erf), &[scaled]);
    let one_plus = b.node("gelu.add", Op::Binary(BinaryOp::Add), &[erf, one]);
    let times_x = b.node("gelu.mul", Op::Binary(BinaryOp::Mul), &[up, one_plus]);
    let half = b.constant("half", Tensor::scalar(0.5f32));
    let gelu = b.node("gelu.half", Op::Binary(BinaryOp::Mul), &[times_x, half]);
    let down = linear(&mut b, "ffn.down", gelu, FFN, HIDDEN);
    let h = b.node("residual2", Op::Binary(BinaryOp::Add), &[down, h]);
    let out = layer_norm(&mut b, "ln2", h);
    b.finish(&[out])
}

fn image(batch: usize, seed: u64) -> Tensor {
    Tensor::from_vec(&[batch, 3, 16, 16], values(batch * 3 * 16 * 16, seed, 1.0)).unwrap()
}

fn large_image(batch: usize, seed: u64) -> Tensor {
    Tensor::from_vec(&[batch, 8, LARGE, LARGE], values(batch * 8 * LARGE * LARGE, seed, 1.0)).unwrap()
}

fn features(batch: usize, seed: u64) -> Tensor {
    Tensor::from_vec(&[batch, WIDE, 16, 16], values(batch * WIDE * 16 * 16, seed, 1.0)).unwrap()
}

/// Token ids inside the vocabulary, and a mask with padding at the end of odd rows.
fn tokens(batch: usize, seq: usize) -> (Tensor, Tensor) {
    let ids: Vec<i64> = (0..batch * seq).map(|i| ((i * 7 + 3) % VOCAB) as i64).collect();
    let mask: Vec<i64> =
        (0..batch * seq).map(|i| if (i / seq) % 2 == 1 && i % seq >= seq - 2 { 0 } else { 1 }).collect();
    (i64s(&[batch, seq], ids), i64s(&[batch, seq], mask))
}

fn session(graph: Graph, optimize: bool) -> Session {
    Session::from_graph(graph, &SessionOptions { threads: Some(2), optimize, ..Default::default() }).unwrap()
}

const WARM_UP_RUNS: usize = 20;
const MEASURED_RUNS: usize = 100;

/// Warms `session` up on `inputs`, then measures `MEASURED_RUNS` more runs into
/// the same outputs, and checks those outputs against a plain `run`.
fn check_steady(what: &str, session: &Session, inputs: &[(&str, &Tensor)]) {
    let mut outputs = Vec::new();
    for _ in 0..WARM_UP_RUNS {
        session.run_into(inputs, &mut outputs).unwrap();
    }
    let allocations = measure(|| {
        for _ in 0..MEASURED_RUNS {
            session.run_into(inputs, &mut outputs).unwrap();
        }
    });
    let expected = session.run(inputs).unwrap();
    assert_eq!(outputs.len(), expected.len());
    for (got, (name, want)) in outputs.iter().zip(&expected) {
        assert_eq!(got, want, "{what}: output '{name}' of run_into differs from run");
        assert!(got.as_slice::<f32>().unwrap().iter().all(|v| v.is_finite()), "{what}: '{name}' not finite");
    }
    assert_steady(what, MEASURED_RUNS, &allocations);
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (got, want) = (got.as_slice::<f32>().unwrap(), want.as_slice::<f32>().unwrap());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what}: element {i}: {a} vs {b}");
    }
}

// ── tests ─────────────────────────────────────────────────────────────────────

#[test]
fn counting_allocator_sees_allocations() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let allocations = measure(|| {
        let v: Vec<u64> = std::hint::black_box(vec![1, 2, 3]);
        drop(v);
    });
    assert_eq!(allocations.unexpected.len(), 1, "one Vec, one allocation");
    assert!(allocations.unexpected[0].contains("counting_allocator_sees_allocations"));
}

#[test]
fn cnn_steady_state_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let session = session(cnn(), true);
    for batch in [1, 4] {
        let x = image(batch, batch as u64);
        check_steady(&format!("cnn batch {batch}"), &session, &[("image", &x)]);
    }
}

#[test]
fn wide_cnn_steady_state_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let session = session(wide_cnn(), true);
    for batch in [2, 4] {
        let x = features(batch, batch as u64);
        check_steady(&format!("wide cnn batch {batch}"), &session, &[("features", &x)]);
    }
}

/// A batch whose first layers run image by image is steady too, and each
/// image's logits are those of the image run alone.
#[test]
fn split_batch_steady_state_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let session = session(large_cnn(), true);
    let x = large_image(8, 5);
    let analysis = smelt_runtime::analysis::analyse(session.graph(), std::slice::from_ref(&x)).unwrap();
    assert_eq!(analysis.split.len(), 1, "one run of nodes split: {:?}", analysis.split);
    assert_eq!(analysis.split[0].1, 8, "one image per chunk");
    check_steady("large cnn batch 8", &session, &[("image", &x)]);
    let batched = session.run(&[("image", &x)]).unwrap();
    let logits = batched[0].1.as_slice::<f32>().unwrap();
    let image_len = 8 * LARGE * LARGE;
    for i in 0..8 {
        let one = &x.as_slice::<f32>().unwrap()[i * image_len..][..image_len];
        let one = Tensor::from_vec(&[1, 8, LARGE, LARGE], one.to_vec()).unwrap();
        let alone = session.run(&[("image", &one)]).unwrap();
        let want = Tensor::from_vec(&[1, 10], logits[i * 10..][..10].to_vec()).unwrap();
        assert_close(&format!("large cnn image {i}"), &alone[0].1, &want);
    }
}

#[test]
fn transformer_steady_state_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let session = session(transformer_block(), true);
    for (batch, seq) in [(1, 12), (2, 7)] {
        let (ids, mask) = tokens(batch, seq);
        check_steady(
            &format!("transformer batch {batch} seq {seq}"),
            &session,
            &[("input_ids", &ids), ("attention_mask", &mask)],
        );
    }
}

/// Two shape sets used in turn, each with its own outputs, are both steady.
#[test]
fn alternating_cached_shapes_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let session = session(cnn(), true);
    let (small, large) = (image(1, 1), image(3, 2));
    let (mut out_small, mut out_large) = (Vec::new(), Vec::new());
    for _ in 0..WARM_UP_RUNS {
        session.run_into(&[("image", &small)], &mut out_small).unwrap();
        session.run_into(&[("image", &large)], &mut out_large).unwrap();
    }
    let allocations = measure(|| {
        for _ in 0..MEASURED_RUNS / 2 {
            session.run_into(&[("image", &small)], &mut out_small).unwrap();
            session.run_into(&[("image", &large)], &mut out_large).unwrap();
        }
    });
    assert_eq!(out_small[0].shape(), &[1, 10]);
    assert_eq!(out_large[0].shape(), &[3, 10]);
    assert_steady("cnn batches 1 and 3 in turn", MEASURED_RUNS, &allocations);
}

/// The graphs compute the same with and without Smelt's passes (so the steady
/// runs above measured real work, not a degenerate graph).
#[test]
fn optimised_graphs_match_unoptimised() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let x = image(2, 7);
    let fast = session(cnn(), true).run(&[("image", &x)]).unwrap();
    let plain = session(cnn(), false).run(&[("image", &x)]).unwrap();
    assert_close("cnn", &fast[0].1, &plain[0].1);
    let x = features(2, 7);
    let fast = session(wide_cnn(), true).run(&[("features", &x)]).unwrap();
    let plain = session(wide_cnn(), false).run(&[("features", &x)]).unwrap();
    assert_close("wide cnn", &fast[0].1, &plain[0].1);
    let (ids, mask) = tokens(2, 9);
    let inputs = [("input_ids", &ids), ("attention_mask", &mask)];
    let fast = session(transformer_block(), true).run(&inputs).unwrap();
    let plain = session(transformer_block(), false).run(&inputs).unwrap();
    assert_close("transformer", &fast[0].1, &plain[0].1);
    // The mask matters: padding changes the padded row's outputs.
    let no_padding = i64s(&[2, 9], vec![1; 18]);
    let unmasked =
        session(transformer_block(), true).run(&[("input_ids", &ids), ("attention_mask", &no_padding)]).unwrap();
    assert_ne!(unmasked[0].1, fast[0].1, "the attention mask changes the output");
}

/// Outputs of the wrong shape or dtype are replaced, not written past.
#[test]
fn run_into_replaces_mismatched_outputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let session = session(cnn(), true);
    let x = image(2, 3);
    let want = session.run(&[("image", &x)]).unwrap();
    let mut outputs = vec![Tensor::zeros(DType::I64, &[5]), Tensor::zeros(DType::F32, &[1])];
    session.run_into(&[("image", &x)], &mut outputs).unwrap();
    assert_eq!(outputs.len(), 1, "one output per model output");
    assert_eq!(outputs[0], want[0].1);
    let mut wrong_shape = vec![Tensor::zeros(DType::F32, &[1, 10])];
    session.run_into(&[("image", &x)], &mut wrong_shape).unwrap();
    assert_eq!(wrong_shape[0], want[0].1);
}
