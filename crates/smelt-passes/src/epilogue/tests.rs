use super::*;
use crate::testing::{f32_fact, f32s, unknown};
use smelt_ir::{AutoPad, DType};

fn conv_op() -> Op {
    Op::Conv(ConvAttrs {
        kernel_shape: None,
        strides: vec![],
        pads: vec![],
        dilations: vec![],
        group: 1,
        auto_pad: AutoPad::NotSet,
        activation: None,
    })
}

fn input_constant(g: &Graph, node: usize, slot: usize) -> Vec<f32> {
    let v = g.nodes[node].inputs[slot].expect("input present");
    g.constant(v).expect("a constant").as_slice::<f32>().unwrap().to_vec()
}

/// x[1,1,4,4] → Conv(W[2,1,1,1], bias?) → c → Add(c, addend) → s; returns the graph
/// and `s`, which is not yet an output or read by anything.
fn conv_add(bias: Option<&[f32]>, addend: Tensor) -> (Graph, ValueId) {
    let mut g = Graph::new(17);
    let x = g.add_value("x", f32_fact(&[1, 1, 4, 4]));
    let w = g.add_constant("w", f32s(&[2, 1, 1, 1], &[1.0, 2.0]));
    let b = bias.map(|b| g.add_constant("b", f32s(&[2], b)));
    let addend = g.add_constant("addend", addend);
    let [c, s] = ["c", "s"].map(|n| g.add_value(n, unknown(DType::F32)));
    g.inputs.push(x);
    g.add_node("conv", conv_op(), vec![Some(x), Some(w), b], vec![c]);
    g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(c), Some(addend)], vec![s]);
    (g, s)
}

#[test]
fn conv_add_relu_fuses_in_two_steps() {
    let (mut g, s) = conv_add(Some(&[1.0, 2.0]), f32s(&[1, 2, 1, 1], &[10.0, 20.0]));
    let y = g.add_value("y", unknown(DType::F32));
    g.outputs.push(y);
    g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(s)], vec![y]);

    assert_eq!(fuse_epilogues(&mut g).unwrap(), FuseOutcome { biases: 1, activations: 0 });
    assert_eq!(fuse_epilogues(&mut g).unwrap(), FuseOutcome { biases: 0, activations: 1 });
    assert_eq!(fuse_epilogues(&mut g).unwrap(), FuseOutcome::default());
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].name, "conv");
    assert_eq!(g.nodes[0].outputs, vec![y]);
    assert_eq!(g.nodes[0].op.activation(), Some(&UnaryOp::Relu));
    assert_eq!(input_constant(&g, 0, 2), [11.0, 22.0]);
}

#[test]
fn conv_without_bias_gets_one() {
    let (mut g, s) = conv_add(None, f32s(&[2, 1, 1], &[3.0, 4.0]));
    g.outputs.push(s);
    assert_eq!(fuse_epilogues(&mut g).unwrap().biases, 1);
    assert_eq!(g.nodes[0].inputs.len(), 3);
    assert_eq!(input_constant(&g, 0, 2), [3.0, 4.0]);
    assert_eq!(g.nodes[0].outputs, vec![s]);
}

#[test]
fn conv_add_along_another_axis_is_not_a_bias() {
    // [2] broadcasts along the last (width) axis, not the channels.
    let (mut g, s) = conv_add(None, f32s(&[2], &[3.0, 4.0]));
    g.outputs.push(s);
    assert_eq!(fuse_epilogues(&mut g).unwrap(), FuseOutcome::default());
    // A constant of higher rank than the output would add an axis.
    let (mut g, s) = conv_add(None, f32s(&[1, 1, 2, 1, 1], &[3.0, 4.0]));
    g.outputs.push(s);
    assert_eq!(fuse_epilogues(&mut g).unwrap(), FuseOutcome::default());
}

#[test]
fn intermediate_graph_outputs_are_not_fused_away() {
    let (mut g, s) = conv_add(None, f32s(&[2, 1, 1], &[3.0, 4.0]));
    let c = g.find_value("c").unwrap();
    g.outputs.extend([c, s]);
    assert_eq!(fuse_epilogues(&mut g).unwrap(), FuseOutcome::default());
}

