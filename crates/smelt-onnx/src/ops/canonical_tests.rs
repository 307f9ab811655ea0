//! Per-opset canonicalisation: old attribute forms and new input forms of the
//! same computation must import to the same op with the same constant inputs.

use crate::testing::*;
use crate::{Model, OnnxError, SUPPORTED_OPS};
use smelt_ir::*;

/// Loads a one-node model whose inputs are `x` (f32, [2, 3, 1, 4]) plus the given
/// initializers, and returns the graph.
fn one_node(opset: i64, n: crate::proto::NodeProto, inits: Vec<crate::proto::TensorProto>) -> Result<Model, OnnxError> {
    let outputs: Vec<String> = n.output.iter().filter(|o| !o.is_empty()).cloned().collect();
    let mut m = TestModel::new(opset).input("x", DType::F32, &["2", "3", "1", "4"]);
    for t in inits {
        m = m.init(t);
    }
    m = m.node(named(n, "n"));
    for o in &outputs {
        m = m.untyped_output(o);
    }
    m.load()
}

/// The imported node's op and, for each input, its constant value (or the name
/// of the non-constant value it reads).
#[derive(Debug, PartialEq)]
enum Arg {
    Value(String),
    Const(Tensor),
    Absent,
}

fn lowered(model: &Model) -> (Op, Vec<Arg>) {
    let g = &model.graph;
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    let n = &g.nodes[0];
    let args = n
        .inputs
        .iter()
        .map(|v| match v {
            None => Arg::Absent,
            Some(v) => match g.constant(*v) {
                Some(t) => Arg::Const(t.as_ref().clone()),
                None => Arg::Value(g.name(*v).to_string()),
            },
        })
        .collect();
    (n.op.clone(), args)
}

fn x() -> Arg {
    Arg::Value("x".into())
}

fn i64s(v: &[i64]) -> Arg {
    Arg::Const(Tensor::from_slice(&[v.len()], v).unwrap())
}

fn i64_init(name: &str, v: &[i64]) -> crate::proto::TensorProto {
    tensor(name, &[v.len() as i64], v)
}

#[test]
fn squeeze_and_unsqueeze_axes_attribute_becomes_input() {
    let old = one_node(11, node("Squeeze", &["x"], &["y"], vec![a_ints("axes", &[2])]), vec![]).unwrap();
    let new = one_node(13, node("Squeeze", &["x", "axes"], &["y"], vec![]), vec![i64_init("axes", &[2])]).unwrap();
    assert_eq!(lowered(&old), (Op::Squeeze, vec![x(), i64s(&[2])]));
    assert_eq!(lowered(&old), lowered(&new));
    // Without axes, Squeeze removes every 1-sized axis in both forms.
    let old = one_node(11, node("Squeeze", &["x"], &["y"], vec![]), vec![]).unwrap();
    assert_eq!(lowered(&old), (Op::Squeeze, vec![x()]));

    let old = one_node(9, node("Unsqueeze", &["x"], &["y"], vec![a_ints("axes", &[0, -1])]), vec![]).unwrap();
    let new = one_node(21, node("Unsqueeze", &["x", "a"], &["y"], vec![]), vec![i64_init("a", &[0, -1])]).unwrap();
    assert_eq!(lowered(&old), (Op::Unsqueeze, vec![x(), i64s(&[0, -1])]));
    assert_eq!(lowered(&old), lowered(&new));
    let err = one_node(11, node("Unsqueeze", &["x"], &["y"], vec![]), vec![]).unwrap_err().to_string();
    assert!(err.contains("'axes'") && err.contains("required"), "{err}");
}

#[test]
fn slice_attributes_become_inputs() {
    let attrs = vec![a_ints("starts", &[0, 1]), a_ints("ends", &[1, 3]), a_ints("axes", &[0, 1])];
    let old = one_node(9, node("Slice", &["x"], &["y"], attrs), vec![]).unwrap();
    let new = one_node(
        13,
        node("Slice", &["x", "s", "e", "a"], &["y"], vec![]),
        vec![i64_init("s", &[0, 1]), i64_init("e", &[1, 3]), i64_init("a", &[0, 1])],
    )
    .unwrap();
    assert_eq!(lowered(&old), (Op::Slice, vec![x(), i64s(&[0, 1]), i64s(&[1, 3]), i64s(&[0, 1])]));
    assert_eq!(lowered(&old), lowered(&new));
}

