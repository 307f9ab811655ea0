//! `ModelProto` → [`Model`]: values, constants, graph inputs and outputs, and one
//! Smelt node per ONNX node.

use crate::attrs::NodeAttrs;
use crate::dtype::{dtype_from_code, onnx_type_name};
use crate::ops::{self, is_default_domain, is_supported, OpContext};
use crate::proto::{tensor_shape_proto::dimension, type_proto, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use crate::tensor::tensor_from_proto;
use crate::{OnnxError, UnsupportedNode};
use prost::Message;
use smelt_ir::{DType, Dim, Fact, Graph, Shape, Tensor, ValueId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// The oldest default-domain opset Smelt imports.
pub const MIN_OPSET: i64 = 7;
/// The newest default-domain opset Smelt imports (the newest that onnx 1.23 defines).
pub const MAX_OPSET: i64 = 28;

/// An imported model: the graph plus the metadata around it.
#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    pub ir_version: i64,
    /// The default-domain opset (also in `graph.opset`).
    pub opset: i64,
    /// Every (domain, version) the model imports.
    pub opset_imports: Vec<(String, i64)>,
    /// `producer_name producer_version` (also in `graph.producer`).
    pub producer: String,
    pub model_version: i64,
    pub doc_string: String,
    pub metadata: Vec<(String, String)>,
}

/// Reads and imports a model file. External data is looked up next to it.
pub fn load_model(path: &Path) -> Result<Model, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { path: path.to_path_buf(), source })?;
    if bytes.is_empty() {
        return Err(OnnxError::EmptyFile);
    }
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Decoding from `Bytes` lets tensors' raw data borrow the file buffer instead of copying it.
    let proto = ModelProto::decode(bytes::Bytes::from(bytes))?;
    import_model(proto, Some(base_dir))
}

/// Imports a model held in memory. `base_dir` is where external data files are
/// looked up; without it, a model with external data is refused.
pub fn load_model_from_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Model, OnnxError> {
    // An empty buffer is a valid (empty) protobuf message; say what it really is.
    if bytes.is_empty() {
        return Err(OnnxError::EmptyFile);
    }
    let proto = ModelProto::decode(bytes)?;
    import_model(proto, base_dir)
}

/// The model's default-domain opset, checked against the supported range.
pub(crate) fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let found = model.opset_import.iter().find(|o| is_default_domain(&o.domain)).map(|o| o.version);
    match found {
        None => Err(OnnxError::NoDefaultOpset { min: MIN_OPSET, max: MAX_OPSET }),
        Some(v) if !(MIN_OPSET..=MAX_OPSET).contains(&v) => {
            Err(OnnxError::UnsupportedOpset { found: v, min: MIN_OPSET, max: MAX_OPSET })
        }
        Some(v) => Ok(v),
    }
}

/// A node's name, or `{op_type}_{index}` when the model gives none.
pub(crate) fn node_name(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("{}_{index}", node.op_type)
    } else {
        node.name.clone()
    }
}

/// Every node of the graph Smelt cannot run, in graph order.
pub(crate) fn unsupported_nodes(graph: &GraphProto) -> Vec<UnsupportedNode> {
    graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| !is_supported(&n.domain, &n.op_type))
        .map(|(i, n)| UnsupportedNode {
            domain: if is_default_domain(&n.domain) { "ai.onnx".to_string() } else { n.domain.clone() },
            op_type: n.op_type.clone(),
            node: node_name(n, i),
        })
        .collect()
}

fn import_model(mut model: ModelProto, base_dir: Option<&Path>) -> Result<Model, OnnxError> {
    // A model with no default-domain opset at all is usually made of other domains'
    // operators (ai.onnx.ml, training); listing those says more than the opset does.
    let opset = match default_opset(&model) {
        Err(OnnxError::NoDefaultOpset { .. })
            if model.graph.as_ref().is_some_and(|g| !unsupported_nodes(g).is_empty()) =>
        {
            None
        }
        other => Some(other?),
    };
    let mut graph_proto = model.graph.take().ok_or(OnnxError::MissingGraph)?;
    let unsupported = unsupported_nodes(&graph_proto);
    if !unsupported.is_empty() {
        return Err(OnnxError::UnsupportedOps(unsupported));
    }
    let opset = opset.ok_or(OnnxError::NoDefaultOpset { min: MIN_OPSET, max: MAX_OPSET })?;
    let producer = format!("{} {}", model.producer_name, model.producer_version).trim().to_string();
    let mut graph = GraphImporter::new(opset, model.ir_version, base_dir).import(&mut graph_proto)?;
    graph.producer = producer.clone();
    Ok(Model {
        graph,
        ir_version: model.ir_version,
        opset,
        opset_imports: model.opset_import.iter().map(|o| (o.domain.clone(), o.version)).collect(),
        producer,
        model_version: model.model_version,
        doc_string: model.doc_string,
        metadata: model.metadata_props.into_iter().map(|e| (e.key, e.value)).collect(),
    })
}

