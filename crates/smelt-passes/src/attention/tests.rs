use super::*;
use crate::testing::{f32_fact, f32s, unknown};
use smelt_ir::{Fact, Shape};

const HEADS: usize = 2;
const SEQ: usize = 5;
const DIM: usize = 4;

/// Attention graphs over inputs q [1, H, S, D], k [1, H, S, D] and v [1, H, S, D].
struct Builder {
    g: Graph,
    q: ValueId,
    k: ValueId,
    v: ValueId,
}

impl Builder {
    fn new() -> Builder {
        let mut g = Graph::new(17);
        let mut input = |name: &str| {
            let v = g.add_value(name, f32_fact(&[1, HEADS, SEQ, DIM]));
            g.inputs.push(v);
            v
        };
        let (q, k, v) = (input("q"), input("k"), input("v"));
        Builder { g, q, k, v }
    }

    fn input(&mut self, name: &str, fact: Fact) -> ValueId {
        let v = self.g.add_value(name, fact);
        self.g.inputs.push(v);
        v
    }

    fn constant(&mut self, value: f32) -> ValueId {
        let name = format!("c{}", self.g.values.len());
        self.g.add_constant(name, f32s(&[], &[value]))
    }

    fn node(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        let n = self.g.nodes.len();
        let out = self.g.add_value(format!("v{n}"), unknown(DType::F32));
        self.g.add_node(format!("n{n}"), op, inputs.iter().map(|&v| Some(v)).collect(), vec![out]);
        out
    }

    fn transpose(&mut self, x: ValueId, perm: &[usize]) -> ValueId {
        self.node(Op::Transpose { perm: Some(perm.to_vec()) }, &[x])
    }

    fn matmul(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.node(Op::MatMul { activation: None }, &[a, b])
    }

    fn softmax(&mut self, x: ValueId, axis: i64) -> ValueId {
        self.node(Op::Softmax { axis, coerce_2d: false }, &[x])
    }

    /// `q · kᵀ`, with kᵀ a Transpose swapping k's last two axes.
    fn scores(&mut self) -> ValueId {
        let (q, k) = (self.q, self.k);
        let kt = self.transpose(k, &[0, 1, 3, 2]);
        self.matmul(q, kt)
    }

    /// `Softmax(x, axis) · v`: the probabilities and the output.
    fn attend(&mut self, x: ValueId, axis: i64) -> (ValueId, ValueId) {
        let probs = self.softmax(x, axis);
        let v = self.v;
        (probs, self.matmul(probs, v))
    }

    /// BERT's chain on q and kᵀ: `q · kᵀ`, `/ 2`, `+ mask` (the mask the left
    /// operand when `mask_first`), Softmax, `· v`.
    fn bert_chain(&mut self, q: ValueId, kt: ValueId, v: ValueId, mask: ValueId, mask_first: bool) -> ValueId {
        let scores = self.matmul(q, kt);
        let root_d = self.constant(2.0);
        let scaled = self.node(Op::Binary(BinaryOp::Div), &[scores, root_d]);
        let operands = if mask_first { [mask, scaled] } else { [scaled, mask] };
        let masked = self.node(Op::Binary(BinaryOp::Add), &operands);
        let probs = self.softmax(masked, -1);
        self.matmul(probs, v)
    }

    fn finish(mut self, outputs: &[ValueId]) -> Graph {
        self.g.outputs.extend_from_slice(outputs);
        self.g.infer_facts().expect("test graphs are valid");
        self.g
    }
}

fn attention_nodes(g: &Graph) -> Vec<&Node> {
    g.nodes.iter().filter(|n| matches!(n.op, Op::Attention(_))).collect()
}

/// BERT's chain: q · kᵀ (a Transpose swapping the last two axes), `/ √d`, `+ mask`
/// (the mask on the left), Softmax, `· v`.
#[test]
fn bert_chain_becomes_one_node_reading_k_itself() {
    let mut b = Builder::new();
    let mask = b.input("mask", f32_fact(&[1, 1, 1, SEQ]));
    let (q, k, v) = (b.q, b.k, b.v);
    let kt = b.transpose(k, &[0, 1, 3, 2]);
    let out = b.bert_chain(q, kt, v, mask, true);
    let mut g = b.finish(&[out]);

    assert_eq!(fuse_attention(&mut g).unwrap(), 1);
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    let node = &g.nodes[0];
    let want = AttentionAttrs {
        scale: 0.5,
        keys_transposed: false,
        mask: AttentionMask::Add,
        layout: AttentionLayout::HeadMajor,
    };
    assert_eq!(node.op, Op::Attention(want));
    assert_eq!(node.inputs, vec![Some(q), Some(k), Some(v), Some(mask)]);
    assert_eq!(node.outputs, vec![out], "the fused node keeps the graph output");
    g.infer_facts().unwrap();
    assert_eq!(g.fact(out).shape, Shape::fixed(&[1, HEADS, SEQ, DIM]));
}

