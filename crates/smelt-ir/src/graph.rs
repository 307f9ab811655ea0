//! The typed graph: values (edges) with facts, nodes holding typed ops, and the
//! graph's inputs, outputs and constants.

use crate::{DType, IrError, Op, Shape, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// What is known about a value before run time.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub dtype: DType,
    pub shape: Shape,
    /// The value itself, when it is a compile-time constant.
    pub constant: Option<Arc<Tensor>>,
    /// For 1-D integer tensors that hold dimensions (what `Shape` produces and the
    /// Gather/Concat/Slice/Unsqueeze chains built on it): each element as a [`crate::Dim`],
    /// so Reshape/Expand can give symbolic output shapes (`[batch, 2048]`).
    pub dims_value: Option<Vec<crate::Dim>>,
}

impl Fact {
    pub fn new(dtype: DType, shape: Shape) -> Fact {
        Fact { dtype, shape, constant: None, dims_value: None }
    }

    pub fn constant(tensor: Arc<Tensor>) -> Fact {
        Fact { dtype: tensor.dtype(), shape: Shape::fixed(tensor.shape()), constant: Some(tensor), dims_value: None }
    }

    /// The constant's elements as i64, if this is a constant.
    pub fn const_i64(&self) -> Option<Vec<i64>> {
        self.constant.as_ref().map(|t| t.to_i64_vec())
    }
}

/// An edge of the graph.
#[derive(Clone, Debug)]
pub struct Value {
    /// The ONNX tensor name (unique in the graph).
    pub name: String,
    pub fact: Fact,
}

#[derive(Clone, Debug)]
pub struct Node {
    /// The ONNX node name; the importer invents `{op}_{index}` when the model has none.
    pub name: String,
    pub op: Op,
    /// Positional inputs; `None` is an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<ValueId>,
}

/// A dataflow graph in topological order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub values: Vec<Value>,
    /// Nodes in an order where every node comes after the producers of its inputs.
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Graph inputs that have a default (an initializer of the same name, IR >= 4):
    /// used when the caller does not provide the input.
    pub input_defaults: HashMap<ValueId, Arc<Tensor>>,
    /// The default-domain opset the model was written against.
    pub opset: i64,
    /// Free-form provenance (`producer_name producer_version`).
    pub producer: String,
}

impl Graph {
    pub fn new(opset: i64) -> Graph {
        Graph { opset, ..Default::default() }
    }

    pub fn add_value(&mut self, name: impl Into<String>, fact: Fact) -> ValueId {
        self.values.push(Value { name: name.into(), fact });
        self.values.len() - 1
    }

    pub fn add_constant(&mut self, name: impl Into<String>, tensor: Tensor) -> ValueId {
        self.add_value(name, Fact::constant(Arc::new(tensor)))
    }

    pub fn add_node(&mut self, name: impl Into<String>, op: Op, inputs: Vec<Option<ValueId>>, outputs: Vec<ValueId>) {
        self.nodes.push(Node { name: name.into(), op, inputs, outputs });
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id]
    }

    pub fn fact(&self, id: ValueId) -> &Fact {
        &self.values[id].fact
    }

    pub fn name(&self, id: ValueId) -> &str {
        &self.values[id].name
    }

    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }

    /// The constant held by a value, if any.
    pub fn constant(&self, id: ValueId) -> Option<&Arc<Tensor>> {
        self.values[id].fact.constant.as_ref()
    }

    /// For each value, the node that produces it (`None` for inputs and constants).
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &o in &n.outputs {
                p[o] = Some(i);
            }
        }
        p
    }

    /// For each value, the nodes that read it.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut c = vec![Vec::new(); self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for &v in n.inputs.iter().flatten() {
                if !c[v].contains(&i) {
                    c[v].push(i);
                }
            }
        }
        c
    }

    /// Op histogram: op name → node count, sorted by count then name.
    pub fn op_histogram(&self) -> Vec<(&'static str, usize)> {
        let mut h: HashMap<&'static str, usize> = HashMap::new();
        for n in &self.nodes {
            *h.entry(n.op.name()).or_default() += 1;
        }
        let mut v: Vec<_> = h.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// Reorders nodes topologically (stable: keeps the given order where it is valid)
    /// and checks that every input is defined. Fails on cycles and dangling inputs.
    pub fn sort_and_check(&mut self) -> Result<(), IrError> {
        let producers = self.producers();
        let n = self.nodes.len();
        let mut indegree = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for &v in node.inputs.iter().flatten() {
                if v >= self.values.len() {
                    return Err(IrError::Graph(format!("node '{}' reads value #{v}, which does not exist", node.name)));
                }
                match producers[v] {
                    Some(p) => {
                        indegree[i] += 1;
                        users[p].push(i);
                    }
                    None => {
                        let defined = self.values[v].fact.constant.is_some() || self.inputs.contains(&v);
                        if !defined {
                            return Err(IrError::Graph(format!(
                                "node '{}' reads '{}', which no node, input or initializer defines",
                                node.name, self.values[v].name
                            )));
                        }
                    }
                }
            }
        }
        // Kahn's algorithm with a min-heap on the original index keeps the order stable.
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
            (0..n).filter(|&i| indegree[i] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() != n {
            let stuck = (0..n).find(|i| !order.contains(i)).map(|i| self.nodes[i].name.clone()).unwrap_or_default();
            return Err(IrError::Graph(format!("the graph has a cycle through node '{stuck}'")));
        }
        let mut old: Vec<Option<Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = order.into_iter().map(|i| old[i].take().expect("each node once")).collect();
        for &o in &self.outputs {
            let defined = producers[o].is_some() || self.values[o].fact.constant.is_some() || self.inputs.contains(&o);
            if !defined {
                return Err(IrError::Graph(format!("graph output '{}' is never produced", self.values[o].name)));
            }
        }
        Ok(())
    }

    /// Runs shape inference over every node in order, refining each output's fact.
    /// Declared facts (from the model's value_info) are kept where inference knows less.
    pub fn infer_facts(&mut self) -> Result<(), IrError> {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let inputs: Vec<Option<&Fact>> = node.inputs.iter().map(|v| v.map(|v| &self.values[v].fact)).collect();
            let inferred = crate::infer::infer(&node.op, &inputs, node.outputs.len()).map_err(|message| {
                IrError::Node { node: node.name.clone(), op: node.op.name().to_string(), message }
            })?;
            let outputs = node.outputs.clone();
            for (o, fact) in outputs.into_iter().zip(inferred) {
                let old = &self.values[o].fact;
                self.values[o].fact = crate::infer::merge(old, fact);
            }
        }
        Ok(())
    }
}
