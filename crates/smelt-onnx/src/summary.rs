//! A model's outline without importing it, for `smelt inspect`: works on models
//! Smelt cannot run, and never reads external data files.

use crate::dtype::{display_type_name, storage_bits};
use crate::import::unsupported_nodes;
use crate::proto::{tensor_shape_proto::dimension, type_proto, ModelProto, TensorProto, ValueInfoProto};
use crate::{OnnxError, UnsupportedNode};
use prost::Message;
use std::collections::BTreeMap;
use std::fmt;

/// A graph input or output as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoSummary {
    pub name: String,
    /// `f32`, `i64`, ... for types Smelt has, ONNX's name otherwise; `sequence`,
    /// `map`, `optional`, `sparse_tensor` for non-tensor values; `?` when undeclared.
    pub dtype: String,
    /// One string per dimension (`3`, `batch`, `?`); `None` when the rank is unknown.
    pub dims: Option<Vec<String>>,
    /// For inputs: whether an initializer gives it a default (IR >= 4).
    pub has_default: bool,
}

/// How many nodes use one (domain, op type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpCount {
    /// `ai.onnx` for the default domain.
    pub domain: String,
    pub op_type: String,
    pub count: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSummary {
    pub ir_version: i64,
    pub opset_imports: Vec<(String, i64)>,
    /// `producer_name producer_version`.
    pub producer: String,
    pub graph_name: String,
    /// The graph inputs a caller feeds (for IR < 4, initializers listed as inputs are left out).
    pub inputs: Vec<IoSummary>,
    pub outputs: Vec<IoSummary>,
    /// Node counts, most used first.
    pub op_histogram: Vec<OpCount>,
    pub node_count: usize,
    /// Elements in all initializers (dense and sparse), external ones by declared size.
    pub parameter_count: u64,
    pub parameter_bytes: u64,
    pub unsupported: Vec<UnsupportedNode>,
}

/// Summarises a serialized model. Fails only when the bytes are not a model.
pub fn summarize(bytes: &[u8]) -> Result<ModelSummary, OnnxError> {
    if bytes.is_empty() {
        return Err(OnnxError::EmptyFile);
    }
    let model = ModelProto::decode(bytes)?;
    let graph = model.graph.as_ref().ok_or(OnnxError::MissingGraph)?;

    let initializer_names: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| model.ir_version >= 4 || !initializer_names.contains(i.name.as_str()))
        .map(|i| io_summary(i, initializer_names.contains(i.name.as_str())))
        .collect();
    let outputs = graph.output.iter().map(|o| io_summary(o, false)).collect();

    let mut histogram: BTreeMap<(String, String), usize> = BTreeMap::new();
    for node in &graph.node {
        let domain = if crate::ops::is_default_domain(&node.domain) { "ai.onnx" } else { node.domain.as_str() };
        *histogram.entry((domain.to_string(), node.op_type.clone())).or_default() += 1;
    }
    let mut op_histogram: Vec<OpCount> =
        histogram.into_iter().map(|((domain, op_type), count)| OpCount { domain, op_type, count }).collect();
    op_histogram.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.op_type.cmp(&b.op_type)));

    let mut parameter_count = 0u64;
    let mut parameter_bits = 0u64;
    let dense = graph.initializer.iter().map(|t| (t, element_count(&t.dims)));
    let sparse = graph.sparse_initializer.iter().filter_map(|s| s.values.as_ref()).map(|v| (v, element_count(&v.dims)));
    for (tensor, count) in dense.chain(sparse) {
        parameter_count = parameter_count.saturating_add(count);
        parameter_bits = parameter_bits.saturating_add(tensor_bits(tensor, count));
    }

    Ok(ModelSummary {
        ir_version: model.ir_version,
        opset_imports: model.opset_import.iter().map(|o| (o.domain.clone(), o.version)).collect(),
        producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
        graph_name: graph.name.clone(),
        inputs,
        outputs,
        op_histogram,
        node_count: graph.node.len(),
        parameter_count,
        parameter_bytes: parameter_bits.div_ceil(8),
        unsupported: unsupported_nodes(graph),
    })
}

/// Elements a dims list declares; negative dims count as zero, overflow saturates.
fn element_count(dims: &[i64]) -> u64 {
    dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(u64::try_from(d).unwrap_or(0)))
}

/// Storage size of a tensor; strings count their bytes.
fn tensor_bits(tensor: &TensorProto, count: u64) -> u64 {
    if tensor.data_type == 8 {
        let bytes: usize = tensor.string_data.iter().map(Vec::len).sum();
        return (bytes as u64).saturating_mul(8);
    }
    count.saturating_mul(storage_bits(tensor.data_type))
}

fn io_summary(vi: &ValueInfoProto, has_default: bool) -> IoSummary {
    let (dtype, shape) = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => (display_type_name(t.elem_type), t.shape.as_ref()),
        Some(type_proto::Value::SparseTensorType(t)) => {
            (format!("sparse_tensor({})", display_type_name(t.elem_type)), t.shape.as_ref())
        }
        Some(type_proto::Value::SequenceType(_)) => ("sequence".to_string(), None),
        Some(type_proto::Value::MapType(_)) => ("map".to_string(), None),
        Some(type_proto::Value::OptionalType(_)) => ("optional".to_string(), None),
        None => ("?".to_string(), None),
    };
    let dims = shape.map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) if *v >= 0 => v.to_string(),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => p.clone(),
                _ => "?".to_string(),
            })
            .collect()
    });
    IoSummary { name: vi.name.clone(), dtype, dims, has_default }
}