/// Where a value the importer does not compute came from, for errors when
/// something reads it.
struct DroppedOutput {
    node: String,
    op: String,
    index: usize,
}

struct GraphImporter<'b> {
    graph: Graph,
    names: HashMap<String, ValueId>,
    dropped: HashMap<String, DroppedOutput>,
    ir_version: i64,
    base_dir: Option<&'b Path>,
}

impl<'b> GraphImporter<'b> {
    fn new(opset: i64, ir_version: i64, base_dir: Option<&'b Path>) -> Self {
        GraphImporter { graph: Graph::new(opset), names: HashMap::new(), dropped: HashMap::new(), ir_version, base_dir }
    }

    fn define(&mut self, name: &str, fact: Fact) -> Result<ValueId, OnnxError> {
        if self.names.contains_key(name) {
            return Err(OnnxError::value(name, "is defined more than once (by inputs, initializers or node outputs)"));
        }
        let id = self.graph.add_value(name, fact);
        self.names.insert(name.to_string(), id);
        Ok(id)
    }

    fn define_constant(&mut self, name: &str, tensor: Tensor) -> Result<ValueId, OnnxError> {
        self.define(name, Fact::constant(Arc::new(tensor)))
    }

    fn import(mut self, proto: &mut GraphProto) -> Result<Graph, OnnxError> {
        // Taken out so each initializer's memory is released once it is converted.
        let initializers = std::mem::take(&mut proto.initializer);
        let proto = &*proto;
        if let Some(sparse) = proto.sparse_initializer.first() {
            let name = sparse.values.as_ref().map_or("<unnamed>", |v| v.name.as_str());
            return Err(OnnxError::tensor(name, "is a sparse initializer; Smelt needs dense tensors"));
        }

        // Before IR 4 every initializer also had to be listed as a graph input; those
        // inputs are really constants. From IR 4 on such an input is overridable and
        // the initializer is its default.
        let shadowed_inputs_are_constants = self.ir_version < 4;
        let initializer_names: HashSet<&str> = initializers.iter().map(|t| t.name.as_str()).collect();
        for input in &proto.input {
            if shadowed_inputs_are_constants && initializer_names.contains(input.name.as_str()) {
                continue;
            }
            let fact = input_fact(input)?;
            let id = self.define(&input.name, fact)?;
            self.graph.inputs.push(id);
        }
        drop(initializer_names);
        for init in initializers {
            if init.name.is_empty() {
                return Err(OnnxError::tensor("<unnamed>", "an initializer has no name"));
            }
            let tensor = tensor_from_proto(&init.name, &init, self.base_dir)?;
            match self.names.get(&init.name) {
                Some(&id) if self.graph.inputs.contains(&id) && !self.graph.input_defaults.contains_key(&id) => {
                    let declared = self.graph.fact(id);
                    if declared.dtype != tensor.dtype() || !declared.shape.admits(tensor.shape()) {
                        return Err(OnnxError::tensor(
                            &init.name,
                            format!(
                                "the initializer ({} {:?}) does not fit the graph input of the same name ({} {})",
                                tensor.dtype(),
                                tensor.shape(),
                                declared.dtype,
                                declared.shape
                            ),
                        ));
                    }
                    self.graph.input_defaults.insert(id, Arc::new(tensor));
                }
                _ => {
                    self.define_constant(&init.name, tensor)?;
                }
            }
        }

        let declared: HashMap<&str, &ValueInfoProto> =
            proto.value_info.iter().chain(&proto.output).map(|v| (v.name.as_str(), v)).collect();
        for index in topological_order(&proto.node) {
            let node = &proto.node[index];
            let name = node_name(node, index);
            if node.op_type == "Constant" {
                self.import_constant(node, &name)?;
            } else {
                self.import_node(node, &name, &declared)?;
            }
        }

        for output in &proto.output {
            let id = match self.names.get(&output.name) {
                Some(&id) => id,
                None => return Err(self.undefined(&output.name, "the graph output")),
            };
            self.graph.outputs.push(id);
        }
        self.graph.sort_and_check()?;
        Ok(self.graph)
    }

