//! Session behaviour across crates: input checks, planned memory, reuse of
//! layouts and arenas, and concurrent runs.

use smelt_ir::{BinaryOp, DType, Dim, Fact, Graph, Op, Shape, Tensor, UnaryOp};
use smelt_runtime::{RuntimeError, Session, SessionOptions};
use std::sync::Arc;

/// Deterministic non-zero values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if v == 0.0 {
                0.5
            } else {
                v
            }
        })
        .collect()
}

/// y = relu(x · W + b) + x · W, with x: [batch, 8], W: [8, 8]; a chain long enough
/// that the memory plan reuses buffers.
fn mlp_graph() -> (Graph, Vec<f32>, Vec<f32>) {
    let w = values(64, 1);
    let b = values(8, 2);
    let mut g = Graph::new(17);
    let x = g.add_value("x", Fact::new(DType::F32, Shape::new(vec![Dim::Sym("batch".into()), Dim::Fixed(8)])));
    g.inputs.push(x);
    let wv = g.add_constant("W", Tensor::from_vec(&[8, 8], w.clone()).unwrap());
    let bv = g.add_constant("b", Tensor::from_vec(&[8], b.clone()).unwrap());
    let unknown = || Fact::new(DType::F32, Shape::unknown());
    let mm = g.add_value("mm", unknown());
    let add = g.add_value("add", unknown());
    let relu = g.add_value("relu", unknown());
    let mut prev = relu;
    g.add_node("matmul", Op::MatMul { activation: None }, vec![Some(x), Some(wv)], vec![mm]);
    g.add_node("bias", Op::Binary(BinaryOp::Add), vec![Some(mm), Some(bv)], vec![add]);
    g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(add)], vec![relu]);
    for i in 0..4 {
        let next = g.add_value(format!("t{i}"), unknown());
        g.add_node(format!("tanh{i}"), Op::Unary(UnaryOp::Tanh), vec![Some(prev)], vec![next]);
        prev = next;
    }
    let y = g.add_value("y", unknown());
    g.add_node("residual", Op::Binary(BinaryOp::Add), vec![Some(prev), Some(mm)], vec![y]);
    g.outputs.push(y);
    (g, w, b)
}

fn reference(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let batch = x.len() / 8;
    let mut out = vec![0.0; batch * 8];
    for r in 0..batch {
        for c in 0..8 {
            let mm: f32 = (0..8).map(|k| x[r * 8 + k] * w[k * 8 + c]).sum();
            let mut t = (mm + b[c]).max(0.0);
            for _ in 0..4 {
                t = t.tanh();
            }
            out[r * 8 + c] = t + mm;
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "element {i}: {a} vs {b}");
    }
}

fn session(optimize: bool) -> (Session, Vec<f32>, Vec<f32>) {
    let (g, w, b) = mlp_graph();
    let opts = SessionOptions { threads: Some(2), optimize, ..Default::default() };
    (Session::from_graph(g, &opts).unwrap(), w, b)
}

#[test]
fn runs_with_and_without_passes() {
    for optimize in [false, true] {
        let (s, w, b) = session(optimize);
        for batch in [1, 3, 5] {
            let x = values(batch * 8, 10 + batch as u64);
            let t = Tensor::from_vec(&[batch, 8], x.clone()).unwrap();
            let out = s.run(&[("x", &t)]).unwrap();
            assert_eq!(out[0].0, "y");
            assert_eq!(out[0].1.shape(), &[batch, 8]);
            assert_close(out[0].1.as_slice::<f32>().unwrap(), &reference(&x, &w, &b));
        }
    }
}

#[test]
fn memory_plan_reuses_buffers_and_arenas() {
    let (s, _, _) = session(false);
    let t = Tensor::from_vec(&[16, 8], values(128, 3)).unwrap();
    for _ in 0..5 {
        s.run(&[("x", &t)]).unwrap();
    }
    let m = s.memory_report();
    assert!(m.arena_peak_bytes > 0);
    assert!(m.arena_peak_bytes < m.unplanned_bytes, "{m:?}");
    assert_eq!(m.arenas, 1, "sequential runs share one arena: {m:?}");
}