/// GPT-2's chain: kᵀ from a Transpose of more than the last two axes (kept),
/// `Where(causal, scores, min)`, Softmax on axis 3.
#[test]
fn gpt2_chain_with_a_causal_select() {
    let mut b = Builder::new();
    let causal = b.input("causal", Fact::new(DType::Bool, Shape::fixed(&[1, 1, SEQ, SEQ])));
    let (q, v) = (b.q, b.v);
    let kt_input = b.input("k_heads_last", f32_fact(&[1, SEQ, HEADS, DIM]));
    let kt = b.transpose(kt_input, &[0, 2, 3, 1]);
    let scores = b.matmul(q, kt);
    let inv = b.constant(0.25);
    let scaled = b.node(Op::Binary(BinaryOp::Mul), &[inv, scores]);
    let fill = b.constant(-3.4e38);
    let masked = b.node(Op::Where, &[causal, scaled, fill]);
    let probs = b.softmax(masked, 3);
    let out = b.matmul(probs, v);
    let mut g = b.finish(&[out]);

    assert_eq!(fuse_attention(&mut g).unwrap(), 1);
    let nodes = attention_nodes(&g);
    assert_eq!(nodes.len(), 1);
    let want = AttentionAttrs {
        scale: 0.25,
        keys_transposed: true,
        mask: AttentionMask::Select { fill: -3.4e38 },
        layout: AttentionLayout::HeadMajor,
    };
    assert_eq!(nodes[0].op, Op::Attention(want));
    assert_eq!(nodes[0].inputs, vec![Some(q), Some(kt), Some(v), Some(causal)]);
    assert_eq!(g.nodes.len(), 2, "the head transpose stays: {:?}", g.nodes);
}

/// Token-major projections `[1, S, H, D]` as exporters leave them: q and v through
/// `Transpose([0, 2, 1, 3])`, k through `[0, 2, 3, 1]` (kᵀ directly) or through
/// `[0, 2, 1, 3]` and a swap of the last two axes, the result back through
/// `[0, 2, 1, 3]`. Returns the graph, its inputs (q, k, v, mask) and its output.
fn token_major_chain(keys_in_two_steps: bool) -> (Graph, [ValueId; 4], ValueId) {
    let mut b = Builder::new();
    let projection = |b: &mut Builder, name: &str| b.input(name, f32_fact(&[1, SEQ, HEADS, DIM]));
    let (q0, k0, v0) = (projection(&mut b, "q0"), projection(&mut b, "k0"), projection(&mut b, "v0"));
    let mask = b.input("mask", f32_fact(&[1, 1, 1, SEQ]));
    let q = b.transpose(q0, &[0, 2, 1, 3]);
    let kt = if keys_in_two_steps {
        let k = b.transpose(k0, &[0, 2, 1, 3]);
        b.transpose(k, &[0, 1, 3, 2])
    } else {
        b.transpose(k0, &[0, 2, 3, 1])
    };
    let v = b.transpose(v0, &[0, 2, 1, 3]);
    let heads = b.bert_chain(q, kt, v, mask, false);
    let out = b.transpose(heads, &[0, 2, 1, 3]);
    (b.finish(&[out]), [q0, k0, v0, mask], out)
}

#[test]
fn transposes_around_the_chain_make_it_token_major() {
    for keys_in_two_steps in [false, true] {
        let (mut g, inputs, out) = token_major_chain(keys_in_two_steps);
        assert_eq!(fuse_attention(&mut g).unwrap(), 1);
        assert_eq!(g.nodes.len(), 1, "every Transpose is taken in: {:?}", g.nodes);
        let want = AttentionAttrs {
            scale: 0.5,
            keys_transposed: false,
            mask: AttentionMask::Add,
            layout: AttentionLayout::TokenMajor,
        };
        assert_eq!(g.nodes[0].op, Op::Attention(want));
        assert_eq!(g.nodes[0].inputs, inputs.map(Some).to_vec());
        assert_eq!(g.nodes[0].outputs, vec![out]);
        g.infer_facts().unwrap();
        assert_eq!(g.fact(out).shape, Shape::fixed(&[1, SEQ, HEADS, DIM]));
    }
}

