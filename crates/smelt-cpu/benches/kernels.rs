//! Micro-benchmarks of the CPU kernels at the shapes of Smelt's test models
//! (ResNet-50, BERT-base and GPT-2 small at sequence 128, batch 1).
//!
//! Every case goes through the same path a compiled plan takes: `prepare` builds
//! the node's kernel once (weights marked constant are pre-packed there), then
//! each iteration is one `Kernel::run` into preallocated outputs with a kept
//! `Scratch`. Throughput is reported in FLOP (criterion's "elements") so results
//! read as FLOP/s; for memory-bound ops it is the element count.
//!
//! Threads: kernels run on one team of SMELT_BENCH_THREADS threads (default: one
//! per core); set it to match a deployment (2 on the CI machines). Run with `cargo bench -p smelt-cpu`, or one
//! group with e.g. `cargo bench -p smelt-cpu -- gemm`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smelt_cpu::team::Team;
use smelt_cpu::{Kernel, Scratch};
use smelt_ir::{
    AttentionAttrs, AttentionLayout, AttentionMask, AutoPad, ConvAttrs, Op, Tensor, TensorView, TensorViewMut, UnaryOp,
};
use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Deterministic values in [-1, 1).
fn random(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_vec(shape, values).expect("shape and values agree")
}

/// The threads every case runs on.
fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let threads = std::env::var("SMELT_BENCH_THREADS").ok().and_then(|v| v.parse().ok());
        let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Team::new(threads, "bench").expect("bench threads start")
    })
}

/// One kernel ready to run: its inputs, outputs and scratch.
struct Case {
    kernel: Box<dyn Kernel>,
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    scratch: Scratch,
}

impl Case {
    /// `constant[i]`: input i is a weight, given to `prepare` to pre-pack.
    fn new(op: Op, inputs: Vec<Tensor>, constant: &[bool]) -> Case {
        let shared: Vec<Arc<Tensor>> = inputs.iter().cloned().map(Arc::new).collect();
        let constants: Vec<Option<&Arc<Tensor>>> =
            shared.iter().zip(constant.iter().chain(std::iter::repeat(&false))).map(|(t, &c)| c.then_some(t)).collect();
        let kernel = smelt_cpu::prepare(&op, &constants);
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(Some).collect();
        // The reference path gives the outputs' shapes (and checks the case).
        let outputs = smelt_cpu::eval_alloc(&op, &refs, 1).expect("benchmark case runs");
        Case { kernel, inputs, outputs, scratch: Scratch::new() }
    }

    fn run(&mut self) {
        let ins: Vec<Option<TensorView>> = self.inputs.iter().map(|t| Some(t.view())).collect();
        let mut outs: Vec<TensorViewMut> = self.outputs.iter_mut().map(|t| t.view_mut()).collect();
        team().run(|| self.kernel.run(&ins, &mut outs, &mut self.scratch)).expect("kernel runs");
        black_box(&outs);
    }
}

fn bench_case(c: &mut Criterion, group: &str, name: String, work: u64, mut case: Case) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(work));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    g.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(|| case.run()));
    g.finish();
}

/// A [m, k] × [k, n] MatMul; `packed`: B is a constant weight (pre-packed).
fn matmul(c: &mut Criterion, group: &str, label: &str, (m, k, n): (usize, usize, usize), packed: bool) {
    let case =
        Case::new(Op::MatMul { activation: None }, vec![random(&[m, k], 1), random(&[k, n], 2)], &[false, packed]);
    bench_case(c, group, format!("{label} {m}x{k}x{n}"), 2 * (m * k * n) as u64, case);
}

fn gemm(c: &mut Criterion) {
    // Transformer projections at sequence 128 (weights pre-packed, as compiled).
    for (label, shape) in [
        ("bert qkv/out", (128, 768, 768)),
        ("bert ffn up", (128, 768, 3072)),
        ("bert ffn down", (128, 3072, 768)),
        ("gpt2 c_attn", (128, 768, 2304)),
        ("bert b8 ffn up", (1024, 768, 3072)),
        ("bert b8 ffn down", (1024, 3072, 768)),
    ] {
        matmul(c, "gemm", label, shape, true);
    }
    // ResNet-50 3×3 convolutions as GEMMs: [H·W, 9·C_in] × [9·C_in, C_out].
    for (label, shape) in [
        ("resnet layer1", (3136, 576, 64)),
        ("resnet layer2", (784, 1152, 128)),
        ("resnet layer3", (196, 2304, 256)),
        ("resnet layer4", (49, 4608, 512)),
    ] {
        matmul(c, "gemm", label, shape, true);
    }
    // Both operands computed at run time (nothing to pre-pack).
    matmul(c, "gemm", "bert qkv runtime B", (128, 768, 768), false);
}

fn conv_op(kernel: usize, stride: usize) -> Op {
    Op::Conv(ConvAttrs {
        kernel_shape: Some(vec![kernel, kernel]),
        strides: vec![stride, stride],
        pads: vec![kernel / 2; 4],
        dilations: vec![1, 1],
        group: 1,
        auto_pad: AutoPad::NotSet,
        activation: None,
    })
}

