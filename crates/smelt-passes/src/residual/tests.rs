use super::*;
use crate::epilogue::fuse_epilogues;
use crate::testing::{f32_fact, f32s, unknown};
use smelt_ir::{AutoPad, ConvAttrs, DType, UnaryOp};

fn conv_op(activation: Option<UnaryOp>) -> Op {
    Op::Conv(ConvAttrs {
        kernel_shape: None,
        strides: vec![],
        pads: vec![0; 4],
        dilations: vec![],
        group: 1,
        auto_pad: AutoPad::NotSet,
        activation,
    })
}

struct Builder {
    g: Graph,
}

impl Builder {
    fn new() -> Builder {
        Builder { g: Graph::new(17) }
    }

    fn input(&mut self, name: &str, dims: &[usize]) -> ValueId {
        let v = self.g.add_value(name, f32_fact(dims));
        self.g.inputs.push(v);
        v
    }

    fn node(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        let n = self.g.nodes.len();
        let out = self.g.add_value(format!("v{n}"), unknown(DType::F32));
        self.g.add_node(format!("n{n}"), op, inputs.iter().map(|&v| Some(v)).collect(), vec![out]);
        out
    }

    /// A 1×1 Conv from 4 to 4 channels, with a bias.
    fn conv(&mut self, x: ValueId, activation: Option<UnaryOp>) -> ValueId {
        let n = self.g.values.len();
        let w = self.g.add_constant(format!("w{n}"), f32s(&[4, 4, 1, 1], &[0.5; 16]));
        let b = self.g.add_constant(format!("b{n}"), f32s(&[4], &[0.1; 4]));
        self.node(conv_op(activation), &[x, w, b])
    }

    fn finish(mut self, outputs: &[ValueId]) -> Graph {
        self.g.outputs.extend_from_slice(outputs);
        self.g.infer_facts().expect("test graphs are valid");
        self.g
    }
}

/// A ResNet block's tail: the skip branch (a downsample Conv) is computed after
/// the main branch's Conv, so the fused node must sit where the Add was.
#[test]
fn skip_connection_joins_the_conv_at_the_adds_place() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4, 3, 3]);
    let main = b.conv(x, None);
    let skip = b.conv(x, Some(UnaryOp::Relu));
    let sum = b.node(Op::Binary(BinaryOp::Add), &[main, skip]);
    let y = b.node(Op::Unary(UnaryOp::Relu), &[sum]);
    let mut g = b.finish(&[y]);

    assert_eq!(fuse_residual(&mut g).unwrap(), 1);
    assert_eq!(g.nodes.len(), 3);
    // The skip Conv first, then the fused Conv reading its output.
    assert_eq!(g.nodes[0].outputs, vec![skip]);
    let fused = &g.nodes[1];
    assert_eq!(fused.op, conv_op(None));
    assert_eq!(fused.inputs.len(), 4);
    assert_eq!(fused.inputs[3], Some(skip));
    assert_eq!(fused.outputs, vec![sum]);
    g.infer_facts().unwrap();

    // The Relu after the sum then joins as the activation, applied after Z.
    assert_eq!(fuse_epilogues(&mut g).unwrap().activations, 1);
    let fused = g.nodes.iter().find(|n| n.inputs.len() == 4).unwrap();
    assert_eq!(fused.op, conv_op(Some(UnaryOp::Relu)));
    assert_eq!(fused.outputs, vec![y]);
}

#[test]
fn identity_skip_and_either_operand_order() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4, 3, 3]);
    let main = b.conv(x, None);
    let sum = b.node(Op::Binary(BinaryOp::Add), &[x, main]);
    let mut g = b.finish(&[sum]);
    assert_eq!(fuse_residual(&mut g).unwrap(), 1);
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].inputs[3], Some(x));
    assert_eq!(g.outputs, vec![sum], "the graph output keeps its value");
}

#[test]
fn adds_that_stay() {
    // The Conv already has an activation: the sum would come after it.
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4, 3, 3]);
    let main = b.conv(x, Some(UnaryOp::Relu));
    let sum = b.node(Op::Binary(BinaryOp::Add), &[main, x]);
    let mut g = b.finish(&[sum]);
    assert_eq!(fuse_residual(&mut g).unwrap(), 0);

    // A broadcasting addend is a bias-like Add, not a residual.
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4, 3, 3]);
    let row = b.input("row", &[1, 1, 1, 3]);
    let main = b.conv(x, None);
    let sum = b.node(Op::Binary(BinaryOp::Add), &[main, row]);
    let mut g = b.finish(&[sum]);
    assert_eq!(fuse_residual(&mut g).unwrap(), 0);

    // The Conv's output is read elsewhere too.
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4, 3, 3]);
    let main = b.conv(x, None);
    let sum = b.node(Op::Binary(BinaryOp::Add), &[main, x]);
    let mut g = b.finish(&[sum, main]);
    assert_eq!(fuse_residual(&mut g).unwrap(), 0);
}

/// A transformer's output projection: `Add(Add(MatMul(x, W), bias), h)`. Epilogue
/// fusion gives the MatMul its bias; the residual then joins as input 3. A
/// MatMul with an activation, or a sum that broadcasts, stays as it is.
#[test]
fn projection_residual_joins_the_matmul_after_its_bias() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 5, 4]);
    let h = b.input("h", &[2, 5, 4]);
    let w = b.g.add_constant("w", f32s(&[4, 4], &[0.25; 16]));
    let bias = b.g.add_constant("bias", f32s(&[4], &[0.1; 4]));
    let mm = b.node(Op::MatMul { activation: None }, &[x, w]);
    let biased = b.node(Op::Binary(BinaryOp::Add), &[mm, bias]);
    let sum = b.node(Op::Binary(BinaryOp::Add), &[h, biased]);
    let gelu = b.node(Op::MatMul { activation: Some(UnaryOp::Relu) }, &[x, w]);
    let broadcast_in = b.input("row", &[4]);
    let not_same_shape = b.node(Op::Binary(BinaryOp::Add), &[gelu, broadcast_in]);
    let mut g = b.finish(&[sum, not_same_shape]);

    // Before the bias is fused, the residual Add reads the bias Add: nothing to do.
    assert_eq!(fuse_matmul_residual(&mut g).unwrap(), 0);
    assert_eq!(fuse_epilogues(&mut g).unwrap().biases, 1);
    assert_eq!(fuse_matmul_residual(&mut g).unwrap(), 1);
    g.infer_facts().unwrap();
    let fused = g.nodes.iter().find(|n| n.outputs == [sum]).unwrap();
    assert_eq!(fused.op, Op::MatMul { activation: None });
    assert_eq!(fused.inputs.len(), 4);
    assert_eq!(fused.inputs[0], Some(x));
    assert_eq!(fused.inputs[3], Some(h));
    // The Conv pass leaves MatMuls alone, and the activated MatMul keeps its Add.
    assert_eq!(fuse_residual(&mut g).unwrap(), 0);
    assert!(g.nodes.iter().any(|n| n.outputs == [not_same_shape] && n.op == Op::Binary(BinaryOp::Add)));
}
