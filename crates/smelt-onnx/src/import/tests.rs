use super::*;
use crate::proto::{tensor_proto::DataLocation, OperatorSetIdProto, StringStringEntryProto, TensorProto};
use crate::testing::*;
use smelt_ir::{BinaryOp, Op, UnaryOp};

fn add_model() -> TestModel {
    TestModel::new(17)
        .input("x", DType::F32, &["batch", "3", "?"])
        .init(tensor("w", &[3, 1], &[1.0f32, 2.0, 3.0]))
        .node(named(node("Add", &["x", "w"], &["y"], vec![]), "add"))
        .output("y", DType::F32)
}

#[test]
fn imports_inputs_initializers_nodes_and_outputs() {
    let m = add_model().load().unwrap();
    assert_eq!((m.ir_version, m.opset, m.graph.opset), (8, 17, 17));
    assert_eq!(m.producer, "smelt-tests");
    let g = &m.graph;
    assert_eq!(g.inputs.len(), 1);
    let x = g.fact(g.inputs[0]);
    assert_eq!(x.dtype, DType::F32);
    assert_eq!(x.shape, Shape::new(vec![Dim::Sym("batch".into()), Dim::Fixed(3), Dim::Unknown]));
    let w = g.find_value("w").unwrap();
    assert_eq!(g.constant(w).unwrap().as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0]);
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].name, "add");
    assert_eq!(g.nodes[0].op, Op::Binary(BinaryOp::Add));
    assert_eq!(g.nodes[0].inputs, vec![Some(g.inputs[0]), Some(w)]);
    assert_eq!(g.name(g.outputs[0]), "y");
    // The output declares a type but no shape.
    assert_eq!(g.fact(g.outputs[0]).dtype, DType::F32);
    assert_eq!(g.fact(g.outputs[0]).shape, Shape::unknown());
}

#[test]
fn value_infos_set_facts_and_other_values_get_a_guessed_dtype() {
    let m = TestModel::new(13)
        .input("x", DType::F16, &["2"])
        .node(node("Relu", &["x"], &["r"], vec![]))
        .node(node("Less", &["r", "x"], &["c"], vec![]))
        .node(node("Shape", &["x"], &["s"], vec![]))
        .value_info(crate::testing::value_info("r", DType::F16, Some(&["2"])))
        .untyped_output("c")
        .untyped_output("s")
        .load()
        .unwrap();
    let g = &m.graph;
    let fact = |n: &str| g.fact(g.find_value(n).unwrap()).clone();
    assert_eq!(fact("r"), Fact::new(DType::F16, Shape::fixed(&[2])));
    assert_eq!(fact("c"), Fact::new(DType::Bool, Shape::unknown()));
    assert_eq!(fact("s"), Fact::new(DType::I64, Shape::unknown()));
}

#[test]
fn unnamed_nodes_are_named_after_op_and_index() {
    let m = TestModel::new(13)
        .input("x", DType::F32, &["2"])
        .node(node("Relu", &["x"], &["a"], vec![]))
        .node(node("Neg", &["a"], &["b"], vec![]))
        .output("b", DType::F32)
        .load()
        .unwrap();
    let names: Vec<&str> = m.graph.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["Relu_0", "Neg_1"]);
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let m = TestModel::new(13)
        .input("x", DType::F32, &["2"])
        .node(node("Neg", &["a"], &["b"], vec![]))
        .node(node("Relu", &["x"], &["a"], vec![]))
        .output("b", DType::F32)
        .load()
        .unwrap();
    let ops: Vec<&Op> = m.graph.nodes.iter().map(|n| &n.op).collect();
    assert_eq!(ops, [&Op::Unary(UnaryOp::Relu), &Op::Unary(UnaryOp::Neg)]);
    assert_eq!(m.graph.nodes[0].name, "Relu_1");
}

#[test]
fn initializer_inputs_are_constants_before_ir4_and_defaults_after() {
    let model = |ir| {
        TestModel::new(11)
            .ir(ir)
            .input("x", DType::F32, &["3"])
            .input("w", DType::F32, &["3"])
            .init(tensor("w", &[3], &[1.0f32, 2.0, 3.0]))
            .node(node("Mul", &["x", "w"], &["y"], vec![]))
            .output("y", DType::F32)
            .load()
            .unwrap()
    };
    let old = model(3).graph;
    assert_eq!(old.inputs.len(), 1);
    let w = old.find_value("w").unwrap();
    assert!(old.constant(w).is_some());
    assert!(old.input_defaults.is_empty());

    let new = model(4).graph;
    let w = new.find_value("w").unwrap();
    assert_eq!(new.inputs.len(), 2);
    assert!(new.inputs.contains(&w));
    assert!(new.constant(w).is_none());
    assert_eq!(new.input_defaults[&w].as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0]);
}

