//! Shape inference over the op chains real models use (ResNet, BERT, GPT-2 as
//! exported by PyTorch), with symbolic batch and sequence dims, and the run-time
//! guarantee that fixed inputs give fixed outputs for every op.

use super::test_util::*;
use crate::{
    AutoPad, BinaryOp, ConvAttrs, ConvTransposeAttrs, CoordinateTransform, DType, Dim, Fact, KeepAspectRatioPolicy,
    NearestMode, Op, PadMode, PoolAttrs, ReduceKind, ResizeAttrs, ResizeMode, ScatterReduction, Shape, Tensor, UnaryOp,
    VariadicOp,
};

fn shape_of(x: &Fact) -> Fact {
    one(&Op::Shape { start: 0, end: None }, &[x])
}

/// `Unsqueeze(Gather(Shape(x), i), [0])`: one dim of `x` as a 1-element vector.
fn dim_vec(x: &Fact, i: i64) -> Fact {
    let g = one(&Op::Gather { axis: 0 }, &[&shape_of(x), &i64_scalar(i)]);
    one(&Op::Unsqueeze, &[&g, &i64s(&[0])])
}

fn concat(parts: &[&Fact]) -> Fact {
    one(&Op::Concat { axis: 0 }, parts)
}

fn reshape(x: &Fact, s: &Fact) -> Fact {
    one(&Op::Reshape { allowzero: false }, &[x, s])
}

fn matmul(a: &Fact, b: &Fact) -> Fact {
    one(&Op::MatMul { activation: None }, &[a, b])
}

fn transpose(x: &Fact, perm: &[usize]) -> Fact {
    one(&Op::Transpose { perm: Some(perm.to_vec()) }, &[x])
}

fn add(a: &Fact, b: &Fact) -> Fact {
    one(&Op::Binary(BinaryOp::Add), &[a, b])
}

#[test]
fn resnet_head_with_symbolic_batch() {
    let x = f32(shape!["N", 2048, 7, 7]);
    let pooled = one(&Op::GlobalAveragePool, &[&x]);
    assert_eq!(pooled.shape, shape!["N", 2048, 1, 1]);
    // torch: x.view(x.size(0), -1)
    let flat = reshape(&pooled, &concat(&[&dim_vec(&pooled, 0), &i64s(&[-1])]));
    assert_eq!(flat.shape, shape!["N", 2048]);
    let gemm = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, activation: None };
    let logits = one(&gemm, &[&flat, &f32(shape![1000, 2048]), &f32(shape![1000])]);
    assert_eq!(logits.shape, shape!["N", 1000]);
    assert_eq!(one(&Op::Flatten { axis: 1 }, &[&pooled]).shape, shape!["N", 2048]);
}

#[test]
fn bert_self_attention() {
    let ids = fact(DType::I64, shape!["batch", "seq"]);
    let h = one(&Op::Gather { axis: 0 }, &[&f32(shape![30522, 768]), &ids]);
    assert_eq!(h.shape, shape!["batch", "seq", 768]);

    // Extended attention mask: (1 - mask[:, None, None, :]) * -10000.
    let mask = one(&Op::Unsqueeze, &[&fact(DType::I64, shape!["batch", "seq"]), &i64s(&[1, 2])]);
    let mask = one(&Op::Cast { to: DType::F32 }, &[&mask]);
    let mask = one(&Op::Binary(BinaryOp::Sub), &[&f32_scalar(1.0), &mask]);
    let mask = one(&Op::Binary(BinaryOp::Mul), &[&mask, &f32_scalar(-10000.0)]);
    assert_eq!(mask.shape, shape!["batch", 1, 1, "seq"]);

    let heads = |x: &Fact| {
        let proj = add(&matmul(x, &f32(shape![768, 768])), &f32(shape![768]));
        let s = concat(&[&dim_vec(&proj, 0), &dim_vec(&proj, 1), &i64s(&[12]), &i64s(&[64])]);
        assert_eq!(
            dims_value(&s),
            vec![Dim::Sym("batch".into()), Dim::Sym("seq".into()), Dim::Fixed(12), Dim::Fixed(64)]
        );
        reshape(&proj, &s)
    };
    let q = transpose(&heads(&h), &[0, 2, 1, 3]);
    let k = transpose(&heads(&h), &[0, 2, 3, 1]);
    let v = transpose(&heads(&h), &[0, 2, 1, 3]);
    assert_eq!(q.shape, shape!["batch", 12, "seq", 64]);
    assert_eq!(k.shape, shape!["batch", 12, 64, "seq"]);
    let scores = one(&Op::Binary(BinaryOp::Div), &[&matmul(&q, &k), &f32_scalar(8.0)]);
    let scores = add(&scores, &mask);
    assert_eq!(scores.shape, shape!["batch", 12, "seq", "seq"]);
    let probs = one(&Op::Softmax { axis: -1, coerce_2d: false }, &[&scores]);
    let ctx = transpose(&matmul(&probs, &v), &[0, 2, 1, 3]);
    assert_eq!(ctx.shape, shape!["batch", "seq", 12, 64]);
    let merged = reshape(&ctx, &concat(&[&dim_vec(&ctx, 0), &dim_vec(&ctx, 1), &i64s(&[768])]));
    assert_eq!(merged.shape, shape!["batch", "seq", 768]);
    let ln = Op::LayerNormalization { axis: -1, epsilon: 1e-12 };
    let out = one(&ln, &[&add(&merged, &h), &f32(shape![768]), &f32(shape![768])]);
    assert_eq!(out.shape, shape!["batch", "seq", 768]);
}

