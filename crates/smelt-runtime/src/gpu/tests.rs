//! The GPU plan against the CPU plan on a small graph that uses every placement:
//! GPU kernels, an alias, host shape arithmetic and a CPU fallback node; and the
//! device-lost path. Skips without a GPU unless SMELT_REQUIRE_GPU=1.

use super::GpuBackend;
use crate::{Device, Session, SessionOptions};
use smelt_gpu::{GpuConfig, TransferMode};
use smelt_ir::{BinaryOp, DType, Fact, Graph, Op, ReduceKind, Shape, Tensor, UnaryOp};

fn backend() -> Option<GpuBackend> {
    backend_with(GpuConfig::default())
}

/// Settings that place Neg on the CPU (with transfers around it).
fn with_cpu_neg(config: GpuConfig) -> GpuConfig {
    GpuConfig { cpu_ops: vec!["Neg".into()], ..config }
}

fn backend_with(config: GpuConfig) -> Option<GpuBackend> {
    match GpuBackend::with_config(None, config) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("SMELT_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("SMELT_REQUIRE_GPU=1 but no GPU: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no GPU ({e})");
            None
        }
    }
}

/// x[b, 7] -> MatMul(W[7, 5]) + Relu -> Reshape via Shape arithmetic -> Einsum
/// transpose -> Cast to i32, Neg -> Cast to f32 -> Mul -> ReduceSum. Every op has
/// a GPU kernel: [`with_cpu_neg`] sends Neg to the CPU to exercise the fallback.
fn graph() -> Graph {
    graph_with(true)
}

/// [`graph`], with a Transpose (a GPU kernel) instead of the Einsum and the
/// CPU-placed integer Neg when `cpu_fallback` is false.
fn graph_with(cpu_fallback: bool) -> Graph {
    let mut g = Graph::new(17);
    let x = g.add_value("x", Fact::new(DType::F32, Shape::new(vec![smelt_ir::Dim::Sym("b".into()), 7.into()])));
    g.inputs.push(x);
    let w: Vec<f32> = (0..35).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
    let w = g.add_constant("w", Tensor::from_vec(&[7, 5], w).unwrap());
    let h = g.add_value("h", Fact::new(DType::F32, Shape::unknown()));
    g.add_node("mm", Op::MatMul { activation: Some(UnaryOp::Relu) }, vec![Some(x), Some(w)], vec![h]);
    let shape = g.add_value("shape", Fact::new(DType::I64, Shape::unknown()));
    g.add_node("shape", Op::Shape { start: 0, end: None }, vec![Some(h)], vec![shape]);
    let r = g.add_value("r", Fact::new(DType::F32, Shape::unknown()));
    g.add_node("reshape", Op::Reshape { allowzero: false }, vec![Some(h), Some(shape)], vec![r]);
    let c = g.add_value("c", Fact::new(DType::F32, Shape::unknown()));
    let scaled = if cpu_fallback {
        g.add_node("einsum", Op::Einsum { equation: "ij->ji".into() }, vec![Some(r)], vec![c]);
        let ci = g.add_value("ci", Fact::new(DType::I32, Shape::unknown()));
        g.add_node("to_i32", Op::Cast { to: DType::I32 }, vec![Some(c)], vec![ci]);
        let negated = g.add_value("negated", Fact::new(DType::I32, Shape::unknown()));
        g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(ci)], vec![negated]);
        let back = g.add_value("back", Fact::new(DType::F32, Shape::unknown()));
        g.add_node("to_f32", Op::Cast { to: DType::F32 }, vec![Some(negated)], vec![back]);
        back
    } else {
        g.add_node("transpose", Op::Transpose { perm: Some(vec![1, 0]) }, vec![Some(r)], vec![c]);
        c
    };
    let two = g.add_constant("two", Tensor::from_slice(&[], &[2.0f32]).unwrap());
    let y = g.add_value("y", Fact::new(DType::F32, Shape::unknown()));
    g.add_node("mul", Op::Binary(BinaryOp::Mul), vec![Some(scaled), Some(two)], vec![y]);
    let s = g.add_value("s", Fact::new(DType::F32, Shape::unknown()));
    let axes = g.add_constant("axes", Tensor::from_slice(&[1], &[1i64]).unwrap());
    g.add_node(
        "sum",
        Op::Reduce { kind: ReduceKind::Sum, keepdims: true, noop_with_empty_axes: false },
        vec![Some(y), Some(axes)],
        vec![s],
    );
    g.outputs.extend([y, s]);
    g
}