#[test]
fn an_initializer_that_does_not_fit_its_input_is_an_error() {
    let err = TestModel::new(11)
        .input("w", DType::F32, &["4"])
        .init(tensor("w", &[3], &[1.0f32, 2.0, 3.0]))
        .node(node("Neg", &["w"], &["y"], vec![]))
        .output("y", DType::F32)
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("'w'") && err.contains("does not fit"), "{err}");
}

#[test]
fn constant_nodes_become_constants() {
    let constant = |attr| node("Constant", &[], &["c"], vec![attr]);
    let load = |attr| {
        let m = TestModel::new(13).node(constant(attr)).output("c", DType::F32).load()?;
        let g = m.graph;
        assert!(g.nodes.is_empty());
        Ok::<_, OnnxError>(g.constant(g.outputs[0]).unwrap().as_ref().clone())
    };
    let t = load(a_tensor("value", tensor("", &[2], &[1.5f32, 2.5]))).unwrap();
    assert_eq!(t, Tensor::from_slice(&[2], &[1.5f32, 2.5]).unwrap());
    assert_eq!(load(a_float("value_float", 0.5)).unwrap(), Tensor::scalar(0.5f32));
    assert_eq!(load(a_int("value_int", -3)).unwrap(), Tensor::scalar(-3i64));
    assert_eq!(load(a_floats("value_floats", &[1.0, 2.0])).unwrap(), Tensor::from_slice(&[2], &[1.0f32, 2.0]).unwrap());
    assert_eq!(load(a_ints("value_ints", &[4, 5])).unwrap(), Tensor::from_slice(&[2], &[4i64, 5]).unwrap());
    let err = load(a_str("value_string", "hi")).unwrap_err().to_string();
    assert!(err.contains("Constant") && err.contains("value_string") && err.contains("string"), "{err}");
    let sparse = crate::proto::AttributeProto {
        name: "sparse_value".into(),
        r#type: crate::proto::attribute_proto::AttributeType::SparseTensor as i32,
        ..Default::default()
    };
    assert!(load(sparse).unwrap_err().to_string().contains("sparse"));
}

#[test]
fn unsupported_ops_are_all_listed_with_node_names() {
    let mut custom = named(node("FusedMatMul", &["x", "x"], &["b"], vec![]), "fused");
    custom.domain = "com.microsoft".into();
    let err = TestModel::new(17)
        .input("x", DType::F32, &["2", "2"])
        .node(node("Relu", &["x"], &["a"], vec![]))
        .node(custom)
        .node(node("If", &["a"], &["c"], vec![]))
        .node(named(node("Unique", &["c"], &["d"], vec![]), "uniq"))
        .output("d", DType::F32)
        .load()
        .unwrap_err();
    let OnnxError::UnsupportedOps(nodes) = &err else { panic!("wrong error: {err}") };
    let listed: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        ["com.microsoft::FusedMatMul (node 'fused')", "ai.onnx::If (node 'If_2')", "ai.onnx::Unique (node 'uniq')"]
    );
    let message = err.to_string();
    assert!(message.contains("3 node(s)") && message.contains("'If_2'") && message.contains("'uniq'"), "{message}");
}

#[test]
fn opsets_outside_the_supported_range_are_refused() {
    for opset in [3, 6, 29, 99] {
        let err = add_model().proto;
        let mut m = TestModel { proto: err };
        m.proto.opset_import[0].version = opset;
        let err = m.load().unwrap_err();
        assert!(matches!(err, OnnxError::UnsupportedOpset { found, .. } if found == opset));
        let message = err.to_string();
        assert!(message.contains(&format!("opset {opset}")) && message.contains("7 to 28"), "{message}");
    }
    let mut m = add_model();
    m.proto.opset_import = vec![OperatorSetIdProto { domain: "com.microsoft".into(), version: 1 }];
    assert!(matches!(m.load().unwrap_err(), OnnxError::NoDefaultOpset { .. }));
    // Without a default-domain opset, other domains' nodes are what to report.
    let mut m = add_model();
    m.proto.opset_import = vec![OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 3 }];
    m.proto.graph.as_mut().unwrap().node[0].domain = "ai.onnx.ml".into();
    assert!(matches!(m.load().unwrap_err(), OnnxError::UnsupportedOps(n) if n[0].domain == "ai.onnx.ml"));
    let mut m = add_model();
    m.proto.opset_import[0].domain = "ai.onnx".into();
    assert!(m.load().is_ok());
}