#[test]
fn pad_attributes_become_inputs_in_the_data_type() {
    let pads = [0, 0, 1, 1, 0, 0, 1, 1];
    let attrs = vec![a_ints("pads", &pads), a_float("value", 1.5), a_str("mode", "constant")];
    let old = one_node(10, node("Pad", &["x"], &["y"], attrs), vec![]).unwrap();
    let new = one_node(
        13,
        node("Pad", &["x", "p", "v"], &["y"], vec![]),
        vec![i64_init("p", &pads), tensor("v", &[], &[1.5f32])],
    )
    .unwrap();
    let expected = (Op::Pad { mode: PadMode::Constant }, vec![x(), i64s(&pads), Arg::Const(Tensor::scalar(1.5f32))]);
    assert_eq!(lowered(&old), expected);
    assert_eq!(lowered(&old), lowered(&new));
    let reflect =
        one_node(7, node("Pad", &["x"], &["y"], vec![a_ints("pads", &pads), a_str("mode", "reflect")]), vec![]);
    assert_eq!(lowered(&reflect.unwrap()), (Op::Pad { mode: PadMode::Reflect }, vec![x(), i64s(&pads)]));
}

#[test]
fn clip_bounds_become_inputs() {
    let old =
        one_node(10, node("Clip", &["x"], &["y"], vec![a_float("min", 0.0), a_float("max", 6.0)]), vec![]).unwrap();
    let new = one_node(
        13,
        node("Clip", &["x", "lo", "hi"], &["y"], vec![]),
        vec![tensor("lo", &[], &[0.0f32]), tensor("hi", &[], &[6.0f32])],
    )
    .unwrap();
    let scalar = |v: f32| Arg::Const(Tensor::scalar(v));
    assert_eq!(lowered(&old), (Op::Clip, vec![x(), scalar(0.0), scalar(6.0)]));
    assert_eq!(lowered(&old), lowered(&new));
    let max_only = one_node(10, node("Clip", &["x"], &["y"], vec![a_float("max", 6.0)]), vec![]).unwrap();
    assert_eq!(lowered(&max_only), (Op::Clip, vec![x(), Arg::Absent, scalar(6.0)]));
}

#[test]
fn split_sizes_become_an_input_and_num_outputs_is_kept() {
    let old =
        one_node(11, node("Split", &["x"], &["a", "b"], vec![a_int("axis", 3), a_ints("split", &[1, 3])]), vec![]);
    let new =
        one_node(13, node("Split", &["x", "s"], &["a", "b"], vec![a_int("axis", 3)]), vec![i64_init("s", &[1, 3])]);
    let (old, new) = (old.unwrap(), new.unwrap());
    assert_eq!(lowered(&old), (Op::Split { axis: 3, num_outputs: None }, vec![x(), i64s(&[1, 3])]));
    assert_eq!(lowered(&old), lowered(&new));
    let even =
        one_node(18, node("Split", &["x"], &["a", "b"], vec![a_int("axis", 3), a_int("num_outputs", 2)]), vec![]);
    assert_eq!(lowered(&even.unwrap()), (Op::Split { axis: 3, num_outputs: Some(2) }, vec![x()]));
    // Without sizes, the output count decides, unused trailing outputs included.
    let m = one_node(13, node("Split", &["x"], &["a", "b", ""], vec![a_int("axis", 3)]), vec![]).unwrap();
    assert_eq!(m.graph.nodes[0].outputs.len(), 3);
    let bad = one_node(11, node("Split", &["x"], &["a", "b"], vec![a_ints("split", &[1, 1, 2])]), vec![]);
    assert!(bad.unwrap_err().to_string().contains("'split'"));
}