#[test]
fn gpu_plan_matches_cpu_over_batch_sizes_and_reports_placement() {
    let Some(backend) = backend_with(with_cpu_neg(GpuConfig::default())) else { return };
    let report = backend.placement_report(&graph()).unwrap().join("\n");
    assert!(report.contains("gpu (matmul)"), "{report}");
    assert!(report.contains("alias"), "{report}");
    assert!(report.contains("host"), "{report}");
    assert!(report.contains("cpu (SMELT_GPU_CPU_OPS)") && report.contains("transfer gpu->cpu"), "{report}");
    assert!(!report.contains("no GPU kernel"), "every op of this graph has a GPU kernel:\n{report}");
    let cpu = Session::from_graph(graph(), &SessionOptions { optimize: false, ..Default::default() }).unwrap();
    let mut g = graph();
    g.infer_facts().unwrap();
    let gpu = crate::Backend::compile(&backend, &g).unwrap();
    for batch in [1, 3, 1, 13] {
        let values: Vec<f32> = (0..batch * 7).map(|i| ((i * 5 % 13) as f32 - 6.0) / 3.0).collect();
        let x = Tensor::from_vec(&[batch, 7], values).unwrap();
        let want = cpu.run(&[("x", &x)]).unwrap();
        let got = gpu.run(&[x.view()]).unwrap();
        for (a, (n, b)) in got.iter().zip(&want) {
            assert_eq!(a.shape(), b.shape(), "{n} at batch {batch}");
            for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{n} at batch {batch}: {p} vs {q}");
            }
        }
    }
    // Batch 1 and 3 were seen before: their layouts are reused.
    assert_eq!(gpu.memory_report().arenas, 3);
}

#[test]
fn a_lost_device_fails_runs_with_a_clear_error() {
    let Some(backend) = backend() else { return };
    let ctx = backend.context().clone();
    let plan = crate::Backend::compile(&backend, &{
        let mut g = graph();
        g.infer_facts().unwrap();
        g
    })
    .unwrap();
    let x = Tensor::from_vec(&[2, 7], vec![0.5f32; 14]).unwrap();
    plan.run(&[x.view()]).unwrap();
    ctx.mark_lost("test");
    let err = plan.run(&[x.view()]).unwrap_err().to_string();
    assert!(err.contains("lost") && err.contains("load the model again"), "{err}");
}

#[test]
fn an_index_out_of_range_fails_the_run_at_its_node_and_the_plan_keeps_working() {
    let Some(backend) = backend() else { return };
    let mut g = Graph::new(17);
    let ids = g.add_value("ids", Fact::new(DType::I64, Shape::fixed(&[3])));
    g.inputs.push(ids);
    let table: Vec<f32> = (0..20).map(|i| i as f32 * 0.5 - 3.0).collect();
    let table = g.add_constant("table", Tensor::from_vec(&[5, 4], table).unwrap());
    let rows = g.add_value("rows", Fact::new(DType::F32, Shape::unknown()));
    g.add_node("lookup", Op::Gather { axis: 0 }, vec![Some(table), Some(ids)], vec![rows]);
    let y = g.add_value("y", Fact::new(DType::F32, Shape::unknown()));
    g.add_node("act", Op::Unary(UnaryOp::Relu), vec![Some(rows)], vec![y]);
    g.outputs.push(y);
    g.infer_facts().unwrap();
    let plan = crate::Backend::compile(&backend, &g).unwrap();
    let bad = Tensor::from_slice(&[3], &[1i64, 7, 0]).unwrap();
    let err = plan.run(&[bad.view()]).unwrap_err().to_string();
    assert_eq!(err, "node 'lookup' (Gather): index 7 is out of range for axis 0 of size 5");
    // The status is cleared for the next run.
    let good = Tensor::from_slice(&[3], &[1i64, -1, 0]).unwrap();
    let out = plan.run(&[good.view()]).unwrap();
    assert_eq!(out[0].to_f64_vec()[..4], [0.0, 0.0, 0.0, 0.5]);
    assert_eq!(out[0].to_f64_vec()[4..8], [5.0, 5.5, 6.0, 6.5]);
}