/// x[5,3] → MatMul(W[3,2]) → m; returns the graph and `m`.
fn matmul() -> (Graph, ValueId) {
    let mut g = Graph::new(17);
    let x = g.add_value("x", f32_fact(&[5, 3]));
    let w = g.add_constant("w", f32s(&[3, 2], &[1.0; 6]));
    let m = g.add_value("m", unknown(DType::F32));
    g.inputs.push(x);
    g.add_node("matmul", Op::MatMul { activation: None }, vec![Some(x), Some(w)], vec![m]);
    (g, m)
}

#[test]
fn matmul_takes_a_bias_from_either_side_of_the_add() {
    let (mut g, m) = matmul();
    let bias = g.add_constant("bias", f32s(&[2], &[0.5, -0.5]));
    let y = g.add_value("y", unknown(DType::F32));
    g.outputs.push(y);
    g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(bias), Some(m)], vec![y]);

    assert_eq!(fuse_epilogues(&mut g).unwrap().biases, 1);
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(input_constant(&g, 0, 2), [0.5, -0.5]);
    assert_eq!(g.nodes[0].outputs, vec![y]);
}

#[test]
fn matmul_read_twice_keeps_its_readers() {
    let (mut g, m) = matmul();
    let [y, z] = ["y", "z"].map(|n| g.add_value(n, unknown(DType::F32)));
    g.outputs.extend([y, z]);
    g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(m)], vec![y]);
    g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(m)], vec![z]);
    assert_eq!(fuse_epilogues(&mut g).unwrap(), FuseOutcome::default());
}

#[test]
fn clip_with_constant_bounds_becomes_a_clip_activation() {
    let (mut g, m) = matmul();
    let zero = g.add_constant("zero", f32s(&[], &[0.0]));
    let y = g.add_value("y", unknown(DType::F32));
    g.outputs.push(y);
    g.add_node("clip", Op::Clip, vec![Some(m), Some(zero), None], vec![y]);

    assert_eq!(fuse_epilogues(&mut g).unwrap().activations, 1);
    assert_eq!(g.nodes[0].op, Op::MatMul { activation: Some(UnaryOp::Clip { min: 0.0, max: f32::INFINITY }) });
}

#[test]
fn clip_with_a_runtime_bound_stays() {
    let (mut g, m) = matmul();
    let max = g.add_value("max", f32_fact(&[]));
    let y = g.add_value("y", unknown(DType::F32));
    g.inputs.push(max);
    g.outputs.push(y);
    g.add_node("clip", Op::Clip, vec![Some(m), None, Some(max)], vec![y]);
    assert_eq!(fuse_epilogues(&mut g).unwrap(), FuseOutcome::default());
}

#[test]
fn gemm_without_c_takes_a_row_bias() {
    let mut g = Graph::new(17);
    let a = g.add_value("a", f32_fact(&[4, 3]));
    // trans_b: B is [N, K] = [2, 3].
    let b = g.add_constant("b", f32s(&[2, 3], &[1.0; 6]));
    let bias = g.add_constant("bias", f32s(&[1, 2], &[7.0, 8.0]));
    let [m, y] = ["m", "y"].map(|n| g.add_value(n, unknown(DType::F32)));
    g.inputs.push(a);
    g.outputs.push(y);
    let gemm = Op::Gemm { alpha: 1.0, beta: 0.5, trans_a: false, trans_b: true, activation: None };
    g.add_node("gemm", gemm, vec![Some(a), Some(b)], vec![m]);
    g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(m), Some(bias)], vec![y]);

    assert_eq!(fuse_epilogues(&mut g).unwrap().biases, 1);
    assert_eq!(g.nodes[0].op, Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, activation: None });
    assert_eq!(input_constant(&g, 0, 2), [7.0, 8.0]);
}

#[test]
fn only_supported_activations_fuse() {
    for (activation, fuses) in [
        (UnaryOp::Gelu { tanh: false }, true),
        (UnaryOp::HardSigmoid { alpha: 0.2, beta: 0.5 }, true),
        (UnaryOp::Elu { alpha: 1.0 }, true),
        (UnaryOp::Exp, false),
        (UnaryOp::Softplus, false),
    ] {
        let (mut g, m) = matmul();
        let y = g.add_value("y", unknown(DType::F32));
        g.outputs.push(y);
        g.add_node("act", Op::Unary(activation.clone()), vec![Some(m)], vec![y]);
        let fused = fuse_epilogues(&mut g).unwrap().activations == 1;
        assert_eq!(fused, fuses, "{activation:?}");
    }
}