#[test]
fn reduce_axes_become_an_input_at_the_right_opset() {
    let reduce = |kind| Op::Reduce { kind, keepdims: false, noop_with_empty_axes: false };
    let old = one_node(12, node("ReduceSum", &["x"], &["y"], vec![a_ints("axes", &[1]), a_int("keepdims", 0)]), vec![]);
    let new =
        one_node(13, node("ReduceSum", &["x", "a"], &["y"], vec![a_int("keepdims", 0)]), vec![i64_init("a", &[1])]);
    assert_eq!(lowered(&old.unwrap()), (reduce(ReduceKind::Sum), vec![x(), i64s(&[1])]));
    assert_eq!(lowered(&new.unwrap()), (reduce(ReduceKind::Sum), vec![x(), i64s(&[1])]));
    // ReduceMean kept the attribute until opset 18.
    let old =
        one_node(17, node("ReduceMean", &["x"], &["y"], vec![a_ints("axes", &[-1]), a_int("keepdims", 0)]), vec![]);
    let new =
        one_node(18, node("ReduceMean", &["x", "a"], &["y"], vec![a_int("keepdims", 0)]), vec![i64_init("a", &[-1])]);
    assert_eq!(lowered(&old.unwrap()), lowered(&new.unwrap()));
    let all = one_node(11, node("ReduceMax", &["x"], &["y"], vec![]), vec![]).unwrap();
    let op = Op::Reduce { kind: ReduceKind::Max, keepdims: true, noop_with_empty_axes: false };
    assert_eq!(lowered(&all), (op, vec![x()]));
    let noop = one_node(18, node("ReduceL2", &["x"], &["y"], vec![a_int("noop_with_empty_axes", 1)]), vec![]);
    let op = Op::Reduce { kind: ReduceKind::L2, keepdims: true, noop_with_empty_axes: true };
    assert_eq!(lowered(&noop.unwrap()), (op, vec![x()]));
}

#[test]
fn topk_k_attribute_becomes_an_input() {
    let old = one_node(9, node("TopK", &["x"], &["v", "i"], vec![a_int("k", 2), a_int("axis", 1)]), vec![]).unwrap();
    let new = one_node(11, node("TopK", &["x", "k"], &["v", "i"], vec![a_int("axis", 1)]), vec![i64_init("k", &[2])]);
    let op = Op::TopK { axis: 1, largest: true, sorted: true };
    assert_eq!(lowered(&old), (op, vec![x(), i64s(&[2])]));
    assert_eq!(lowered(&old), lowered(&new.unwrap()));
    let g = &old.graph;
    assert_eq!(g.fact(g.nodes[0].outputs[1]).dtype, DType::I64);
}

#[test]
fn upsample_and_resize_10_become_asymmetric_floor_resize() {
    let legacy = |mode| {
        Op::Resize(ResizeAttrs {
            mode,
            coordinate_transform: CoordinateTransform::Asymmetric,
            nearest_mode: NearestMode::Floor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: None,
            keep_aspect_ratio_policy: KeepAspectRatioPolicy::Stretch,
        })
    };
    let scales = [1.0f32, 1.0, 2.0, 2.0];
    let scales_arg = Arg::Const(Tensor::from_slice(&[4], &scales).unwrap());
    let up7 = one_node(7, node("Upsample", &["x"], &["y"], vec![a_floats("scales", &scales)]), vec![]).unwrap();
    assert_eq!(lowered(&up7), (legacy(ResizeMode::Nearest), vec![x(), Arg::Absent, scales_arg]));
    let init = || vec![tensor("s", &[4], &scales)];
    let up9 = one_node(9, node("Upsample", &["x", "s"], &["y"], vec![a_str("mode", "linear")]), init()).unwrap();
    let r10 = one_node(10, node("Resize", &["x", "s"], &["y"], vec![a_str("mode", "linear")]), init()).unwrap();
    assert_eq!(lowered(&up9).0, legacy(ResizeMode::Linear));
    assert_eq!(lowered(&up9), lowered(&r10));
    // Resize-10 rounds up on shrunk axes; mixed directions cannot be expressed.
    let down =
        one_node(10, node("Resize", &["x", "s"], &["y"], vec![]), vec![tensor("s", &[4], &[1.0f32, 1.0, 0.5, 0.6])]);
    let Op::Resize(attrs) = lowered(&down.unwrap()).0 else { panic!() };
    assert_eq!(attrs.nearest_mode, NearestMode::Ceil);
    let mixed =
        one_node(10, node("Resize", &["x", "s"], &["y"], vec![]), vec![tensor("s", &[4], &[1.0f32, 1.0, 0.5, 2.0])]);
    assert!(mixed.unwrap_err().to_string().contains("rounding mode"));
    let bad = one_node(10, node("Resize", &["x", "s"], &["y"], vec![a_str("mode", "cubic")]), init());
    assert!(bad.unwrap_err().to_string().contains("'mode'"));
}