/// Both transfer paths (mapped buffers, staging ring) give the CPU's answers,
/// also with several threads running one plan at once (runs overlap on the
/// staging path; each must get its own outputs).
#[test]
fn transfers_mapped_and_staged_match_the_cpu_under_concurrent_runs() {
    for (mode, cpu_fallback) in [
        (TransferMode::Mapped, true),
        (TransferMode::Staging, true),
        (TransferMode::Mapped, false),
        (TransferMode::Staging, false),
    ] {
        let cpu =
            Session::from_graph(graph_with(cpu_fallback), &SessionOptions { optimize: false, ..Default::default() })
                .unwrap();
        let mut g = graph_with(cpu_fallback);
        g.infer_facts().unwrap();
        let Some(backend) = backend_with(with_cpu_neg(GpuConfig { transfer: mode, ..GpuConfig::default() })) else {
            return;
        };
        if mode == TransferMode::Mapped && !backend.context().mapped_transfers() {
            panic!("transfer 'mapped' was asked for but the context stages");
        }
        assert_eq!(backend.context().mapped_transfers(), mode == TransferMode::Mapped);
        let plan = crate::Backend::compile(&backend, &g).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..4usize {
                let (plan, cpu) = (&plan, &cpu);
                scope.spawn(move || {
                    for run in 0..12usize {
                        let batch = 1 + (thread + run) % 3;
                        let values: Vec<f32> =
                            (0..batch * 7).map(|i| ((i * 5 + thread * 3 + run) % 13) as f32 / 3.0 - 2.0).collect();
                        let x = Tensor::from_vec(&[batch, 7], values).unwrap();
                        let want = cpu.run(&[("x", &x)]).unwrap();
                        let got = plan.run(&[x.view()]).unwrap();
                        for (a, (n, b)) in got.iter().zip(&want) {
                            assert_eq!(a.shape(), b.shape(), "{mode:?} {n}");
                            for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                                assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{mode:?} {n}: {p} vs {q}");
                            }
                        }
                    }
                });
            }
        });
    }
}

/// a / b (integer Div, a zero divisor is a data error) -> ScatterND with indices
/// from an input: a replayed plan fails at the Div node, then runs clean, and the
/// ScatterND's last-writer scratch is cleared between runs.
#[test]
fn a_zero_divisor_fails_the_run_at_its_node_and_scatter_nd_replays_clean() {
    let Some(backend) = backend() else { return };
    let mut g = Graph::new(17);
    let a = g.add_value("a", Fact::new(DType::I64, Shape::fixed(&[2, 3])));
    let b = g.add_value("b", Fact::new(DType::I64, Shape::fixed(&[3])));
    let ids = g.add_value("ids", Fact::new(DType::I64, Shape::fixed(&[2, 1])));
    g.inputs.extend([a, b, ids]);
    let updates = g.add_constant("updates", Tensor::from_slice(&[2, 3], &[100i64, 200, 300, 400, 500, 600]).unwrap());
    let q = g.add_value("q", Fact::new(DType::I64, Shape::unknown()));
    g.add_node("divide", Op::Binary(BinaryOp::Div), vec![Some(a), Some(b)], vec![q]);
    let y = g.add_value("y", Fact::new(DType::I64, Shape::unknown()));
    let scatter = Op::ScatterND { reduction: smelt_ir::ScatterReduction::None };
    g.add_node("scatter", scatter, vec![Some(q), Some(ids), Some(updates)], vec![y]);
    g.outputs.push(y);
    g.infer_facts().unwrap();
    let report = backend.placement_report(&g).unwrap().join("\n");
    assert!(report.contains("gpu (int_divide)") && report.contains("gpu (scatter_nd)"), "{report}");
    let plan = crate::Backend::compile(&backend, &g).unwrap();
    let a = Tensor::from_slice(&[2, 3], &[7i64, -7, 9, -(1 << 40), 5, 6]).unwrap();
    let zero = Tensor::from_slice(&[3], &[2i64, 0, 3]).unwrap();
    let ids_bad = Tensor::from_slice(&[2, 1], &[1i64, 2]).unwrap();
    let ids_good = Tensor::from_slice(&[2, 1], &[1i64, 0]).unwrap();
    let err = plan.run(&[a.view(), zero.view(), ids_good.view()]).unwrap_err().to_string();
    assert_eq!(err, "node 'divide' (Div): integer division by zero");
    let b = Tensor::from_slice(&[3], &[2i64, -3, 4]).unwrap();
    let err = plan.run(&[a.view(), b.view(), ids_bad.view()]).unwrap_err().to_string();
    assert_eq!(err, "node 'scatter' (ScatterND): index 2 is out of range for axis 0 of size 2");
    // Both nodes fail: the first one is named, as the CPU stops there.
    let err = plan.run(&[a.view(), zero.view(), ids_bad.view()]).unwrap_err().to_string();
    assert_eq!(err, "node 'divide' (Div): integer division by zero");
    // Both tuples name row 1: the last (400, 500, 600) wins; row 0 is the quotient.
    let ids = Tensor::from_slice(&[2, 1], &[1i64, -1]).unwrap();
    let out = plan.run(&[a.view(), b.view(), ids.view()]).unwrap();
    assert_eq!(out[0].to_i64_vec(), [3, 2, 2, 400, 500, 600]);
    // Now row 0 only: row 1 must be the quotient again, not last run's update.
    let ids = Tensor::from_slice(&[2, 1], &[0i64, 0]).unwrap();
    let out = plan.run(&[a.view(), b.view(), ids.view()]).unwrap();
    assert_eq!(out[0].to_i64_vec(), [400, 500, 600, -(1i64 << 40) / 2, -1, 1]);
}