#[test]
fn ops_newer_than_the_models_opset_are_refused() {
    let err = TestModel::new(17)
        .input("x", DType::F32, &["2"])
        .node(named(node("Gelu", &["x"], &["y"], vec![]), "g"))
        .output("y", DType::F32)
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("'g'") && err.contains("opset 20") && err.contains("17"), "{err}");
}

#[test]
fn truncated_and_garbage_bytes_are_decode_errors() {
    let bytes = add_model().bytes();
    for len in [1, 5, bytes.len() / 2, bytes.len() - 1] {
        assert!(load_model_from_bytes(&bytes[..len], None).is_err(), "a model truncated to {len} bytes loaded");
    }
    let err = load_model_from_bytes(&bytes[..bytes.len() / 2], None).unwrap_err();
    assert!(err.to_string().contains("not a valid ONNX model"), "{err}");
    // Deterministic pseudo-random garbage: must fail cleanly, never panic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..2000 {
        let len = round % 300;
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(load_model_from_bytes(&garbage, None).is_err());
        let _ = crate::summarize(&garbage);
    }
    assert!(matches!(load_model_from_bytes(&[], None), Err(OnnxError::EmptyFile)));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.onnx"), []).unwrap();
    assert!(matches!(load_model(&dir.path().join("empty.onnx")), Err(OnnxError::EmptyFile)));
}

#[test]
fn a_model_without_a_graph_is_an_error() {
    let mut m = add_model();
    m.proto.graph = None;
    assert!(matches!(m.load().unwrap_err(), OnnxError::MissingGraph));
}

#[test]
fn dangling_references_duplicates_and_cycles_are_errors() {
    let err = TestModel::new(13)
        .input("x", DType::F32, &["2"])
        .node(named(node("Add", &["x", "nowhere"], &["y"], vec![]), "add"))
        .output("y", DType::F32)
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("'nowhere'") && err.contains("'add'"), "{err}");

    let err = TestModel::new(13).input("x", DType::F32, &["2"]).output("missing", DType::F32).load().unwrap_err();
    assert!(err.to_string().contains("'missing'"), "{err}");

    let err = TestModel::new(13)
        .input("x", DType::F32, &["2"])
        .node(node("Relu", &["x"], &["y"], vec![]))
        .node(node("Neg", &["x"], &["y"], vec![]))
        .output("y", DType::F32)
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");

    let err = TestModel::new(13)
        .input("x", DType::F32, &["2"])
        .node(node("Add", &["x", "b"], &["a"], vec![]))
        .node(node("Neg", &["a"], &["b"], vec![]))
        .output("b", DType::F32)
        .load()
        .unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
}

#[test]
fn bad_graph_inputs_are_errors_naming_them() {
    let err = TestModel::new(13)
        .input("names", DType::F32, &["2"])
        .node(node("Identity", &["names"], &["y"], vec![]))
        .output("y", DType::F32);
    let mut err = err;
    if let Some(type_proto::Value::TensorType(t)) =
        err.proto.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap().value.as_mut()
    {
        t.elem_type = 8;
    }
    let message = err.load().unwrap_err().to_string();
    assert!(message.contains("'names'") && message.contains("string"), "{message}");
}

#[test]
fn training_outputs_of_batch_norm_are_dropped_unless_read() {
    let bn = |outputs: &[&str]| {
        TestModel::new(9)
            .input("x", DType::F32, &["1", "2", "4", "4"])
            .init(tensor("s", &[2], &[1.0f32, 1.0]))
            .init(tensor("b", &[2], &[0.0f32, 0.0]))
            .init(tensor("m", &[2], &[0.0f32, 0.0]))
            .init(tensor("v", &[2], &[1.0f32, 1.0]))
            .node(named(node("BatchNormalization", &["x", "s", "b", "m", "v"], outputs, vec![]), "bn"))
    };
    let m = bn(&["y", "rm", "rv"]).output("y", DType::F32).load().unwrap();
    assert_eq!(m.graph.nodes[0].outputs.len(), 1);
    let err = bn(&["y", "rm", "rv"]).output("rm", DType::F32).load().unwrap_err().to_string();
    assert!(err.contains("'rm'") && err.contains("'bn'") && err.contains("training"), "{err}");
}