#[test]
fn resize_11_to_19_attributes() {
    let attrs = vec![
        a_str("mode", "cubic"),
        a_str("coordinate_transformation_mode", "half_pixel_symmetric"),
        a_str("nearest_mode", "ceil"),
        a_float("cubic_coeff_a", -0.5),
        a_int("exclude_outside", 1),
        a_int("antialias", 1),
        a_ints("axes", &[2, 3]),
        a_str("keep_aspect_ratio_policy", "not_larger"),
    ];
    let m = one_node(19, node("Resize", &["x", "", "", "sz"], &["y"], attrs), vec![i64_init("sz", &[2, 8])]).unwrap();
    let expected = ResizeAttrs {
        mode: ResizeMode::Cubic,
        coordinate_transform: CoordinateTransform::HalfPixelSymmetric,
        nearest_mode: NearestMode::Ceil,
        cubic_coeff_a: -0.5,
        exclude_outside: true,
        extrapolation_value: 0.0,
        antialias: true,
        axes: Some(vec![2, 3]),
        keep_aspect_ratio_policy: KeepAspectRatioPolicy::NotLarger,
    };
    assert_eq!(lowered(&m), (Op::Resize(expected), vec![x(), Arg::Absent, Arg::Absent, i64s(&[2, 8])]));
    // Opset 11 spelled "no scales" as an empty tensor; it becomes an absent input.
    let m = one_node(
        11,
        node("Resize", &["x", "roi", "sc", "sz"], &["y"], vec![]),
        vec![tensor::<f32>("roi", &[0], &[]), tensor::<f32>("sc", &[0], &[]), i64_init("sz", &[2, 3, 2, 8])],
    )
    .unwrap();
    let (op, args) = lowered(&m);
    let Op::Resize(attrs) = op else { panic!() };
    assert_eq!(attrs.coordinate_transform, CoordinateTransform::HalfPixel);
    assert_eq!(attrs.nearest_mode, NearestMode::RoundPreferFloor);
    assert_eq!(args, vec![x(), Arg::Absent, Arg::Absent, i64s(&[2, 3, 2, 8])]);
    let none = one_node(13, node("Resize", &["x"], &["y"], vec![]), vec![]);
    assert!(none.unwrap_err().to_string().contains("scales or the sizes"));
    let nn = one_node(
        11,
        node("Resize", &["x", "", "sz"], &["y"], vec![a_str("coordinate_transformation_mode", "tf_half_pixel_for_nn")]),
        vec![tensor("sz", &[4], &[1.0f32; 4])],
    );
    assert!(nn.unwrap_err().to_string().contains("tf_half_pixel_for_nn"));
}

#[test]
fn softmax_family_axis_defaults_and_coercion_follow_the_opset() {
    for op_type in ["Softmax", "LogSoftmax", "Hardmax"] {
        let old = lowered(&one_node(11, node(op_type, &["x"], &["y"], vec![]), vec![]).unwrap()).0;
        let new = lowered(&one_node(13, node(op_type, &["x"], &["y"], vec![]), vec![]).unwrap()).0;
        let (o, n) = match (old, new) {
            (Op::Softmax { axis: a, coerce_2d: c }, Op::Softmax { axis: b, coerce_2d: d })
            | (Op::LogSoftmax { axis: a, coerce_2d: c }, Op::LogSoftmax { axis: b, coerce_2d: d })
            | (Op::Hardmax { axis: a, coerce_2d: c }, Op::Hardmax { axis: b, coerce_2d: d }) => ((a, c), (b, d)),
            other => panic!("{op_type} imported as {other:?}"),
        };
        assert_eq!((o, n), ((1, true), (-1, false)), "{op_type}");
    }
}