/// x[b, 2, 5, 7] -> ConvTranspose -> Resize (linear, constant scales) -> LpPool ->
/// Einsum: each runs on the GPU, and the plan matches the CPU's.
fn upsampling_graph() -> Graph {
    use smelt_ir::{
        AutoPad, ConvAttrs, ConvTransposeAttrs, CoordinateTransform, KeepAspectRatioPolicy, NearestMode, PoolAttrs,
        ResizeAttrs, ResizeMode,
    };
    let mut g = Graph::new(17);
    let dims = vec![smelt_ir::Dim::Sym("b".into()), 2.into(), 5.into(), 7.into()];
    let x = g.add_value("x", Fact::new(DType::F32, Shape::new(dims)));
    g.inputs.push(x);
    let w: Vec<f32> = (0..54).map(|i| ((i * 7 % 11) as f32 - 5.0) / 7.0).collect();
    let w = g.add_constant("w", Tensor::from_vec(&[2, 3, 3, 3], w).unwrap());
    let ct = g.add_value("ct", Fact::new(DType::F32, Shape::unknown()));
    let conv = ConvAttrs {
        kernel_shape: None,
        strides: vec![2, 2],
        pads: vec![1, 0, 0, 1],
        dilations: vec![],
        group: 1,
        auto_pad: AutoPad::NotSet,
        activation: None,
    };
    let attrs = ConvTransposeAttrs { conv, output_padding: vec![1, 0], output_shape: None };
    g.add_node("deconv", Op::ConvTranspose(attrs), vec![Some(x), Some(w)], vec![ct]);
    let scales = g.add_constant("scales", Tensor::from_slice(&[4], &[1.0f32, 1.0, 0.6, 1.3]).unwrap());
    let rs = g.add_value("rs", Fact::new(DType::F32, Shape::unknown()));
    let resize = ResizeAttrs {
        mode: ResizeMode::Linear,
        coordinate_transform: CoordinateTransform::HalfPixel,
        nearest_mode: NearestMode::RoundPreferFloor,
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        axes: None,
        keep_aspect_ratio_policy: KeepAspectRatioPolicy::Stretch,
    };
    g.add_node("resize", Op::Resize(resize), vec![Some(ct), None, Some(scales), None], vec![rs]);
    let lp = g.add_value("lp", Fact::new(DType::F32, Shape::unknown()));
    let pool = PoolAttrs {
        kernel_shape: vec![2, 3],
        strides: vec![2, 2],
        pads: vec![],
        dilations: vec![],
        auto_pad: AutoPad::NotSet,
        ceil_mode: true,
        count_include_pad: false,
        storage_order: 0,
    };
    g.add_node("lp", Op::LpPool { attrs: pool, p: 2 }, vec![Some(rs)], vec![lp]);
    let y = g.add_value("y", Fact::new(DType::F32, Shape::unknown()));
    g.add_node("einsum", Op::Einsum { equation: "bchw->bwh".into() }, vec![Some(lp)], vec![y]);
    g.outputs.push(y);
    g
}

