//! [`Patch`]: a list of edits built against a graph and applied in one step.

use crate::PassError;
use smelt_ir::{Fact, Graph, Node, Op, Tensor, Value, ValueId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Edits to a graph, recorded while a pass inspects the graph and applied together
/// by [`Patch::apply`].
///
/// Node indices and value ids refer to the graph the patch was created from. Values
/// added by the patch get the ids they will have once it is applied, so they can be
/// used as inputs of replacement nodes right away.
///
/// Redirects apply to the graph *after* the node edits, so a replacement node may
/// read a value that the same patch redirects. A redirected graph output keeps its
/// name: the value it is redirected to is renamed (see [`Patch::redirect`]).
pub struct Patch {
    pass: &'static str,
    base_values: usize,
    new_values: Vec<Value>,
    constants: Vec<(ValueId, Arc<Tensor>)>,
    /// `None` removes the node, `Some` replaces it in place (same position).
    node_edits: BTreeMap<usize, Option<Node>>,
    redirects: HashMap<ValueId, ValueId>,
    /// A node the pass edited twice; reported by `apply`, where its name is known.
    edited_twice: Option<usize>,
}

impl Patch {
    /// An empty patch for `graph`, made by the pass named `pass` (for error messages).
    pub fn new(pass: &'static str, graph: &Graph) -> Patch {
        Patch {
            pass,
            base_values: graph.values.len(),
            new_values: Vec::new(),
            constants: Vec::new(),
            node_edits: BTreeMap::new(),
            redirects: HashMap::new(),
            edited_twice: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.new_values.is_empty()
            && self.constants.is_empty()
            && self.node_edits.is_empty()
            && self.redirects.is_empty()
    }

    /// Whether the patch already replaces or removes node `index`. Passes check this
    /// before matching a pattern so that two matches never claim the same node; the
    /// losing match is found again on the next round.
    pub fn touches(&self, index: usize) -> bool {
        self.node_edits.contains_key(&index)
    }

    /// Adds a constant value. `name` is made unique on apply by appending a suffix.
    pub fn add_constant(&mut self, name: impl Into<String>, tensor: Tensor) -> ValueId {
        let fact = Fact::constant(Arc::new(tensor));
        self.new_values.push(Value { name: name.into(), fact });
        self.base_values + self.new_values.len() - 1
    }

    /// Turns an existing value into a constant, keeping its id and name. The node
    /// that computes it must be removed (or replaced by one that does not) in the
    /// same patch.
    pub fn set_constant(&mut self, value: ValueId, tensor: Arc<Tensor>) {
        self.constants.push((value, tensor));
    }

    /// Replaces node `index` by `node`, at the same position in the node order.
    pub fn replace_node(&mut self, index: usize, node: Node) {
        self.edit_node(index, Some(node));
    }

    pub fn remove_node(&mut self, index: usize) {
        self.edit_node(index, None);
    }

    /// Replaces a matched chain of `nodes` by one node computing `op` from
    /// `inputs`, in the place of `last` (one of `nodes`), with `last`'s name and
    /// outputs; the chain's other nodes are removed.
    pub fn replace_chain(&mut self, graph: &Graph, nodes: &[usize], last: usize, op: Op, inputs: Vec<Option<ValueId>>) {
        let kept = &graph.nodes[last];
        self.replace_node(last, Node { name: kept.name.clone(), op, inputs, outputs: kept.outputs.clone() });
        for &n in nodes.iter().filter(|&&n| n != last) {
            self.remove_node(n);
        }
    }

    /// Makes every reader of `from` read `to` instead.
    ///
    /// If `from` is a graph output, the output becomes `to` and `to` takes `from`'s
    /// name (the two swap names), so callers still find the output under its ONNX
    /// name. That is impossible when `to` is a graph input or already an output, and
    /// `apply` fails; passes keep such nodes instead of redirecting.
    pub fn redirect(&mut self, from: ValueId, to: ValueId) {
        self.redirects.insert(from, to);
    }

    fn edit_node(&mut self, index: usize, edit: Option<Node>) {
        if self.node_edits.insert(index, edit).is_some() && self.edited_twice.is_none() {
            self.edited_twice = Some(index);
        }
    }

    /// Applies every edit, then restores topological order and checks the graph.
    pub fn apply(self, graph: &mut Graph) -> Result<(), PassError> {
        if graph.values.len() != self.base_values {
            return Err(PassError::StalePatch { expected: self.base_values, found: graph.values.len() });
        }
        let count = graph.nodes.len();
        if let Some((&index, _)) = self.node_edits.range(count..).next() {
            return Err(PassError::NoSuchNode { index, count });
        }
        if let Some(index) = self.edited_twice {
            return Err(PassError::NodeEditedTwice { node: graph.nodes[index].name.clone() });
        }

        self.add_values(graph);
        for (value, tensor) in &self.constants {
            graph.values[*value].fact = Fact::constant(tensor.clone());
        }
        let mut edits = self.node_edits;
        graph.nodes = std::mem::take(&mut graph.nodes)
            .into_iter()
            .enumerate()
            .filter_map(|(i, node)| match edits.remove(&i) {
                None => Some(node),
                Some(edit) => edit,
            })
            .collect();
        apply_redirects(graph, &self.redirects)?;

        if !self.constants.is_empty() {
            let producers = graph.producers();
            for (value, _) in &self.constants {
                if let Some(p) = producers[*value] {
                    return Err(PassError::ConstantStillProduced {
                        value: graph.values[*value].name.clone(),
                        node: graph.nodes[p].name.clone(),
                    });
                }
            }
        }
        graph.sort_and_check().map_err(|source| PassError::InvalidGraph { pass: self.pass, source })
    }

    fn add_values(&self, graph: &mut Graph) {
        if self.new_values.is_empty() {
            return;
        }
        let mut taken: HashSet<String> = graph.values.iter().map(|v| v.name.clone()).collect();
        for value in &self.new_values {
            let name = unique_name(&value.name, &taken);
            taken.insert(name.clone());
            graph.values.push(Value { name, fact: value.fact.clone() });
        }
    }
}

/// `base`, or `base_1`, `base_2`, ... whichever is not taken.
fn unique_name(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (1..).map(|i| format!("{base}_{i}")).find(|n| !taken.contains(n)).expect("an unbounded range has a free name")
}

fn apply_redirects(graph: &mut Graph, redirects: &HashMap<ValueId, ValueId>) -> Result<(), PassError> {
    if redirects.is_empty() {
        return Ok(());
    }
    // Chains (a → b, b → c) are followed to their end; a chain longer than the number
    // of redirects must loop.
    let resolve = |start: ValueId| -> Result<ValueId, PassError> {
        let mut v = start;
        for _ in 0..=redirects.len() {
            match redirects.get(&v) {
                Some(&next) => v = next,
                None => return Ok(v),
            }
        }
        Err(PassError::RedirectCycle { from: graph.values[start].name.clone() })
    };

    let mut resolved: HashMap<ValueId, ValueId> = HashMap::new();
    for &from in redirects.keys() {
        resolved.insert(from, resolve(from)?);
    }
    for node in &mut graph.nodes {
        for input in node.inputs.iter_mut().flatten() {
            if let Some(&to) = resolved.get(input) {
                *input = to;
            }
        }
    }

    let mut unavailable: HashSet<ValueId> = graph.inputs.iter().chain(&graph.outputs).copied().collect();
    for slot in 0..graph.outputs.len() {
        let output = graph.outputs[slot];
        let Some(&target) = resolved.get(&output) else { continue };
        if !unavailable.insert(target) {
            return Err(PassError::OutputWouldAlias {
                output: graph.values[output].name.clone(),
                target: graph.values[target].name.clone(),
            });
        }
        // Swapping keeps names unique; `output` is left with the target's old name and
        // is dropped by cleanup once nothing refers to it.
        let output_name = std::mem::take(&mut graph.values[output].name);
        graph.values[output].name = std::mem::replace(&mut graph.values[target].name, output_name);
        graph.outputs[slot] = target;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::{DType, Op, Shape, UnaryOp};

    fn f32_fact() -> Fact {
        Fact::new(DType::F32, Shape::fixed(&[2]))
    }

    /// x → Relu → a → Identity → y (output)
    fn chain() -> (Graph, [ValueId; 3]) {
        let mut g = Graph::new(17);
        let x = g.add_value("x", f32_fact());
        let a = g.add_value("a", f32_fact());
        let y = g.add_value("y", f32_fact());
        g.inputs.push(x);
        g.outputs.push(y);
        g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(x)], vec![a]);
        g.add_node("id", Op::Identity, vec![Some(a)], vec![y]);
        (g, [x, a, y])
    }

    #[test]
    fn redirecting_an_output_keeps_its_name() {
        let (mut g, [_, a, y]) = chain();
        let mut p = Patch::new("test", &g);
        p.remove_node(1);
        p.redirect(y, a);
        p.apply(&mut g).unwrap();
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.outputs, vec![a]);
        assert_eq!(g.name(a), "y");
        assert_eq!(g.name(y), "a");
    }

    #[test]
    fn redirecting_an_output_to_an_input_fails() {
        let (mut g, [x, _, y]) = chain();
        let mut p = Patch::new("test", &g);
        p.redirect(y, x);
        assert!(matches!(p.apply(&mut g), Err(PassError::OutputWouldAlias { .. })));
    }

    #[test]
    fn redirect_chains_are_followed() {
        let (mut g, [x, a, y]) = chain();
        let z = g.add_value("z", f32_fact());
        g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(y)], vec![z]);
        g.outputs = vec![z];
        let mut p = Patch::new("test", &g);
        p.remove_node(0);
        p.remove_node(1);
        p.redirect(y, a);
        p.redirect(a, x);
        p.apply(&mut g).unwrap();
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].inputs, vec![Some(x)]);
    }

    #[test]
    fn redirect_cycles_are_reported() {
        let (mut g, [_, a, y]) = chain();
        let mut p = Patch::new("test", &g);
        p.redirect(y, a);
        p.redirect(a, y);
        assert!(matches!(p.apply(&mut g), Err(PassError::RedirectCycle { .. })));
    }

    #[test]
    fn new_constants_get_unique_names_and_exact_facts() {
        let (mut g, [_, a, _]) = chain();
        let mut p = Patch::new("test", &g);
        let c = p.add_constant("a", Tensor::from_vec(&[2], vec![1.0f32, 2.0]).unwrap());
        p.replace_node(
            1,
            Node {
                name: "add".into(),
                op: Op::Binary(smelt_ir::BinaryOp::Add),
                inputs: vec![Some(a), Some(c)],
                outputs: vec![2],
            },
        );
        p.apply(&mut g).unwrap();
        assert_eq!(g.name(c), "a_1");
        assert_eq!(g.fact(c).shape, Shape::fixed(&[2]));
        assert!(g.constant(c).is_some());
    }

    #[test]
    fn a_node_edited_twice_is_an_error() {
        let (mut g, _) = chain();
        let mut p = Patch::new("test", &g);
        p.remove_node(1);
        assert!(p.touches(1));
        p.remove_node(1);
        assert!(matches!(p.apply(&mut g), Err(PassError::NodeEditedTwice { node }) if node == "id"));
    }

    #[test]
    fn a_constant_must_lose_its_producer() {
        let (mut g, [_, a, _]) = chain();
        let mut p = Patch::new("test", &g);
        p.set_constant(a, Arc::new(Tensor::from_vec(&[2], vec![0.0f32, 0.0]).unwrap()));
        assert!(matches!(p.apply(&mut g), Err(PassError::ConstantStillProduced { .. })));
    }

    #[test]
    fn a_stale_patch_is_refused() {
        let (mut g, _) = chain();
        let p = Patch::new("test", &g);
        g.add_value("late", f32_fact());
        assert!(matches!(p.apply(&mut g), Err(PassError::StalePatch { .. })));
    }
}