#[test]
fn dropout_is_an_inference_passthrough() {
    let old = one_node(7, node("Dropout", &["x"], &["y", "mask"], vec![a_float("ratio", 0.3)]), vec![]).unwrap();
    assert_eq!(lowered(&old), (Op::Dropout, vec![x()]));
    let g = &old.graph;
    assert_eq!(g.fact(g.nodes[0].outputs[1]).dtype, DType::Bool);
    let new =
        one_node(13, node("Dropout", &["x", "r"], &["y"], vec![a_int("seed", 1)]), vec![tensor("r", &[], &[0.3f32])]);
    assert_eq!(lowered(&new.unwrap()), (Op::Dropout, vec![x()]));
    let train = one_node(13, node("Dropout", &["x", "", "t"], &["y"], vec![]), vec![tensor("t", &[], &[1u8])]);
    let mut t = tensor("t", &[], &[1u8]);
    t.data_type = DType::Bool.onnx_code();
    let train_bool = one_node(13, node("Dropout", &["x", "", "t"], &["y"], vec![]), vec![t]);
    assert!(train.unwrap_err().to_string().contains("training_mode"));
    assert!(train_bool.unwrap_err().to_string().contains("training_mode"));
    let off = one_node(13, node("Dropout", &["x", "", "t"], &["y"], vec![]), vec![tensor("t", &[], &[0u8])]);
    assert_eq!(lowered(&off.unwrap()), (Op::Dropout, vec![x()]));
    let mut m = TestModel::new(13).input("x", DType::F32, &["2"]).input("t", DType::Bool, &[]);
    m = m.node(node("Dropout", &["x", "", "t"], &["y"], vec![])).output("y", DType::F32);
    assert!(m.load().unwrap_err().to_string().contains("not a constant"));
}

#[test]
fn batch_norm_versions() {
    let inits = || ["s", "b", "m", "v"].iter().map(|n| tensor(n, &[3], &[1.0f32, 1.0, 1.0])).collect::<Vec<_>>();
    let inputs = ["x", "s", "b", "m", "v"];
    let m = one_node(
        7,
        node("BatchNormalization", &inputs, &["y"], vec![a_int("spatial", 1), a_float("momentum", 0.5)]),
        inits(),
    );
    assert_eq!(lowered(&m.unwrap()).0, Op::BatchNormalization { epsilon: 1e-5 });
    let m = one_node(8, node("BatchNormalization", &inputs, &["y"], vec![a_int("spatial", 0)]), inits());
    assert!(m.unwrap_err().to_string().contains("spatial"));
    let m = one_node(15, node("BatchNormalization", &inputs, &["y"], vec![a_int("training_mode", 1)]), inits());
    assert!(m.unwrap_err().to_string().contains("training_mode"));
    // `spatial` no longer exists from opset 9.
    let m = one_node(9, node("BatchNormalization", &inputs, &["y"], vec![a_int("spatial", 1)]), inits());
    assert!(m.unwrap_err().to_string().contains("'spatial'"));
    let m = one_node(15, node("BatchNormalization", &inputs, &["y"], vec![a_float("epsilon", 1e-3)]), inits());
    assert_eq!(lowered(&m.unwrap()).0, Op::BatchNormalization { epsilon: 1e-3 });
}