#[test]
fn resize_conv_transpose_lp_pool_and_einsum_run_on_the_gpu() {
    let Some(backend) = backend() else { return };
    let report = backend.placement_report(&upsampling_graph()).unwrap().join("\n");
    for kernel in ["gpu (conv_transpose)", "gpu (resize)", "gpu (lp_pool)", "gpu (einsum)"] {
        assert!(report.contains(kernel), "{kernel} missing from\n{report}");
    }
    assert!(!report.contains("cpu (no GPU kernel)"), "{report}");
    drop(backend);
    let cpu =
        Session::from_graph(upsampling_graph(), &SessionOptions { optimize: false, ..Default::default() }).unwrap();
    let gpu = Session::from_graph(
        upsampling_graph(),
        &SessionOptions { device: Device::Gpu(None), optimize: false, threads: None },
    )
    .unwrap();
    for batch in [1, 2] {
        let values: Vec<f32> = (0..batch * 70).map(|i| ((i * 5 % 13) as f32 - 6.0) / 3.0).collect();
        let x = Tensor::from_vec(&[batch, 2, 5, 7], values).unwrap();
        let want = cpu.run(&[("x", &x)]).unwrap();
        let got = gpu.run(&[("x", &x)]).unwrap();
        for ((n, a), (_, b)) in got.iter().zip(&want) {
            assert_eq!(a.shape(), b.shape(), "{n} at batch {batch}");
            for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{n} at batch {batch}: {p} vs {q}");
            }
        }
    }
}

/// Shape-deciding values given as graph inputs (ReduceSum's axes, TopK's k) are
/// read on the host at each run; each new value gets its own layout and the
/// answers match the CPU's.
#[test]
fn small_inputs_that_decide_shapes_are_read_on_the_host() {
    let Some(backend) = backend() else { return };
    let mut g = Graph::new(17);
    let x = g.add_value("x", Fact::new(DType::F32, Shape::fixed(&[3, 5, 7])));
    let axes = g.add_value("axes", Fact::new(DType::I64, Shape::fixed(&[1])));
    let k = g.add_value("k", Fact::new(DType::I64, Shape::fixed(&[1])));
    g.inputs.extend([x, axes, k]);
    let s = g.add_value("s", Fact::new(DType::F32, Shape::unknown()));
    g.add_node(
        "sum",
        Op::Reduce { kind: ReduceKind::Sum, keepdims: false, noop_with_empty_axes: false },
        vec![Some(x), Some(axes)],
        vec![s],
    );
    let (values, indices) = (
        g.add_value("values", Fact::new(DType::F32, Shape::unknown())),
        g.add_value("indices", Fact::new(DType::I64, Shape::unknown())),
    );
    g.add_node(
        "top",
        Op::TopK { axis: -1, largest: true, sorted: true },
        vec![Some(s), Some(k)],
        vec![values, indices],
    );
    g.outputs.extend([values, indices]);
    g.infer_facts().unwrap();
    let plan = crate::Backend::compile(&backend, &g).unwrap();
    let cpu = Session::from_graph(g.clone(), &SessionOptions { optimize: false, ..Default::default() }).unwrap();
    let data: Vec<f32> = (0..105).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
    let x = Tensor::from_vec(&[3, 5, 7], data).unwrap();
    for (axis, top) in [(0i64, 2i64), (2, 3), (-2, 1), (0, 2)] {
        let axes = Tensor::from_slice(&[1], &[axis]).unwrap();
        let k = Tensor::from_slice(&[1], &[top]).unwrap();
        let got = plan.run(&[x.view(), axes.view(), k.view()]).unwrap();
        let want = cpu.run(&[("x", &x), ("axes", &axes), ("k", &k)]).unwrap();
        for (a, (n, b)) in got.iter().zip(&want) {
            assert_eq!(a.shape(), b.shape(), "{n} for axes {axis}, k {top}");
            for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{n} for axes {axis}, k {top}: {p} vs {q}");
            }
        }
    }
    assert_eq!(plan.memory_report().arenas, 3, "one layout per distinct (axes, k); the last pair was seen before");
}
