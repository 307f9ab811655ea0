//! Builders for ONNX messages in tests: small models are written in Rust,
//! encoded, and loaded through the public entry points.

use crate::proto::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::{load_model_from_bytes, Model, OnnxError};
use prost::Message;
use smelt_ir::{DType, Element};

/// A dimension of a declared shape: a number, a symbol, or unknown (`"?"`).
pub(crate) fn dims(spec: &[&str]) -> Vec<tensor_shape_proto::Dimension> {
    spec.iter()
        .map(|s| tensor_shape_proto::Dimension {
            value: match s.parse::<i64>() {
                Ok(n) => Some(tensor_shape_proto::dimension::Value::DimValue(n)),
                Err(_) if *s == "?" => None,
                Err(_) => Some(tensor_shape_proto::dimension::Value::DimParam(s.to_string())),
            },
            denotation: String::new(),
        })
        .collect()
}

/// A tensor value info; `shape: None` declares no shape.
pub(crate) fn value_info(name: &str, dtype: DType, shape: Option<&[&str]>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dtype.onnx_code(),
                shape: shape.map(|s| TensorShapeProto { dim: dims(s) }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

pub(crate) fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

pub(crate) fn named(mut n: NodeProto, name: &str) -> NodeProto {
    n.name = name.into();
    n
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: ty as i32, ..Default::default() }
}

pub(crate) fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { i: v, ..attr(name, AttributeType::Int) }
}

pub(crate) fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { ints: v.to_vec(), ..attr(name, AttributeType::Ints) }
}

pub(crate) fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { f: v, ..attr(name, AttributeType::Float) }
}

pub(crate) fn a_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto { floats: v.to_vec(), ..attr(name, AttributeType::Floats) }
}

pub(crate) fn a_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto { s: v.as_bytes().to_vec(), ..attr(name, AttributeType::String) }
}

pub(crate) fn a_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { t: Some(t), ..attr(name, AttributeType::Tensor) }
}

/// A tensor with raw little-endian data.
pub(crate) fn tensor<T: Element>(name: &str, dims: &[i64], values: &[T]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: T::DTYPE.onnx_code(),
        raw_data: bytemuck::cast_slice(values).to_vec().into(),
        ..Default::default()
    }
}

/// A model description that tests fill in and then encode or load.
pub(crate) struct TestModel {
    pub proto: ModelProto,
}

impl TestModel {
    pub fn new(opset: i64) -> TestModel {
        TestModel {
            proto: ModelProto {
                ir_version: 8,
                producer_name: "smelt-tests".into(),
                opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
                graph: Some(GraphProto { name: "g".into(), ..Default::default() }),
                ..Default::default()
            },
        }
    }

    fn graph(&mut self) -> &mut GraphProto {
        self.proto.graph.get_or_insert_with(Default::default)
    }

    pub fn ir(mut self, ir_version: i64) -> Self {
        self.proto.ir_version = ir_version;
        self
    }

    pub fn input(mut self, name: &str, dtype: DType, shape: &[&str]) -> Self {
        self.graph().input.push(value_info(name, dtype, Some(shape)));
        self
    }

    pub fn output(mut self, name: &str, dtype: DType) -> Self {
        self.graph().output.push(value_info(name, dtype, None));
        self
    }

    /// An output with no declared type, so the importer must guess it.
    pub fn untyped_output(mut self, name: &str) -> Self {
        self.graph().output.push(ValueInfoProto { name: name.into(), ..Default::default() });
        self
    }

    pub fn value_info(mut self, vi: ValueInfoProto) -> Self {
        self.graph().value_info.push(vi);
        self
    }

    pub fn init(mut self, t: TensorProto) -> Self {
        self.graph().initializer.push(t);
        self
    }

    pub fn node(mut self, n: NodeProto) -> Self {
        self.graph().node.push(n);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    pub fn load(&self) -> Result<Model, OnnxError> {
        load_model_from_bytes(&self.bytes(), None)
    }
}