    /// The error for reading a name nothing defines.
    fn undefined(&self, name: &str, reader: &str) -> OnnxError {
        match self.dropped.get(name) {
            Some(d) => OnnxError::value(
                name,
                format!(
                    "{reader} reads output {} of node '{}' ({}), which exists for training only and Smelt does not compute",
                    d.index, d.node, d.op
                ),
            ),
            None => OnnxError::value(
                name,
                format!("{reader} reads it, but no node, graph input or initializer defines it (or it is defined in a cycle)"),
            ),
        }
    }

    fn import_constant(&mut self, node: &NodeProto, name: &str) -> Result<(), OnnxError> {
        let bad = |message: String| OnnxError::BadNode { node: name.to_string(), op: "Constant".into(), message };
        if !node.input.is_empty() || node.output.len() != 1 || node.output[0].is_empty() {
            return Err(bad(format!(
                "needs no inputs and one output, has {} and {}",
                node.input.len(),
                node.output.len()
            )));
        }
        if node.attribute.len() != 1 {
            return Err(bad(format!("needs exactly one value attribute, has {}", node.attribute.len())));
        }
        let output = &node.output[0];
        let a = NodeAttrs::new(name, "Constant", &node.attribute);
        let attr = &node.attribute[0].name;
        let tensor = match attr.as_str() {
            "value" => {
                let t = a.tensor("value")?.ok_or_else(|| a.error("value", "holds no tensor"))?;
                tensor_from_proto(output, t, self.base_dir)?
            }
            "value_float" => Tensor::scalar(a.float_or("value_float", 0.0)?),
            "value_int" => Tensor::scalar(a.int_or("value_int", 0)?),
            "value_floats" => {
                let v = a.floats("value_floats")?.unwrap_or_default();
                Tensor::from_slice(&[v.len()], v).expect("a 1-D tensor of len elements")
            }
            "value_ints" => {
                let v = a.ints("value_ints")?.unwrap_or_default();
                Tensor::from_slice(&[v.len()], v).expect("a 1-D tensor of len elements")
            }
            "value_string" | "value_strings" => return Err(a.error(attr, "string constants are not supported")),
            "sparse_value" => {
                return Err(a.error(attr, "sparse constants are not supported; Smelt needs dense tensors"))
            }
            other => return Err(a.error(other, "is not an attribute of Constant")),
        };
        self.define_constant(output, tensor)?;
        Ok(())
    }

    fn import_node(
        &mut self,
        node: &NodeProto,
        name: &str,
        declared: &HashMap<&str, &ValueInfoProto>,
    ) -> Result<(), OnnxError> {
        let mut inputs = Vec::with_capacity(node.input.len());
        for input in &node.input {
            if input.is_empty() {
                inputs.push(None);
                continue;
            }
            match self.names.get(input) {
                Some(&id) => inputs.push(Some(id)),
                None => return Err(self.undefined(input, &format!("node '{name}' ({})", node.op_type))),
            }
        }
        while inputs.last() == Some(&None) {
            inputs.pop();
        }
        let n_outputs = node.output.iter().rposition(|o| !o.is_empty()).map_or(0, |i| i + 1);
        let mut cx = OpContext {
            node: name,
            op_type: &node.op_type,
            opset: self.graph.opset,
            attrs: NodeAttrs::new(name, &node.op_type, &node.attribute),
            inputs,
            n_outputs,
            n_outputs_all: node.output.len(),
            graph: &mut self.graph,
            names: &mut self.names,
        };
        let lowered = ops::lower(&mut cx)?;

        let input_dtypes: Vec<Option<DType>> =
            lowered.inputs.iter().map(|v| v.map(|v| self.graph.fact(v).dtype)).collect();
        let guesses = ops::guess_output_dtypes(&lowered.op, &input_dtypes, lowered.outputs);
        let mut outputs = Vec::with_capacity(lowered.outputs);
        for (i, guess) in guesses.into_iter().enumerate() {
            let output = node.output.get(i).map_or("", String::as_str);
            let id = if output.is_empty() {
                // A position the op computes but nobody reads still needs a value.
                let placeholder = ops::unused_name(&self.names, &format!("{name}::unused_output_{i}"));
                self.define(&placeholder, Fact::new(guess, Shape::unknown()))?
            } else {
                let fact = match declared.get(output) {
                    Some(vi) => declared_fact(vi, guess)?,
                    None => Fact::new(guess, Shape::unknown()),
                };
                self.define(output, fact)?
            };
            outputs.push(id);
        }
        for (index, output) in node.output.iter().enumerate().skip(lowered.outputs) {
            if !output.is_empty() {
                let dropped = DroppedOutput { node: name.to_string(), op: node.op_type.clone(), index };
                self.dropped.insert(output.clone(), dropped);
            }
        }
        self.graph.add_node(name, lowered.op, lowered.inputs, outputs);
        Ok(())
    }
}