#[test]
fn attribute_defaults_and_values() {
    let op = |opset, n| lowered(&one_node(opset, n, vec![tensor("w", &[3, 3, 1, 1], &[0.5f32; 9])]).unwrap()).0;
    assert_eq!(
        op(13, node("Gemm", &["x", "w"], &["y"], vec![])),
        Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false, activation: None }
    );
    assert_eq!(
        op(9, node("Gemm", &["x", "w", "w"], &["y"], vec![a_float("alpha", 2.0), a_int("transB", 1)])),
        Op::Gemm { alpha: 2.0, beta: 1.0, trans_a: false, trans_b: true, activation: None }
    );
    let conv = op(
        11,
        node(
            "Conv",
            &["x", "w"],
            &["y"],
            vec![a_str("auto_pad", "SAME_UPPER"), a_ints("strides", &[2, 2]), a_int("group", 1)],
        ),
    );
    assert_eq!(
        conv,
        Op::Conv(ConvAttrs {
            kernel_shape: None,
            strides: vec![2, 2],
            pads: vec![],
            dilations: vec![],
            group: 1,
            auto_pad: AutoPad::SameUpper,
            activation: None
        })
    );
    let pool = op(
        12,
        node(
            "MaxPool",
            &["x"],
            &["y", "i"],
            vec![a_ints("kernel_shape", &[2, 2]), a_int("ceil_mode", 1), a_int("storage_order", 1)],
        ),
    );
    let Op::MaxPool(p) = pool else { panic!("{pool:?}") };
    assert_eq!((p.kernel_shape, p.ceil_mode, p.storage_order), (vec![2, 2], true, 1));
    let avg = op(
        19,
        node(
            "AveragePool",
            &["x"],
            &["y"],
            vec![a_ints("kernel_shape", &[3]), a_int("count_include_pad", 1), a_ints("dilations", &[2])],
        ),
    );
    let Op::AveragePool(p) = avg else { panic!("{avg:?}") };
    assert_eq!((p.count_include_pad, p.dilations), (true, vec![2]));
    let lp = op(18, node("LpPool", &["x"], &["y"], vec![a_ints("kernel_shape", &[2]), a_int("p", 3)]));
    assert!(matches!(lp, Op::LpPool { p: 3, .. }), "{lp:?}");
    assert_eq!(op(13, node("Cast", &["x"], &["y"], vec![a_int("to", 10)])), Op::Cast { to: DType::F16 });
    assert_eq!(
        op(21, node("Cast", &["x"], &["y"], vec![a_int("to", 7), a_int("saturate", 0)])),
        Op::Cast { to: DType::I64 }
    );
    assert_eq!(
        op(13, node("Mod", &["x", "x"], &["y"], vec![a_int("fmod", 1)])),
        Op::Binary(BinaryOp::Mod { fmod: true })
    );
    assert_eq!(
        op(11, node("BitShift", &["x", "x"], &["y"], vec![a_str("direction", "RIGHT")])),
        Op::Binary(BinaryOp::BitShiftRight)
    );
    assert_eq!(
        op(20, node("Gelu", &["x"], &["y"], vec![a_str("approximate", "tanh")])),
        Op::Unary(UnaryOp::Gelu { tanh: true })
    );
    assert_eq!(op(20, node("Gelu", &["x"], &["y"], vec![])), Op::Unary(UnaryOp::Gelu { tanh: false }));
    assert_eq!(op(13, node("LeakyRelu", &["x"], &["y"], vec![])), Op::Unary(UnaryOp::LeakyRelu { alpha: 0.01 }));
    assert_eq!(
        op(13, node("HardSigmoid", &["x"], &["y"], vec![])),
        Op::Unary(UnaryOp::HardSigmoid { alpha: 0.2, beta: 0.5 })
    );
    assert_eq!(
        op(13, node("Selu", &["x"], &["y"], vec![])),
        Op::Unary(UnaryOp::Selu { alpha: 1.673_263_2, gamma: 1.050_701 })
    );
    assert_eq!(
        op(10, node("IsInf", &["x"], &["y"], vec![a_int("detect_negative", 0)])),
        Op::Unary(UnaryOp::IsInf { detect_positive: true, detect_negative: false })
    );
    assert_eq!(
        op(11, node("DepthToSpace", &["x"], &["y"], vec![a_int("blocksize", 2)])),
        Op::DepthToSpace { blocksize: 2, column_row: false }
    );
    assert_eq!(
        op(13, node("DepthToSpace", &["x"], &["y"], vec![a_int("blocksize", 2), a_str("mode", "CRD")])),
        Op::DepthToSpace { blocksize: 2, column_row: true }
    );
    assert_eq!(
        op(18, node("GroupNormalization", &["x", "w", "w"], &["y"], vec![a_int("num_groups", 3)])),
        Op::GroupNormalization { epsilon: 1e-5, num_groups: 3, per_channel: false }
    );
    assert_eq!(
        op(21, node("GroupNormalization", &["x", "w", "w"], &["y"], vec![a_int("num_groups", 3)])),
        Op::GroupNormalization { epsilon: 1e-5, num_groups: 3, per_channel: true }
    );
    assert_eq!(
        op(17, node("LayerNormalization", &["x", "w"], &["y"], vec![])),
        Op::LayerNormalization { axis: -1, epsilon: 1e-5 }
    );
    assert_eq!(
        op(15, node("Shape", &["x"], &["y"], vec![a_int("start", 1), a_int("end", -1)])),
        Op::Shape { start: 1, end: Some(-1) }
    );
    assert_eq!(op(13, node("Shape", &["x"], &["y"], vec![])), Op::Shape { start: 0, end: None });
    assert_eq!(
        op(12, node("ArgMax", &["x"], &["y"], vec![a_int("select_last_index", 1), a_int("keepdims", 0)])),
        Op::ArgMax { axis: 0, keepdims: false, select_last_index: true }
    );
    assert_eq!(op(14, node("Trilu", &["x"], &["y"], vec![a_int("upper", 0)])), Op::Trilu { upper: false });
    assert_eq!(
        op(14, node("CumSum", &["x", "w"], &["y"], vec![a_int("reverse", 1)])),
        Op::CumSum { exclusive: false, reverse: true }
    );
    assert_eq!(
        op(18, node("ScatterND", &["x", "w", "x"], &["y"], vec![a_str("reduction", "max")])),
        Op::ScatterND { reduction: ScatterReduction::Max }
    );
    assert_eq!(
        op(10, node("Scatter", &["x", "w", "x"], &["y"], vec![a_int("axis", 1)])),
        Op::ScatterElements { axis: 1, reduction: ScatterReduction::None }
    );
    assert_eq!(
        op(12, node("GatherND", &["x", "w"], &["y"], vec![a_int("batch_dims", 1)])),
        Op::GatherND { batch_dims: 1 }
    );
    assert_eq!(op(11, node("OneHot", &["x", "w", "w"], &["y"], vec![])), Op::OneHot { axis: -1 });
    assert_eq!(
        op(12, node("Einsum", &["x", "w"], &["y"], vec![a_str("equation", "ij, jk -> ik")])),
        Op::Einsum { equation: "ij,jk->ik".into() }
    );
    assert_eq!(op(13, node("Sum", &["x", "w", "x"], &["y"], vec![])), Op::Variadic(VariadicOp::Sum));
    assert_eq!(op(13, node("Mean", &["x"], &["y"], vec![])), Op::Variadic(VariadicOp::Mean));
    assert_eq!(
        op(9, node("ConstantOfShape", &["w"], &["y"], vec![])),
        Op::ConstantOfShape { value: Tensor::from_slice(&[1], &[0.0f32]).unwrap() }
    );
    assert_eq!(
        op(9, node("ConstantOfShape", &["w"], &["y"], vec![a_tensor("value", tensor("", &[1], &[7i64]))])),
        Op::ConstantOfShape { value: Tensor::from_slice(&[1], &[7i64]).unwrap() }
    );
}