#[test]
fn gpt2_block_patterns() {
    let ids = fact(DType::I64, shape!["batch", "seq"]);
    // position_ids = arange(0, seq).unsqueeze(0)
    let seq = one(&Op::Gather { axis: 0 }, &[&shape_of(&ids), &i64_scalar(-1)]);
    let pos = one(&Op::Range, &[&i64_scalar(0), &seq, &i64_scalar(1)]);
    let pos = one(&Op::Unsqueeze, &[&pos, &i64s(&[0])]);
    assert_eq!(pos.shape, shape![1, "seq"]);
    let wte = one(&Op::Gather { axis: 0 }, &[&f32(shape![50257, 768]), &ids]);
    let wpe = one(&Op::Gather { axis: 0 }, &[&f32(shape![1024, 768]), &pos]);
    let h = add(&wte, &wpe);
    assert_eq!(h.shape, shape!["batch", "seq", 768]);

    // c_attn, then split into q, k, v.
    let qkv = add(&matmul(&h, &f32(shape![768, 2304])), &f32(shape![2304]));
    let parts = run(&Op::Split { axis: 2, num_outputs: Some(3) }, &[&qkv], 3);
    assert!(parts.iter().all(|p| p.shape == shape!["batch", "seq", 768]));
    // split_heads: x.view(x.size()[:-1] + (12, 64))
    let lead = one(&Op::Slice, &[&shape_of(&parts[0]), &i64s(&[0]), &i64s(&[-1])]);
    let new_shape = concat(&[&lead, &i64s(&[12, 64])]);
    let q = transpose(&reshape(&parts[0], &new_shape), &[0, 2, 1, 3]);
    let k = transpose(&reshape(&parts[1], &new_shape), &[0, 2, 3, 1]);
    let scores = matmul(&q, &k);
    assert_eq!(scores.shape, shape!["batch", 12, "seq", "seq"]);

    // Causal mask: bias[:, :, key_len - query_len : key_len, :key_len].
    let q_len = one(&Op::Gather { axis: 0 }, &[&shape_of(&q), &i64_scalar(-2)]);
    let k_len = one(&Op::Gather { axis: 0 }, &[&shape_of(&k), &i64_scalar(-1)]);
    let start = one(&Op::Binary(BinaryOp::Sub), &[&k_len, &q_len]);
    assert_eq!(start.constant.as_ref().unwrap().to_i64_vec(), vec![0]);
    let unsq = |f: &Fact| one(&Op::Unsqueeze, &[f, &i64s(&[0])]);
    let bias = fact(DType::Bool, shape![1, 1, 1024, 1024]);
    let rows = one(&Op::Slice, &[&bias, &unsq(&start), &unsq(&k_len), &i64s(&[2]), &i64s(&[1])]);
    let causal = one(&Op::Slice, &[&rows, &i64s(&[0]), &unsq(&k_len), &i64s(&[3]), &i64s(&[1])]);
    assert_eq!(causal.shape, shape![1, 1, "seq", "seq"]);
    let masked = one(&Op::Where, &[&causal, &scores, &f32_scalar(f32::MIN)]);
    assert_eq!(masked.shape, shape!["batch", 12, "seq", "seq"]);

    // An expanded causal mask: mask.expand(batch, 1, seq, seq).
    let target = concat(&[&dim_vec(&ids, 0), &i64s(&[1]), &unsq(&seq), &unsq(&seq)]);
    let expanded = one(&Op::Expand, &[&causal, &target]);
    assert_eq!(expanded.shape, shape!["batch", 1, "seq", "seq"]);

    // merge_heads: x.view(x.size()[:-2] + (768,))
    let ctx = transpose(&matmul(&one(&Op::Softmax { axis: -1, coerce_2d: false }, &[&masked]), &q), &[0, 2, 1, 3]);
    let lead = one(&Op::Slice, &[&shape_of(&ctx), &i64s(&[0]), &i64s(&[-2])]);
    let merged = reshape(&ctx, &concat(&[&lead, &i64s(&[768])]));
    assert_eq!(merged.shape, shape!["batch", "seq", 768]);

    // Next-token logits from the last position.
    let last = one(&Op::Gather { axis: 1 }, &[&merged, &i64_scalar(-1)]);
    assert_eq!(last.shape, shape!["batch", 768]);
}

