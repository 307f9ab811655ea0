//! Who produces and who reads each value: the questions every pattern asks first.

use smelt_ir::{Graph, ValueId};

/// Producer and readers of every value of a graph, as it was when this was built.
pub(crate) struct Uses {
    producers: Vec<Option<usize>>,
    consumers: Vec<Vec<usize>>,
    is_output: Vec<bool>,
    is_input: Vec<bool>,
}

impl Uses {
    pub(crate) fn new(graph: &Graph) -> Uses {
        let mut is_output = vec![false; graph.values.len()];
        for &o in &graph.outputs {
            is_output[o] = true;
        }
        let mut is_input = vec![false; graph.values.len()];
        for &i in &graph.inputs {
            is_input[i] = true;
        }
        Uses { producers: graph.producers(), consumers: graph.consumers(), is_output, is_input }
    }

    pub(crate) fn is_output(&self, value: ValueId) -> bool {
        self.is_output[value]
    }

    pub(crate) fn is_input(&self, value: ValueId) -> bool {
        self.is_input[value]
    }

    /// Whether `value` is read by nodes or by the caller.
    pub(crate) fn is_used(&self, value: ValueId) -> bool {
        self.is_output[value] || !self.consumers[value].is_empty()
    }

    /// The one node that reads `value`, if exactly one does and the caller does not.
    pub(crate) fn only_reader(&self, value: ValueId) -> Option<usize> {
        match self.consumers[value][..] {
            [reader] if !self.is_output[value] => Some(reader),
            _ => None,
        }
    }

    /// The node that computes `value`, if `reader` is the only thing that reads it:
    /// the condition for merging the two nodes without computing `value` twice.
    pub(crate) fn private_producer(&self, value: ValueId, reader: usize) -> Option<usize> {
        let only_reader = !self.is_output[value] && self.consumers[value] == [reader];
        if only_reader {
            self.producers[value]
        } else {
            None
        }
    }
}
