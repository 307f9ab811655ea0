use super::*;
use crate::testing::{f32_fact, f32s, fact, i64s, sym, unknown, ToyEval};
use smelt_ir::{BinaryOp, DType, Dim, Fact, UnaryOp};

const LIMIT: usize = DEFAULT_MAX_FOLDED_BYTES;

#[test]
fn constant_chain_folds_into_the_named_output() {
    // y = -(a + b) * x, with a, b constant: Add and Neg fold, Mul stays.
    let mut g = Graph::new(17);
    let a = g.add_constant("a", f32s(&[2], &[1.0, 2.0]));
    let b = g.add_constant("b", f32s(&[2], &[10.0, 20.0]));
    let x = g.add_value("x", f32_fact(&[2]));
    let [sum, neg, y] = ["sum", "neg", "y"].map(|n| g.add_value(n, unknown(DType::F32)));
    g.inputs.push(x);
    g.outputs.extend([neg, y]);
    g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(a), Some(b)], vec![sum]);
    g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(sum)], vec![neg]);
    g.add_node("mul", Op::Binary(BinaryOp::Mul), vec![Some(neg), Some(x)], vec![y]);

    let outcome = fold_constants(&mut g, &ToyEval::default(), LIMIT).unwrap();
    assert_eq!(outcome.evaluated, 2);
    assert!(outcome.failures.is_empty());
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].name, "mul");
    // The folded graph output keeps its id and name, with an exact fact.
    assert_eq!(g.outputs, vec![neg, y]);
    assert_eq!(g.name(neg), "neg");
    assert_eq!(g.constant(neg).unwrap().as_slice::<f32>().unwrap(), &[-11.0, -22.0]);
    assert_eq!(g.fact(neg).shape, Shape::fixed(&[2]));
    assert_eq!(g.fact(neg).dtype, DType::F32);
}

#[test]
fn huge_constant_of_shape_is_refused_before_evaluation() {
    let mut g = Graph::new(17);
    let shape = g.add_constant("shape", i64s(&[2], &[65536, 65536]));
    let y = g.add_value("y", unknown(DType::F32));
    g.outputs.push(y);
    let value = f32s(&[1], &[0.0]);
    g.add_node("fill", Op::ConstantOfShape { value }, vec![Some(shape)], vec![y]);

    let eval = ToyEval::default();
    let outcome = fold_constants(&mut g, &eval, LIMIT).unwrap();
    assert_eq!(outcome.too_large, 1);
    assert_eq!(eval.calls.get(), 0);
    assert_eq!(g.nodes.len(), 1);
}

#[test]
fn outputs_over_the_limit_stay_nodes() {
    let mut g = Graph::new(17);
    let a = g.add_constant("a", f32s(&[4], &[1.0; 4]));
    let y = g.add_value("y", unknown(DType::F32));
    g.outputs.push(y);
    g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(a)], vec![y]);

    let outcome = fold_constants(&mut g, &ToyEval::default(), 8).unwrap();
    assert_eq!(outcome.too_large, 1);
    assert_eq!(g.nodes.len(), 1);
    assert!(g.constant(y).is_none());
}

#[test]
fn failed_evaluations_leave_the_node_and_are_reported() {
    let mut g = Graph::new(17);
    let a = g.add_constant("a", f32s(&[2], &[1.0, 4.0]));
    let [y, z] = ["y", "z"].map(|n| g.add_value(n, unknown(DType::F32)));
    g.outputs.push(z);
    g.add_node("sqrt", Op::Unary(UnaryOp::Sqrt), vec![Some(a)], vec![y]);
    g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(y)], vec![z]);

    let outcome = fold_constants(&mut g, &ToyEval::default(), LIMIT).unwrap();
    assert_eq!(outcome.folded(), 0);
    assert_eq!(outcome.failures.len(), 1);
    assert!(outcome.failures[0].contains("'sqrt' (Sqrt)"), "{:?}", outcome.failures);
    assert_eq!(g.nodes.len(), 2);
}

#[test]
fn results_that_contradict_the_facts_are_not_folded() {
    let mut g = Graph::new(17);
    let a = g.add_constant("a", f32s(&[2], &[1.0, 4.0]));
    let y = g.add_value("y", f32_fact(&[3]));
    g.outputs.push(y);
    g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(a)], vec![y]);

    let outcome = fold_constants(&mut g, &ToyEval::default(), LIMIT).unwrap();
    assert_eq!(outcome.folded(), 0);
    assert!(outcome.failures[0].contains("its fact says [3]"), "{:?}", outcome.failures);
}

#[test]
fn outputs_already_known_constant_drop_their_node_without_evaluation() {
    let mut g = Graph::new(17);
    let x = g.add_value("x", f32_fact(&[2, 3]));
    let shape = g.add_value("shape", Fact::constant(Arc::new(i64s(&[2], &[2, 3]))));
    g.inputs.push(x);
    g.outputs.push(shape);
    g.add_node("shape", Op::Shape { start: 0, end: None }, vec![Some(x)], vec![shape]);

    let eval = ToyEval::default();
    let outcome = fold_constants(&mut g, &eval, LIMIT).unwrap();
    assert_eq!(outcome.from_facts, 1);
    assert_eq!(eval.calls.get(), 0);
    assert!(g.nodes.is_empty());
}