#[test]
fn bad_attributes_and_counts_are_errors_naming_node_op_and_attribute() {
    let err = |opset, n| one_node(opset, n, vec![]).unwrap_err().to_string();
    let e = err(13, node("Cast", &["x"], &["y"], vec![a_int("to", 8)]));
    assert!(e.contains("'n'") && e.contains("Cast") && e.contains("'to'") && e.contains("string"), "{e}");
    let e = err(13, node("Cast", &["x"], &["y"], vec![a_float("to", 1.0)]));
    assert!(e.contains("'to'") && e.contains("INT"), "{e}");
    let e = err(13, node("Add", &["x"], &["y"], vec![]));
    assert!(e.contains("Add") && e.contains("1 input"), "{e}");
    let e = err(13, node("Conv", &["x", "x"], &["y"], vec![a_ints("strides", &[0, 1])]));
    assert!(e.contains("'strides'") && e.contains("positive"), "{e}");
    let e = err(13, node("Transpose", &["x"], &["y"], vec![a_ints("perm", &[0, 0, 1, 2])]));
    assert!(e.contains("'perm'"), "{e}");
    let e = err(13, node("Concat", &["x", "x"], &["y"], vec![]));
    assert!(e.contains("'axis'") && e.contains("required"), "{e}");
    let e = err(28, node("SpaceToDepth", &["x"], &["y"], vec![a_int("blocksize", 2), a_str("mode", "CRD")]));
    assert!(e.contains("CRD"), "{e}");
    let e = err(18, node("LpPool", &["x"], &["y"], vec![a_ints("kernel_shape", &[2]), a_int("p", 0)]));
    assert!(e.contains("'p'"), "{e}");
    let e = err(13, node("Gelu", &["x"], &["y"], vec![]));
    assert!(e.contains("opset 20"), "{e}");
    let e = err(20, node("Gelu", &["x"], &["y"], vec![a_str("approximate", "fast")]));
    assert!(e.contains("'approximate'") && e.contains("fast"), "{e}");
}