/// One Transpose missing or read elsewhere: the chain is fused head-major and
/// all four Transposes stay.
#[test]
fn token_major_needs_all_four_transposes_private() {
    // The head-major result is also a graph output.
    let (mut g, _, _) = token_major_chain(false);
    let heads = g.nodes.last().and_then(|t| t.inputs[0]).expect("the final Transpose reads the · v product");
    g.outputs.push(heads);
    assert_eq!(fuse_attention(&mut g).unwrap(), 1);
    let nodes = attention_nodes(&g);
    assert!(matches!(&nodes[0].op, Op::Attention(a) if a.layout == AttentionLayout::HeadMajor), "{:?}", nodes[0]);
    assert_eq!(g.nodes.iter().filter(|n| matches!(n.op, Op::Transpose { .. })).count(), 4);

    // v is head-major already.
    let mut b = Builder::new();
    let q0 = b.input("q0", f32_fact(&[1, SEQ, HEADS, DIM]));
    let q = b.transpose(q0, &[0, 2, 1, 3]);
    let k = b.k;
    let kt = b.transpose(k, &[0, 1, 3, 2]);
    let scores = b.matmul(q, kt);
    let (_, heads) = b.attend(scores, -1);
    let out = b.transpose(heads, &[0, 2, 1, 3]);
    let mut g = b.finish(&[out]);
    assert_eq!(fuse_attention(&mut g).unwrap(), 1);
    let nodes = attention_nodes(&g);
    assert!(matches!(&nodes[0].op, Op::Attention(a) if a.layout == AttentionLayout::HeadMajor), "{:?}", nodes[0]);
}

#[test]
fn unscaled_unmasked_chain() {
    let mut b = Builder::new();
    let (q, k, v) = (b.q, b.k, b.v);
    let scores = b.scores();
    let (_, out) = b.attend(scores, -1);
    let mut g = b.finish(&[out]);
    assert_eq!(fuse_attention(&mut g).unwrap(), 1);
    let want = AttentionAttrs {
        scale: 1.0,
        keys_transposed: false,
        mask: AttentionMask::None,
        layout: AttentionLayout::HeadMajor,
    };
    assert_eq!(g.nodes[0].op, Op::Attention(want));
    assert_eq!(g.nodes[0].inputs, vec![Some(q), Some(k), Some(v)]);
}

/// Chains that must stay as they are, each with the reason.
#[test]
fn chains_that_are_not_fused() {
    // The probabilities are also a graph output: fusing would lose them.
    let mut b = Builder::new();
    let scores = b.scores();
    let (probs, out) = b.attend(scores, -1);
    let mut g = b.finish(&[out, probs]);
    assert_eq!(fuse_attention(&mut g).unwrap(), 0);

    // Softmax over another axis.
    let mut b = Builder::new();
    let scores = b.scores();
    let (_, out) = b.attend(scores, 2);
    let mut g = b.finish(&[out]);
    assert_eq!(fuse_attention(&mut g).unwrap(), 0);

    // A mask that widens the scores ([1, H, S, S] + [3, 1, S, S]).
    let mut b = Builder::new();
    let mask = b.input("mask", f32_fact(&[3, 1, SEQ, SEQ]));
    let scores = b.scores();
    let masked = b.node(Op::Binary(BinaryOp::Add), &[scores, mask]);
    let (_, out) = b.attend(masked, -1);
    let mut g = b.finish(&[out]);
    assert_eq!(fuse_attention(&mut g).unwrap(), 0);

    // A scale that is not a constant.
    let mut b = Builder::new();
    let s = b.input("s", f32_fact(&[]));
    let scores = b.scores();
    let scaled = b.node(Op::Binary(BinaryOp::Div), &[scores, s]);
    let (_, out) = b.attend(scaled, -1);
    let mut g = b.finish(&[out]);
    assert_eq!(fuse_attention(&mut g).unwrap(), 0);
}

/// f64 chains stay: the kernel is f32.
#[test]
fn f64_chains_are_left_alone() {
    let mut g = Graph::new(17);
    let fact = Fact::new(DType::F64, Shape::fixed(&[2, 3]));
    let (q, kt, v) = (g.add_value("q", fact.clone()), g.add_value("kt", fact.clone()), g.add_value("v", fact));
    g.inputs.extend([q, kt, v]);
    let node = |g: &mut Graph, op: Op, inputs: Vec<ValueId>| {
        let n = g.nodes.len();
        let out = g.add_value(format!("v{n}"), unknown(DType::F64));
        g.add_node(format!("n{n}"), op, inputs.into_iter().map(Some).collect(), vec![out]);
        out
    };
    let k = node(&mut g, Op::Transpose { perm: Some(vec![1, 0]) }, vec![kt]);
    let scores = node(&mut g, Op::MatMul { activation: None }, vec![q, k]);
    let probs = node(&mut g, Op::Softmax { axis: -1, coerce_2d: false }, vec![scores]);
    let out = node(&mut g, Op::MatMul { activation: None }, vec![probs, v]);
    g.outputs.push(out);
    g.infer_facts().unwrap();
    assert_eq!(fuse_attention(&mut g).unwrap(), 0);
}