/// The chain exporters emit to flatten `x[batch, 3, h, w]` to `[batch, 3 * h * w]`
/// in pieces: `Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), Unsqueeze(Gather(Shape(x), 1)), [-1]))`.
fn reshape_chain(x_dims: &[Dim]) -> Graph {
    let mut g = Graph::new(17);
    let x = g.add_value("x", fact(DType::F32, x_dims));
    g.inputs.push(x);
    let i0 = g.add_constant("i0", i64s(&[], &[0]));
    let i1 = g.add_constant("i1", i64s(&[], &[1]));
    let axes = g.add_constant("axes", i64s(&[1], &[0]));
    let minus_one = g.add_constant("minus_one", i64s(&[1], &[-1]));
    let [shape, d0, d1, u0, u1, target, y] =
        ["shape", "d0", "d1", "u0", "u1", "target", "y"].map(|n| g.add_value(n, unknown(DType::I64)));
    g.values[y].fact = unknown(DType::F32);
    g.outputs.push(y);
    g.add_node("shape", Op::Shape { start: 0, end: None }, vec![Some(x)], vec![shape]);
    g.add_node("gather0", Op::Gather { axis: 0 }, vec![Some(shape), Some(i0)], vec![d0]);
    g.add_node("gather1", Op::Gather { axis: 0 }, vec![Some(shape), Some(i1)], vec![d1]);
    g.add_node("unsqueeze0", Op::Unsqueeze, vec![Some(d0), Some(axes)], vec![u0]);
    g.add_node("unsqueeze1", Op::Unsqueeze, vec![Some(d1), Some(axes)], vec![u1]);
    g.add_node("concat", Op::Concat { axis: 0 }, vec![Some(u0), Some(u1), Some(minus_one)], vec![target]);
    g.add_node("reshape", Op::Reshape { allowzero: false }, vec![Some(x), Some(target)], vec![y]);
    g
}

fn node_names(g: &Graph) -> Vec<&str> {
    g.nodes.iter().map(|n| n.name.as_str()).collect()
}

#[test]
fn partial_shape_chain_folds_the_fixed_dims_only() {
    let mut g = reshape_chain(&[sym("batch"), Dim::Fixed(3), Dim::Fixed(8), Dim::Fixed(8)]);
    let outcome = fold_constants(&mut g, &ToyEval::default(), LIMIT).unwrap();
    assert_eq!(outcome.from_facts, 2);
    assert_eq!(node_names(&g), ["shape", "gather0", "unsqueeze0", "concat", "reshape"]);
    let u1 = g.find_value("u1").unwrap();
    assert_eq!(g.constant(u1).unwrap().as_ref(), &i64s(&[1], &[3]));
    assert_eq!(g.fact(u1).shape, Shape::fixed(&[1]));
}

#[test]
fn fully_fixed_shape_chain_folds_to_a_constant_reshape_target() {
    let mut g = reshape_chain(&[Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(8), Dim::Fixed(8)]);
    let outcome = fold_constants(&mut g, &ToyEval::default(), LIMIT).unwrap();
    // The toy evaluator cannot run Concat, so shape facts fold it too.
    assert_eq!(outcome.from_facts, 6);
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(node_names(&g), ["reshape"]);
    let target = g.nodes[0].inputs[1].unwrap();
    assert_eq!(g.constant(target).unwrap().as_ref(), &i64s(&[3], &[2, 3, -1]));
}

/// w[2,3] → Transpose → t[3,2], read by `reader` as its input `slot`.
fn transposed_weight(reader: Op, slot: usize) -> (Graph, ValueId) {
    let mut g = Graph::new(17);
    let w = g.add_constant("w", f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    let x = g.add_value("x", f32_fact(&[4, 3]));
    let [t, y] = ["t", "y"].map(|n| g.add_value(n, unknown(DType::F32)));
    g.inputs.push(x);
    g.outputs.push(y);
    g.add_node("transpose", Op::Transpose { perm: None }, vec![Some(w)], vec![t]);
    let mut inputs = vec![Some(x), Some(x)];
    inputs[slot] = Some(t);
    g.add_node("reader", reader, inputs, vec![y]);
    (g, t)
}

#[test]
fn transposed_matmul_weights_fold_whatever_their_size() {
    let (mut g, t) = transposed_weight(Op::MatMul { activation: None }, 1);
    let outcome = fold_constants(&mut g, &ToyEval::default(), 8).unwrap();
    assert_eq!((outcome.evaluated, outcome.too_large), (1, 0));
    assert_eq!(g.nodes.len(), 1);
    let folded = g.constant(t).expect("folded");
    assert_eq!(folded.shape(), &[3, 2]);
    assert_eq!(folded.as_slice::<f32>().unwrap(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}

#[test]
fn transposes_read_otherwise_keep_the_limit() {
    // As MatMul's left operand, and as the input of an elementwise op.
    for (reader, slot) in [(Op::MatMul { activation: None }, 0), (Op::Binary(BinaryOp::Add), 1)] {
        let (mut g, t) = transposed_weight(reader, slot);
        let outcome = fold_constants(&mut g, &ToyEval::default(), 8).unwrap();
        assert_eq!(outcome.too_large, 1);
        assert!(g.constant(t).is_none());
    }
}