/// Node indices in an order where producers come before consumers, keeping the
/// file's order where it already is one. Nodes in cycles go last, in file order;
/// the import then reports what they read as undefined.
fn topological_order(nodes: &[NodeProto]) -> Vec<usize> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.entry(o.as_str()).or_insert(i);
        }
    }
    let mut indegree = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for input in &n.input {
            if let Some(&p) = producer.get(input.as_str()) {
                if p != i {
                    indegree[i] += 1;
                    users[p].push(i);
                }
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len()).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(nodes.len());
    let mut placed = vec![false; nodes.len()];
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        placed[i] = true;
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    order.extend((0..nodes.len()).filter(|&i| !placed[i]));
    order
}

/// The shape a value info declares: fixed, symbolic or unknown per dimension.
fn declared_shape(shape: Option<&crate::proto::TensorShapeProto>) -> Shape {
    let Some(shape) = shape else {
        return Shape::unknown();
    };
    Shape::new(
        shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) => usize::try_from(*v).map_or(Dim::Unknown, Dim::Fixed),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                _ => Dim::Unknown,
            })
            .collect(),
    )
}

/// What a value info says about a tensor: element type code and shape. Non-tensor
/// types are errors naming the kind.
fn tensor_type(vi: &ValueInfoProto) -> Result<Option<&type_proto::Tensor>, OnnxError> {
    let Some(ty) = &vi.r#type else {
        return Ok(None);
    };
    let kind = match &ty.value {
        None => return Ok(None),
        Some(type_proto::Value::TensorType(t)) => return Ok(Some(t)),
        Some(type_proto::Value::SequenceType(_)) => "a sequence",
        Some(type_proto::Value::MapType(_)) => "a map",
        Some(type_proto::Value::OptionalType(_)) => "an optional",
        Some(type_proto::Value::SparseTensorType(_)) => "a sparse tensor",
    };
    Err(OnnxError::value(&vi.name, format!("is {kind}; Smelt supports dense tensors only")))
}

/// A graph input's fact; inputs must declare a supported element type.
fn input_fact(vi: &ValueInfoProto) -> Result<Fact, OnnxError> {
    let t = tensor_type(vi)?.ok_or_else(|| OnnxError::value(&vi.name, "the graph input declares no type"))?;
    let dtype = dtype_from_code(t.elem_type).map_err(|m| OnnxError::value(&vi.name, format!("the graph input {m}")))?;
    Ok(Fact::new(dtype, declared_shape(t.shape.as_ref())))
}

/// An intermediate or output value's fact: the declared type, or `guess` where
/// the declaration leaves it out.
fn declared_fact(vi: &ValueInfoProto, guess: DType) -> Result<Fact, OnnxError> {
    let Some(t) = tensor_type(vi)? else {
        return Ok(Fact::new(guess, Shape::unknown()));
    };
    let dtype = match t.elem_type {
        0 => guess,
        code => DType::from_onnx_code(code).ok_or_else(|| {
            OnnxError::value(&vi.name, format!("is declared as {}, which Smelt does not support", onnx_type_name(code)))
        })?,
    };
    Ok(Fact::new(dtype, declared_shape(t.shape.as_ref())))
}

#[cfg(test)]
mod tests;