#[test]
fn omitted_outputs_in_the_middle_get_placeholders() {
    let m = TestModel::new(17)
        .input("x", DType::F32, &["2", "4"])
        .init(tensor("scale", &[4], &[1.0f32; 4]))
        .node(named(node("LayerNormalization", &["x", "scale"], &["y", "", "inv"], vec![]), "ln"))
        .output("y", DType::F32)
        .output("inv", DType::F32)
        .load()
        .unwrap();
    let n = &m.graph.nodes[0];
    assert_eq!(n.outputs.len(), 3);
    assert_eq!(m.graph.name(n.outputs[1]), "ln::unused_output_1");
}

#[test]
fn unknown_attributes_are_errors_naming_node_op_and_attribute() {
    let err = TestModel::new(13)
        .input("x", DType::F32, &["2"])
        .node(named(node("Relu", &["x"], &["y"], vec![a_int("alpha", 1)]), "r"))
        .output("y", DType::F32)
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("'r'") && err.contains("Relu") && err.contains("'alpha'"), "{err}");
}

fn external_tensor(name: &str, dims: &[i64], location: &str, offset: Option<u64>, length: Option<u64>) -> TensorProto {
    let mut entries = vec![StringStringEntryProto { key: "location".into(), value: location.into() }];
    if let Some(o) = offset {
        entries.push(StringStringEntryProto { key: "offset".into(), value: o.to_string() });
    }
    if let Some(l) = length {
        entries.push(StringStringEntryProto { key: "length".into(), value: l.to_string() });
    }
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DType::F32.onnx_code(),
        data_location: DataLocation::External as i32,
        external_data: entries,
        ..Default::default()
    }
}

fn external_model(t: TensorProto) -> TestModel {
    TestModel::new(13)
        .input("x", DType::F32, &["4"])
        .init(t)
        .node(node("Add", &["x", "w"], &["y"], vec![]))
        .output("y", DType::F32)
}

#[test]
fn external_data_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let values = [1.0f32, -2.0, 3.5, 4.25];
    let mut file = vec![0xAAu8; 16];
    file.extend_from_slice(bytemuck::cast_slice(&values));
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    std::fs::write(dir.path().join("weights/w.bin"), &file).unwrap();
    let model_path = dir.path().join("model.onnx");
    let m = external_model(external_tensor("w", &[4], "weights/w.bin", Some(16), Some(16)));
    std::fs::write(&model_path, m.bytes()).unwrap();

    let loaded = load_model(&model_path).unwrap();
    let w = loaded.graph.find_value("w").unwrap();
    assert_eq!(loaded.graph.constant(w).unwrap().as_slice::<f32>().unwrap(), &values);
    // The same bytes with an explicit directory.
    let again = load_model_from_bytes(&m.bytes(), Some(dir.path())).unwrap();
    assert_eq!(again.graph.constant(w).unwrap().as_slice::<f32>().unwrap(), &values);
    // Without a directory the model is refused, naming the file.
    let err = m.load().unwrap_err().to_string();
    assert!(err.contains("'w'") && err.contains("weights/w.bin"), "{err}");
}

#[test]
fn external_data_problems_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.bin"), [0u8; 10]).unwrap();
    let load = |t| load_model_from_bytes(&external_model(t).bytes(), Some(dir.path())).unwrap_err().to_string();

    let err = load(external_tensor("w", &[4], "missing.bin", None, None));
    assert!(err.contains("'w'") && err.contains("missing.bin"), "{err}");
    let err = load(external_tensor("w", &[4], "short.bin", None, None));
    assert!(err.contains("too short"), "{err}");
    let err = load(external_tensor("w", &[4], "short.bin", Some(u64::MAX), None));
    assert!(err.contains("overflow") || err.contains("too short"), "{err}");
    let err = load(external_tensor("w", &[4], "short.bin", None, Some(1 << 40)));
    assert!(err.contains("length"), "{err}");
    let err = load(external_tensor("w", &[4], "../escape.bin", None, None));
    assert!(err.contains(".."), "{err}");
    let err = load(external_tensor("w", &[4], "/etc/passwd", None, None));
    assert!(err.contains("absolute"), "{err}");
    // A huge declared shape is refused before anything is allocated.
    let err = load(external_tensor("w", &[1 << 40, 1 << 20], "short.bin", None, None));
    assert!(err.contains("too short") || err.contains("memory"), "{err}");
}

#[test]
fn huge_or_negative_inline_dims_are_errors() {
    let mut t = tensor("w", &[4], &[1.0f32; 4]);
    t.dims = vec![i64::MAX, 4];
    let err = external_model(t).load().unwrap_err().to_string();
    assert!(err.contains("'w'"), "{err}");
    let mut t = tensor("w", &[4], &[1.0f32; 4]);
    t.dims = vec![-4];
    let err = external_model(t).load().unwrap_err().to_string();
    assert!(err.contains("negative"), "{err}");
}