/// A minimal valid node for every supported op, at the newest opset: each must
/// import (this keeps `SUPPORTED_OPS` and the lowering table in step).
#[test]
fn every_supported_op_imports() {
    let opset = crate::MAX_OPSET;
    for &(op_type, since) in SUPPORTED_OPS {
        let (inputs, outputs, attrs): (&[&str], &[&str], Vec<_>) = match op_type {
            "Constant" => continue,
            // Deprecated ops only exist in older opsets.
            "Upsample" => (&["x", "f"], &["y"], vec![]),
            "Scatter" => (&["x", "i", "x"], &["y"], vec![]),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "Equal" | "Less" | "LessOrEqual" | "Greater"
            | "GreaterOrEqual" | "And" | "Or" | "Xor" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "PRelu"
            | "MatMul" | "CastLike" | "Expand" | "Tile" | "Reshape" | "CumSum" | "Gather" | "GatherElements"
            | "GatherND" | "Unsqueeze" => (&["x", "i"], &["y"], vec![]),
            "BitShift" => (&["x", "i"], &["y"], vec![a_str("direction", "LEFT")]),
            "Where" | "OneHot" | "Range" | "ScatterND" | "ScatterElements" | "InstanceNormalization" => {
                (&["x", "i", "x"], &["y"], vec![])
            }
            "Gemm" | "Conv" | "ConvTranspose" | "LayerNormalization" => (&["x", "f"], &["y"], vec![]),
            "Slice" => (&["x", "i", "i"], &["y"], vec![]),
            "Pad" => (&["x", "i"], &["y"], vec![]),
            "BatchNormalization" => (&["x", "f", "f", "f", "f"], &["y"], vec![]),
            "GroupNormalization" => (&["x", "f", "f"], &["y"], vec![a_int("num_groups", 1)]),
            "TopK" => (&["x", "i"], &["v", "j"], vec![]),
            "Split" => (&["x"], &["a", "b"], vec![]),
            "Cast" => (&["x"], &["y"], vec![a_int("to", 1)]),
            "Concat" => (&["x", "x"], &["y"], vec![a_int("axis", 0)]),
            "Einsum" => (&["x"], &["y"], vec![a_str("equation", "ij->ji")]),
            "MaxPool" | "AveragePool" | "LpPool" => (&["x"], &["y"], vec![a_ints("kernel_shape", &[1])]),
            "DepthToSpace" | "SpaceToDepth" => (&["x"], &["y"], vec![a_int("blocksize", 1)]),
            "Resize" => (&["x", "", "f"], &["y"], vec![]),
            "BitwiseNot" | "Not" => (&["x"], &["y"], vec![]),
            "Min" | "Max" | "Sum" | "Mean" => (&["x", "x"], &["y"], vec![]),
            _ => (&["x"], &["y"], vec![]),
        };
        let opset = match op_type {
            "Upsample" | "Scatter" => 9,
            _ => opset,
        };
        assert!(since <= opset, "{op_type}");
        let inits = vec![tensor("i", &[1], &[1i64]), tensor("f", &[1], &[1.0f32])];
        let result = one_node(opset, node(op_type, inputs, outputs, attrs), inits);
        let model = result.unwrap_or_else(|e| panic!("{op_type}: {e}"));
        assert_eq!(model.graph.nodes.len(), 1, "{op_type}");
    }
}