#[test]
fn position_ids_with_a_past_are_unknown() {
    let past = fact(DType::F32, shape!["batch", 12, "past", 64]);
    let ids = fact(DType::I64, shape!["batch", "seq"]);
    let past_len = one(&Op::Gather { axis: 0 }, &[&shape_of(&past), &i64_scalar(2)]);
    let seq = one(&Op::Gather { axis: 0 }, &[&shape_of(&ids), &i64_scalar(1)]);
    let total = add(&past_len, &seq);
    let pos = one(&Op::Range, &[&past_len, &total, &i64_scalar(1)]);
    assert_eq!(pos.shape, shape!["?"]);
}

#[test]
fn reshape_cannot_hold_the_elements() {
    let x = f32(shape!["batch", 2048, 1, 1]);
    let e = super::infer(&Op::Reshape { allowzero: false }, &[Some(&f32(shape![2, 3, 4])), Some(&i64s(&[5, -1]))], 1)
        .unwrap_err();
    assert!(e.contains("24 elements"), "{e}");
    // Unknown values never fail.
    let open = reshape(&x, &fact(DType::I64, shape![2]));
    assert_eq!(open.shape, Shape::of_rank(2));
}

/// At run time every shape is fixed and every shape input is a constant: every op
/// must then give fully fixed output shapes.
#[test]
fn fixed_inputs_give_fixed_outputs() {
    let x4 = f32(shape![2, 4, 6, 6]);
    let x3 = f32(shape![2, 3, 8]);
    let x2 = f32(shape![4, 6]);
    let b = fact(DType::Bool, shape![4, 6]);
    let idx = fact(DType::I64, shape![2, 3]);
    let conv = ConvAttrs {
        kernel_shape: None,
        strides: vec![2, 2],
        pads: vec![1, 1, 1, 1],
        dilations: vec![],
        group: 1,
        auto_pad: AutoPad::NotSet,
        activation: None,
    };
    let pool = PoolAttrs {
        kernel_shape: vec![3, 3],
        strides: vec![2, 2],
        pads: vec![],
        dilations: vec![],
        auto_pad: AutoPad::NotSet,
        ceil_mode: true,
        count_include_pad: false,
        storage_order: 0,
    };
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
    let reduce = |kind| Op::Reduce { kind, keepdims: false, noop_with_empty_axes: false };
    let cases: Vec<(Op, Vec<Fact>, usize)> = vec![
        (Op::Unary(UnaryOp::Gelu { tanh: false }), vec![x2.clone()], 1),
        (Op::Binary(BinaryOp::Greater), vec![x2.clone(), f32(shape![6])], 1),
        (Op::Variadic(VariadicOp::Sum), vec![x2.clone(), f32(shape![1, 6])], 1),
        (Op::Clip, vec![x2.clone(), f32_scalar(0.0)], 1),
        (Op::Where, vec![b.clone(), x2.clone(), f32_scalar(0.0)], 1),
        (Op::Cast { to: DType::F16 }, vec![x2.clone()], 1),
        (Op::Dropout, vec![x2.clone()], 2),
        (Op::Hardmax { axis: 1, coerce_2d: true }, vec![x2.clone()], 1),
        (Op::MatMul { activation: None }, vec![x3.clone(), f32(shape![8, 5])], 1),
        (Op::Einsum { equation: "bij,jk->bki".into() }, vec![x3.clone(), f32(shape![8, 5])], 1),
        (Op::Conv(conv.clone()), vec![x4.clone(), f32(shape![8, 4, 3, 3])], 1),
        (
            Op::ConvTranspose(ConvTransposeAttrs {
                conv: conv.clone(),
                output_padding: vec![1, 1],
                output_shape: None,
            }),
            vec![x4.clone(), f32(shape![4, 8, 3, 3])],
            1,
        ),
        (Op::MaxPool(pool.clone()), vec![x4.clone()], 2),
        (Op::LpPool { attrs: pool, p: 2 }, vec![x4.clone()], 1),
        (Op::GlobalMaxPool, vec![x4.clone()], 1),
        (Op::InstanceNormalization { epsilon: 1e-5 }, vec![x4.clone(), f32(shape![4]), f32(shape![4])], 1),
        (Op::LayerNormalization { axis: 1, epsilon: 1e-5 }, vec![x3.clone(), f32(shape![3, 8])], 3),
        (Op::Reshape { allowzero: false }, vec![x3.clone(), i64s(&[0, -1])], 1),
        (Op::Squeeze, vec![f32(shape![1, 3, 1])], 1),
        (Op::Unsqueeze, vec![x2.clone(), i64s(&[-1])], 1),
        (Op::Split { axis: 1, num_outputs: None }, vec![x2.clone(), i64s(&[1, 5])], 2),
        (Op::Slice, vec![x3.clone(), i64s(&[-1, 7]), i64s(&[0, 0]), i64s(&[1, 2]), i64s(&[-1, -3])], 1),
        (Op::GatherND { batch_dims: 0 }, vec![x3.clone(), idx.clone()], 1),
        (Op::GatherElements { axis: 0 }, vec![x2.clone(), fact(DType::I64, shape![2, 6])], 1),
        (
            Op::ScatterND { reduction: ScatterReduction::None },
            vec![x2.clone(), fact(DType::I64, shape![3, 1]), f32(shape![3, 6])],
            1,
        ),
        (Op::Expand, vec![f32(shape![4, 1]), i64s(&[3, 1, 5])], 1),
        (Op::Tile, vec![x2.clone(), i64s(&[2, 3])], 1),
        (Op::Pad { mode: PadMode::Reflect }, vec![x2.clone(), i64s(&[1, 2, 1, 2])], 1),
        (Op::Size, vec![x2.clone()], 1),
        (Op::ConstantOfShape { value: Tensor::scalar(0.0f32) }, vec![i64s(&[2, 3])], 1),
        (Op::Range, vec![i64_scalar(0), i64_scalar(100), i64_scalar(3)], 1),
        (Op::TopK { axis: 1, largest: true, sorted: true }, vec![x2.clone(), i64s(&[3])], 2),
        (Op::OneHot { axis: -1 }, vec![idx.clone(), i64_scalar(5), f32s(&[0.0, 1.0])], 1),
        (Op::DepthToSpace { blocksize: 2, column_row: true }, vec![x4.clone()], 1),
        (Op::Resize(resize), vec![x4.clone(), f32s(&[]), f32s(&[1.0, 1.0, 1.5, 1.5])], 1),
        (reduce(ReduceKind::LogSumExp), vec![x3.clone(), i64s(&[1])], 1),
        (Op::ArgMin { axis: 2, keepdims: false, select_last_index: true }, vec![x3.clone()], 1),
        (Op::CumSum { exclusive: true, reverse: false }, vec![x3.clone(), i64_scalar(-1)], 1),
    ];
    for (op, inputs, n) in &cases {
        let refs: Vec<&Fact> = inputs.iter().collect();
        for (i, out) in run(op, &refs, *n).iter().enumerate() {
            assert!(out.shape.as_fixed().is_some(), "{} output {i} is {}", op.name(), out.shape);
        }
    }
}