#[test]
fn concurrent_runs_agree_with_sequential_ones() {
    let (s, w, b) = session(true);
    let s = Arc::new(s);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let s = s.clone();
            let (w, b) = (w.clone(), b.clone());
            std::thread::spawn(move || {
                for round in 0..20 {
                    let batch = 1 + (i + round) % 4;
                    let x = values(batch * 8, (i * 100 + round) as u64);
                    let t = Tensor::from_vec(&[batch, 8], x.clone()).unwrap();
                    let out = s.run(&[("x", &t)]).unwrap();
                    assert_close(out[0].1.as_slice::<f32>().unwrap(), &reference(&x, &w, &b));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn bad_inputs_are_refused_with_names() {
    let (s, _, _) = session(true);
    let good = Tensor::from_vec(&[2, 8], values(16, 4)).unwrap();
    let err = s.run(&[]).unwrap_err();
    assert!(matches!(err, RuntimeError::MissingInput { .. }), "{err}");
    assert!(err.to_string().contains("'x'"), "{err}");

    let err = s.run(&[("x", &good), ("z", &good)]).unwrap_err().to_string();
    assert!(err.contains("'z'") && err.contains("x"), "{err}");

    let f64s = Tensor::from_vec(&[2, 8], vec![1.0f64; 16]).unwrap();
    let err = s.run(&[("x", &f64s)]).unwrap_err().to_string();
    assert!(err.contains("'x'") && err.contains("f64") && err.contains("f32"), "{err}");

    let wrong = Tensor::from_vec(&[2, 7], values(14, 5)).unwrap();
    let err = s.run(&[("x", &wrong)]).unwrap_err().to_string();
    assert!(err.contains("'x'") && err.contains("[2, 7]") && err.contains("[batch, 8]"), "{err}");

    // The session still serves after refusing.
    assert!(s.run(&[("x", &good)]).is_ok());
}

#[test]
fn symbolic_dims_must_agree_across_inputs() {
    let mut g = Graph::new(17);
    let batch = || Dim::Sym("batch".into());
    let a = g.add_value("a", Fact::new(DType::F32, Shape::new(vec![batch(), Dim::Fixed(2)])));
    let b = g.add_value("b", Fact::new(DType::F32, Shape::new(vec![batch(), Dim::Fixed(2)])));
    let y = g.add_value("y", Fact::new(DType::F32, Shape::unknown()));
    g.inputs = vec![a, b];
    g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(a), Some(b)], vec![y]);
    g.outputs.push(y);
    let s = Session::from_graph(g, &SessionOptions::default()).unwrap();
    let t1 = Tensor::from_vec(&[1, 2], vec![1.0f32, 2.0]).unwrap();
    let t3 = Tensor::from_vec(&[3, 2], vec![1.0f32; 6]).unwrap();
    let err = s.run(&[("a", &t1), ("b", &t3)]).unwrap_err().to_string();
    assert!(err.contains("batch") && err.contains("'a'") && err.contains("'b'"), "{err}");
}

/// x → Tanh → Reshape → Tanh → Flatten → Tanh → Reshape, added to the first
/// Tanh; the first Reshape is an output too. Reshape and Flatten change no
/// byte, so the CPU plan places their outputs on their inputs' bytes: the
/// owner must then live as long as its aliases are read.
fn reshape_chain() -> Graph {
    let mut g = Graph::new(17);
    let x = g.add_value("x", Fact::new(DType::F32, Shape::new(vec![Dim::Sym("batch".into()), Dim::Fixed(8)])));
    g.inputs.push(x);
    let unknown = || Fact::new(DType::F32, Shape::unknown());
    let quads = g.add_constant("quads", Tensor::from_vec(&[2], vec![-1i64, 4]).unwrap());
    let rows = g.add_constant("rows", Tensor::from_vec(&[2], vec![-1i64, 8]).unwrap());
    let names = ["t1", "r", "u", "f", "v", "w", "y"];
    let [t1, r, u, f, v, w, y] = names.map(|n| g.add_value(n, unknown()));
    g.add_node("tanh1", Op::Unary(UnaryOp::Tanh), vec![Some(x)], vec![t1]);
    g.add_node("reshape1", Op::Reshape { allowzero: false }, vec![Some(t1), Some(quads)], vec![r]);
    g.add_node("tanh2", Op::Unary(UnaryOp::Tanh), vec![Some(r)], vec![u]);
    g.add_node("flatten", Op::Flatten { axis: 0 }, vec![Some(u)], vec![f]);
    g.add_node("tanh3", Op::Unary(UnaryOp::Tanh), vec![Some(f)], vec![v]);
    g.add_node("reshape2", Op::Reshape { allowzero: false }, vec![Some(v), Some(rows)], vec![w]);
    g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(w), Some(t1)], vec![y]);
    g.outputs.extend([y, r]);
    g
}

#[test]
fn reshaped_values_share_bytes_and_stay_correct() {
    for optimize in [false, true] {
        let opts = SessionOptions { threads: Some(2), optimize, ..Default::default() };
        let s = Session::from_graph(reshape_chain(), &opts).unwrap();
        for batch in [1, 3, 6] {
            let x = values(batch * 8, 40 + batch as u64);
            let t = Tensor::from_vec(&[batch, 8], x.clone()).unwrap();
            let out = s.run(&[("x", &t)]).unwrap();
            let t1: Vec<f32> = x.iter().map(|v| v.tanh()).collect();
            let y: Vec<f32> = t1.iter().map(|v| v.tanh().tanh() + v).collect();
            assert_eq!(out[0].1.shape(), &[batch, 8]);
            assert_close(out[0].1.as_slice::<f32>().unwrap(), &y);
            assert_eq!(out[1].1.shape(), &[2 * batch, 4]);
            assert_close(out[1].1.as_slice::<f32>().unwrap(), &t1);
        }
    }
}