fn conv(c: &mut Criterion) {
    // (C_in, H=W, C_out, kernel, stride) of ResNet-50's convolutions, batch 1.
    for (c_in, hw, c_out, k, stride) in [
        (64, 56, 64, 3, 1),
        (128, 28, 128, 3, 1),
        (256, 14, 256, 3, 1),
        (512, 7, 512, 3, 1),
        (128, 56, 128, 3, 2),
        (256, 56, 64, 1, 1),
        (64, 56, 256, 1, 1),
        (1024, 14, 256, 1, 1),
        (512, 7, 2048, 1, 1),
    ] {
        let case = Case::new(
            conv_op(k, stride),
            vec![random(&[1, c_in, hw, hw], 3), random(&[c_out, c_in, k, k], 4), random(&[c_out], 5)],
            &[false, true, true],
        );
        let out_hw = (hw + 2 * (k / 2) - k) / stride + 1;
        let flops = 2 * (c_out * out_hw * out_hw * c_in * k * k) as u64;
        let group = if k == 3 { "conv3x3" } else { "conv1x1" };
        bench_case(c, group, format!("{c_in}x{hw}x{hw} -> {c_out} s{stride}"), flops, case);
    }
}

fn softmax(c: &mut Criterion) {
    // BERT's attention probabilities: [batch, heads, seq, seq].
    let shape = [1, 12, 128, 128];
    let case = Case::new(Op::Softmax { axis: -1, coerce_2d: false }, vec![random(&shape, 6)], &[false]);
    bench_case(c, "softmax", "1x12x128x128".into(), shape.iter().product::<usize>() as u64, case);
}

fn layer_norm(c: &mut Criterion) {
    let case = Case::new(
        Op::LayerNormalization { axis: -1, epsilon: 1e-12 },
        vec![random(&[1, 128, 768], 7), random(&[768], 8), random(&[768], 9)],
        &[false, true, true],
    );
    bench_case(c, "layernorm", "1x128x768".into(), 128 * 768, case);
}

fn gelu(c: &mut Criterion) {
    // BERT's FFN activation: [1, 128, 3072].
    for (name, tanh) in [("erf", false), ("tanh", true)] {
        let case = Case::new(Op::Unary(UnaryOp::Gelu { tanh }), vec![random(&[1, 128, 3072], 10)], &[false]);
        bench_case(c, "gelu", format!("{name} 1x128x3072"), 128 * 3072, case);
    }
}

/// softmax(Q·Kᵀ/√d + mask)·V at BERT and GPT-2 shapes (12 heads of 64, sequence
/// 128): unfused, as the three kernels a plan without attention fusion runs
/// (mask left out), and as the fused `Attention` kernel with BERT's additive
/// padding mask and GPT-2's causal one.
fn attention(c: &mut Criterion) {
    let (heads, seq, dim) = (12, 128, 64);
    let mut scores = Case::new(
        Op::MatMul { activation: None },
        vec![random(&[1, heads, seq, dim], 11), random(&[1, heads, dim, seq], 12)],
        &[false, false],
    );
    let mut probs = Case::new(Op::Softmax { axis: -1, coerce_2d: false }, vec![scores.outputs[0].clone()], &[false]);
    let mut context = Case::new(
        Op::MatMul { activation: None },
        vec![probs.outputs[0].clone(), random(&[1, heads, seq, dim], 13)],
        &[false, false],
    );
    let flops = 2 * 2 * (heads * seq * seq * dim) as u64;
    let mut g = c.benchmark_group("attention");
    g.throughput(Throughput::Elements(flops));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    g.bench_function("bert 12x128x64", |b| {
        b.iter(|| {
            scores.run();
            std::mem::swap(&mut probs.inputs[0], &mut scores.outputs[0]);
            probs.run();
            std::mem::swap(&mut probs.inputs[0], &mut scores.outputs[0]);
            std::mem::swap(&mut context.inputs[0], &mut probs.outputs[0]);
            context.run();
            std::mem::swap(&mut context.inputs[0], &mut probs.outputs[0]);
        })
    });
    let (q, kt, v) =
        (random(&[1, heads, seq, dim], 11), random(&[1, heads, dim, seq], 12), random(&[1, heads, seq, dim], 13));
    let fused = |mask| {
        Op::Attention(AttentionAttrs { scale: 0.125, keys_transposed: true, mask, layout: AttentionLayout::HeadMajor })
    };
    let padding = Tensor::from_vec(&[1, 1, 1, seq], vec![0f32; seq]).expect("mask shape");
    let mut bert = Case::new(fused(AttentionMask::Add), vec![q.clone(), kt.clone(), v.clone(), padding], &[false; 4]);
    g.bench_function("fused bert 12x128x64", |b| b.iter(|| bert.run()));
    let token_major = AttentionAttrs {
        scale: 0.125,
        keys_transposed: false,
        mask: AttentionMask::Add,
        layout: AttentionLayout::TokenMajor,
    };
    let projections: Vec<Tensor> = (21..24).map(|seed| random(&[1, seq, heads, dim], seed)).collect();
    let padding = Tensor::from_vec(&[1, 1, 1, seq], vec![0f32; seq]).expect("mask shape");
    let inputs = projections.into_iter().chain([padding]).collect();
    let mut bert_tokens = Case::new(Op::Attention(token_major), inputs, &[false; 4]);
    g.bench_function("fused bert token-major 12x128x64", |b| b.iter(|| bert_tokens.run()));
    let causal: Vec<bool> = (0..seq * seq).map(|e| e % seq <= e / seq).collect();
    let causal = Tensor::from_bools(&[1, 1, seq, seq], &causal).expect("mask shape");
    let mut gpt2 = Case::new(fused(AttentionMask::Select { fill: f32::MIN }), vec![q, kt, v, causal], &[false; 4]);
    g.bench_function("fused gpt2 causal 12x128x64", |b| b.iter(|| gpt2.run()));
    g.finish();
}

criterion_group!(kernels, gemm, conv, softmax, layer_norm, gelu, attention);
criterion_main!(kernels);