impl fmt::Display for IoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.dtype)?;
        match &self.dims {
            Some(d) => write!(f, "[{}]", d.join(", "))?,
            None => f.write_str("[..]")?,
        }
        if self.has_default {
            f.write_str(" (has default)")?;
        }
        Ok(())
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opsets: Vec<String> = self
            .opset_imports
            .iter()
            .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect();
        writeln!(f, "ir_version: {}", self.ir_version)?;
        writeln!(f, "opsets:     {}", opsets.join(", "))?;
        writeln!(f, "producer:   {}", self.producer)?;
        writeln!(f, "parameters: {} ({} bytes)", self.parameter_count, self.parameter_bytes)?;
        writeln!(f, "inputs:")?;
        for i in &self.inputs {
            writeln!(f, "  {i}")?;
        }
        writeln!(f, "outputs:")?;
        for o in &self.outputs {
            writeln!(f, "  {o}")?;
        }
        writeln!(f, "ops ({} nodes):", self.node_count)?;
        for op in &self.op_histogram {
            writeln!(f, "  {:>6}  {}::{}", op.count, op.domain, op.op_type)?;
        }
        if self.unsupported.is_empty() {
            writeln!(f, "every node is supported")?;
        } else {
            writeln!(f, "unsupported ({}):", self.unsupported.len())?;
            for u in &self.unsupported {
                writeln!(f, "  {u}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{tensor_proto::DataLocation, StringStringEntryProto};
    use crate::testing::*;
    use smelt_ir::DType;

    #[test]
    fn summarizes_models_smelt_cannot_run() {
        let mut custom = named(node("FusedGemm", &["x", "w"], &["b"], vec![]), "fg");
        custom.domain = "com.microsoft".into();
        let external = TensorProto {
            name: "big".into(),
            dims: vec![1000, 1000],
            data_type: DType::F16.onnx_code(),
            data_location: DataLocation::External as i32,
            external_data: vec![StringStringEntryProto { key: "location".into(), value: "missing.bin".into() }],
            ..Default::default()
        };
        let m = TestModel::new(17)
            .input("x", DType::F32, &["batch", "4"])
            .input("w", DType::F32, &["4", "4"])
            .init(tensor("w", &[4, 4], &[0.0f32; 16]))
            .init(external)
            .node(node("Relu", &["x"], &["a"], vec![]))
            .node(node("Relu", &["a"], &["c"], vec![]))
            .node(custom)
            .node(node("If", &["c"], &["d"], vec![]))
            .output("d", DType::F32);
        let s = summarize(&m.bytes()).unwrap();
        assert_eq!(s.ir_version, 8);
        assert_eq!(s.opset_imports, vec![(String::new(), 17)]);
        assert_eq!(s.producer, "smelt-tests");
        assert_eq!(
            s.inputs,
            vec![
                IoSummary {
                    name: "x".into(),
                    dtype: "f32".into(),
                    dims: Some(vec!["batch".into(), "4".into()]),
                    has_default: false
                },
                IoSummary {
                    name: "w".into(),
                    dtype: "f32".into(),
                    dims: Some(vec!["4".into(), "4".into()]),
                    has_default: true
                },
            ]
        );
        assert_eq!(s.outputs[0].dims, None);
        assert_eq!(s.op_histogram[0], OpCount { domain: "ai.onnx".into(), op_type: "Relu".into(), count: 2 });
        assert_eq!(s.op_histogram.len(), 3);
        assert_eq!(s.node_count, 4);
        // The external tensor counts by its declared size; its file is never opened.
        assert_eq!(s.parameter_count, 16 + 1_000_000);
        assert_eq!(s.parameter_bytes, 64 + 2_000_000);
        let unsupported: Vec<String> = s.unsupported.iter().map(ToString::to_string).collect();
        assert_eq!(unsupported, ["com.microsoft::FusedGemm (node 'fg')", "ai.onnx::If (node 'If_3')"]);
        let text = s.to_string();
        assert!(text.contains("x: f32[batch, 4]") && text.contains("unsupported (2)"), "{text}");
    }

    #[test]
    fn ir3_initializer_inputs_are_not_listed_as_inputs() {
        let m = TestModel::new(8)
            .ir(3)
            .input("x", DType::F32, &["2"])
            .input("w", DType::F32, &["2"])
            .init(tensor("w", &[2], &[1.0f32, 2.0]))
            .node(node("Add", &["x", "w"], &["y"], vec![]))
            .output("y", DType::F32);
        let s = summarize(&m.bytes()).unwrap();
        assert_eq!(s.inputs.len(), 1);
        assert!(s.unsupported.is_empty());
    }

    #[test]
    fn hostile_sizes_saturate_and_garbage_is_an_error() {
        let mut t = tensor("w", &[1], &[1.0f32]);
        t.dims = vec![i64::MAX, i64::MAX, -5];
        let s = summarize(&TestModel::new(13).init(t).bytes()).unwrap();
        assert_eq!(s.parameter_count, 0);
        let mut t = tensor("w", &[1], &[1.0f32]);
        t.dims = vec![i64::MAX, i64::MAX];
        let s = summarize(&TestModel::new(13).init(t).bytes()).unwrap();
        assert_eq!(s.parameter_count, u64::MAX);
        assert!(summarize(&[0xff, 0xff, 0xff]).is_err());
    }
}
