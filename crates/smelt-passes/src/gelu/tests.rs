use super::*;
use crate::testing::{f32_fact, f32s, unknown};
use smelt_ir::DType;

/// Builds graphs node by node: `x` is the graph input, every node output a fresh value.
struct Builder {
    g: Graph,
    x: ValueId,
}

impl Builder {
    fn new() -> Builder {
        let mut g = Graph::new(17);
        let x = g.add_value("x", f32_fact(&[2, 8]));
        g.inputs.push(x);
        Builder { g, x }
    }

    fn c(&mut self, v: f32) -> ValueId {
        let name = format!("c{}", self.g.values.len());
        self.g.add_constant(name, f32s(&[], &[v]))
    }

    fn node(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        let n = self.g.nodes.len();
        let out = self.g.add_value(format!("v{n}"), unknown(DType::F32));
        self.g.add_node(format!("n{n}"), op, inputs.iter().map(|&v| Some(v)).collect(), vec![out]);
        out
    }

    fn bin(&mut self, op: BinaryOp, a: ValueId, b: ValueId) -> ValueId {
        self.node(Op::Binary(op), &[a, b])
    }

    fn finish(mut self, y: ValueId) -> (Graph, ValueId, ValueId) {
        self.g.outputs.push(y);
        (self.g, self.x, y)
    }
}

/// BERT's spelling: x / √2 → Erf → + 1 → x * · → · * 0.5.
fn erf_form(b: &mut Builder, sqrt2: f32) -> ValueId {
    let x = b.x;
    let s = b.c(sqrt2);
    let e = b.bin(BinaryOp::Div, x, s);
    let e = b.node(Op::Unary(UnaryOp::Erf), &[e]);
    let one = b.c(1.0);
    let e = b.bin(BinaryOp::Add, e, one);
    let h = b.bin(BinaryOp::Mul, x, e);
    let half = b.c(0.5);
    b.bin(BinaryOp::Mul, h, half)
}

/// GPT-2's spelling of gelu_new.
fn tanh_form(b: &mut Builder) -> ValueId {
    let x = b.x;
    let c = b.c(0.5);
    let half = b.bin(BinaryOp::Mul, c, x);
    let three = b.c(3.0);
    let cube = b.bin(BinaryOp::Pow, x, three);
    let c = b.c(0.044715);
    let cube = b.bin(BinaryOp::Mul, c, cube);
    let inner = b.bin(BinaryOp::Add, x, cube);
    let c = b.c((2.0f64 / std::f64::consts::PI).sqrt() as f32);
    let inner = b.bin(BinaryOp::Mul, c, inner);
    let t = b.node(Op::Unary(UnaryOp::Tanh), &[inner]);
    let one = b.c(1.0);
    let t = b.bin(BinaryOp::Add, one, t);
    b.bin(BinaryOp::Mul, half, t)
}

fn assert_single_gelu(g: &Graph, x: ValueId, y: ValueId, tanh: bool) {
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    assert_eq!(g.nodes[0].op, Op::Unary(UnaryOp::Gelu { tanh }));
    assert_eq!(g.nodes[0].inputs, vec![Some(x)]);
    assert_eq!(g.nodes[0].outputs, vec![y]);
}

#[test]
fn erf_form_becomes_one_gelu() {
    let mut b = Builder::new();
    let y = erf_form(&mut b, std::f32::consts::SQRT_2);
    let (mut g, x, y) = b.finish(y);
    assert_eq!(fuse_gelu(&mut g).unwrap(), 1);
    assert_single_gelu(&g, x, y, false);
}

#[test]
fn tanh_form_becomes_one_gelu() {
    let mut b = Builder::new();
    let y = tanh_form(&mut b);
    let (mut g, x, y) = b.finish(y);
    assert_eq!(fuse_gelu(&mut g).unwrap(), 1);
    assert_single_gelu(&g, x, y, true);
}

#[test]
fn erf_form_with_half_first_and_reciprocal_scale() {
    // (x * 0.5) * (1 + erf(x * (1/√2)))
    let mut b = Builder::new();
    let x = b.x;
    let s = b.c(std::f32::consts::FRAC_1_SQRT_2);
    let e = b.bin(BinaryOp::Mul, s, x);
    let e = b.node(Op::Unary(UnaryOp::Erf), &[e]);
    let one = b.c(1.0);
    let u = b.bin(BinaryOp::Add, one, e);
    let c = b.c(0.5);
    let half = b.bin(BinaryOp::Mul, x, c);
    let y = b.bin(BinaryOp::Mul, u, half);
    let (mut g, x, y) = b.finish(y);
    assert_eq!(fuse_gelu(&mut g).unwrap(), 1);
    assert_single_gelu(&g, x, y, false);
}

#[test]
fn wrong_constant_is_not_gelu() {
    let mut b = Builder::new();
    let y = erf_form(&mut b, 1.5);
    let (mut g, _, _) = b.finish(y);
    assert_eq!(fuse_gelu(&mut g).unwrap(), 0);
    assert_eq!(g.nodes.len(), 5);
}

#[test]
fn chain_value_read_elsewhere_is_kept() {
    let mut b = Builder::new();
    let y = erf_form(&mut b, std::f32::consts::SQRT_2);
    // The Erf's output is also a graph output: fusing would lose it.
    let erf_out = b.g.nodes[1].outputs[0];
    b.g.outputs.push(erf_out);
    let (mut g, _, _) = b.finish(y);
    assert_eq!(fuse_gelu(&mut g).unwrap(), 0);
    assert_eq!(g.nodes.len(), 5);
}

#[test]
fn tanh_form_needs_the_same_x_in_the_cube() {
    let mut b = Builder::new();
    let other = b.g.add_value("other", f32_fact(&[2, 8]));
    b.g.inputs.push(other);
    let y = tanh_form(&mut b);
    // Point the Pow at another input: no longer GELU of one value.
    let pow = b.g.nodes.iter().position(|n| n.op == Op::Binary(BinaryOp::Pow)).unwrap();
    b.g.nodes[pow].inputs[0] = Some(other);
    let (mut g, _, _) = b.finish(y);
    assert_eq!(fuse_gelu(&mut g).unwrap(), 0);
}
