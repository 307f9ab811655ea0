//! The pass pipeline: every pass in order, repeated until none changes the graph.

use crate::cleanup::prune_values;
use crate::fold::{fold_constants, DEFAULT_MAX_FOLDED_BYTES};
use crate::{attention, conv_bn, dead, epilogue, gelu, identity, residual, ConstEval, PassError};
use smelt_ir::Graph;
use std::fmt;

/// Which optional passes run, and the limits of the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptimizeOptions {
    /// Constant folding leaves a node alone when one of its outputs would be larger
    /// than this: folding trades compile-time work for memory, and a constant the
    /// size of an activation costs more to keep than the node costs to run.
    pub max_folded_bytes: usize,
    /// Fold BatchNormalization into the Conv before it. Turned off to compare a
    /// model against a reference node by node.
    pub fold_batch_norm: bool,
    /// Fuse bias additions and activations into Conv/Gemm/MatMul. Turned off for
    /// backends whose kernels have no fused epilogue.
    pub fuse_epilogues: bool,
    /// Fuse `MatMul → scale → mask → Softmax → MatMul` into one `Attention` node.
    /// Off by default: only backends with an attention kernel turn it on.
    pub fuse_attention: bool,
    /// Fuse a residual `Add(Conv(x), z)` into the Conv as its input `Z`. Off by
    /// default: only backends whose Conv kernel reads `Z` turn it on.
    pub fuse_residual: bool,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions {
            max_folded_bytes: DEFAULT_MAX_FOLDED_BYTES,
            fold_batch_norm: true,
            fuse_epilogues: true,
            fuse_attention: false,
            fuse_residual: false,
        }
    }
}

/// What [`optimize`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassReport {
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// Rounds of the pipeline, the last of which changed nothing.
    pub rounds: usize,
    /// Nodes replaced by constants the evaluator computed.
    pub constants_folded: usize,
    /// Nodes replaced by constants the facts determine (shape arithmetic).
    pub shapes_folded: usize,
    pub identities_removed: usize,
    pub batch_norms_folded: usize,
    pub biases_fused: usize,
    pub activations_fused: usize,
    /// Decomposed GELU chains replaced by one `Gelu` node.
    pub gelus_fused: usize,
    /// Attention chains replaced by one `Attention` node.
    pub attentions_fused: usize,
    /// Residual Adds folded into the Conv before them.
    pub residuals_fused: usize,
    pub dead_nodes_removed: usize,
    /// Values (mostly constants that folding replaced) dropped from the graph.
    pub values_pruned: usize,
    /// Nodes left unfolded at the end because an output would exceed
    /// [`OptimizeOptions::max_folded_bytes`].
    pub too_large_to_fold: usize,
    /// Nodes with constant inputs that the evaluator could not run, with reasons.
    pub fold_failures: Vec<String>,
    /// Distinct errors from shape inference between rounds. The passes work with
    /// whatever facts the graph holds, so these do not stop the pipeline, but they
    /// mean facts were less precise than they could have been.
    pub inference_errors: Vec<String>,
}

/// Runs the passes in order (constant folding, identity removal, Conv+BN folding,
/// attention and residual fusion when asked for, GELU and epilogue fusion, dead-node removal) until a round changes nothing, refreshing
/// shape facts before each round, then drops unused values.
///
/// Every change removes at least one node, so the loop ends. Value ids are
/// renumbered at the end; graph inputs and outputs keep their names.
pub fn optimize(graph: &mut Graph, eval: &dyn ConstEval, opts: &OptimizeOptions) -> Result<PassReport, PassError> {
    let mut report = PassReport { nodes_before: graph.nodes.len(), ..PassReport::default() };
    loop {
        report.rounds += 1;
        refresh_facts(graph, &mut report);
        let mut changes = 0;

        let fold = fold_constants(graph, eval, opts.max_folded_bytes)?;
        report.constants_folded += fold.evaluated;
        report.shapes_folded += fold.from_facts;
        // The last round's view is the final one: nodes that stay unfolded.
        report.too_large_to_fold = fold.too_large;
        report.fold_failures = fold.failures.clone();
        changes += fold.folded();

        let removed = identity::remove_identities(graph)?;
        report.identities_removed += removed;
        changes += removed;

        if opts.fold_batch_norm {
            let folded = conv_bn::fold_conv_batchnorm(graph)?;
            report.batch_norms_folded += folded;
            changes += folded;
        }
        if opts.fuse_attention {
            // Before epilogue fusion, which could otherwise fold a constant mask
            // into the scores' MatMul and hide the chain.
            let fused = attention::fuse_attention(graph)?;
            report.attentions_fused += fused;
            changes += fused;
        }
        if opts.fuse_residual {
            // Before epilogue fusion, so the activation after the sum joins the
            // Conv that now computes the sum.
            let fused = residual::fuse_residual(graph)?;
            report.residuals_fused += fused;
            changes += fused;
        }
        if opts.fuse_epilogues {
            // GELU first, so the Gelu it makes is fused into its MatMul this round.
            let fused = gelu::fuse_gelu(graph)?;
            report.gelus_fused += fused;
            changes += fused;
            let fused = epilogue::fuse_epilogues(graph)?;
            report.biases_fused += fused.biases;
            report.activations_fused += fused.activations;
            changes += fused.biases + fused.activations;
        }
        if opts.fuse_residual {
            // After epilogue fusion: a transformer's projection adds its bias
            // before the residual, so only then is the MatMul next to the sum.
            let fused = residual::fuse_matmul_residual(graph)?;
            report.residuals_fused += fused;
            changes += fused;
        }

        let removed = dead::remove_dead_nodes(graph)?;
        report.dead_nodes_removed += removed;
        changes += removed;

        if changes == 0 {
            break;
        }
    }
    report.values_pruned = prune_values(graph);
    report.nodes_after = graph.nodes.len();
    Ok(report)
}

/// Re-runs shape inference so passes see facts that reflect the last round's
/// rewrites (a folded Reshape target fixes the Reshape's output shape, ...).
fn refresh_facts(graph: &mut Graph, report: &mut PassReport) {
    if let Err(error) = graph.infer_facts() {
        let message = error.to_string();
        if !report.inference_errors.contains(&message) {
            report.inference_errors.push(message);
        }
    }
}

impl fmt::Display for PassReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {} nodes in {} rounds", self.nodes_before, self.nodes_after, self.rounds)?;
        let counts = [
            (self.constants_folded, "constants folded"),
            (self.shapes_folded, "shape ops folded"),
            (self.identities_removed, "identities removed"),
            (self.batch_norms_folded, "batch norms folded"),
            (self.biases_fused, "biases fused"),
            (self.gelus_fused, "GELUs fused"),
            (self.attentions_fused, "attentions fused"),
            (self.residuals_fused, "residual adds fused"),
            (self.activations_fused, "activations fused"),
            (self.dead_nodes_removed, "dead nodes removed"),
            (self.too_large_to_fold, "too large to fold"),
            (self.fold_failures.len(), "fold failures"),
            (self.inference_errors.len(), "inference errors"),
        ];
        for (count, what) in counts.into_iter().filter(|&(count, _)| count > 0) {
            write!(f, ", {count} {what}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{f32_fact, f32s, i64s, sym, unknown, ToyEval};
    use smelt_ir::{AutoPad, BinaryOp, ConvAttrs, DType, Dim, Fact, Op, Shape, UnaryOp};

    /// A small CNN head as exporters write it: a constant subgraph, Conv → BN → Relu,
    /// Dropout, Flatten through a Shape chain, MatMul → Add, Identity into the output,
    /// and a dead branch.
    fn exported_model() -> Graph {
        let mut g = Graph::new(17);
        let x =
            g.add_value("input", Fact::new(DType::F32, Shape::new(vec![sym("batch"), 1.into(), 2.into(), 2.into()])));
        g.inputs.push(x);
        let conv = Op::Conv(ConvAttrs {
            kernel_shape: None,
            strides: vec![],
            pads: vec![],
            dilations: vec![],
            group: 1,
            auto_pad: AutoPad::NotSet,
            activation: None,
        });
        let half = g.add_constant("half", f32s(&[2, 1, 1, 1], &[1.0, 2.0]));
        let two = g.add_constant("two", f32s(&[], &[2.0]));
        let [scale, shift, mean, var] =
            ["scale", "shift", "mean", "var"].map(|n| g.add_constant(n, f32s(&[2], &[1.0, 1.0])));
        let axis0 = g.add_constant("axis0", i64s(&[], &[0]));
        let axes = g.add_constant("axes", i64s(&[1], &[0]));
        let minus_one = g.add_constant("minus_one", i64s(&[1], &[-1]));
        let w_fc = g.add_constant("w_fc", f32s(&[8, 3], &[0.5; 24]));
        let b_fc = g.add_constant("b_fc", f32s(&[3], &[1.0, 2.0, 3.0]));
        let names = [
            "w", "c", "bn", "relu", "drop", "mask", "shape", "batch", "batch1", "target", "flat", "mm", "fc", "dead",
            "logits",
        ];
        let [w, c, bn, relu, drop, mask, shape, batch, batch1, target, flat, mm, fc, dead, logits] =
            names.map(|n| g.add_value(n, unknown(DType::F32)));
        for v in [shape, batch, batch1, target] {
            g.values[v].fact.dtype = DType::I64;
        }
        g.outputs.push(logits);
        g.add_node("weights", Op::Binary(BinaryOp::Mul), vec![Some(half), Some(two)], vec![w]);
        g.add_node("conv", conv, vec![Some(x), Some(w), None], vec![c]);
        g.add_node(
            "bn",
            Op::BatchNormalization { epsilon: 0.0 },
            vec![Some(c), Some(scale), Some(shift), Some(mean), Some(var)],
            vec![bn],
        );
        g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(bn)], vec![relu]);
        g.add_node("drop", Op::Dropout, vec![Some(relu)], vec![drop, mask]);
        g.add_node("shape", Op::Shape { start: 0, end: None }, vec![Some(drop)], vec![shape]);
        g.add_node("gather", Op::Gather { axis: 0 }, vec![Some(shape), Some(axis0)], vec![batch]);
        g.add_node("unsqueeze", Op::Unsqueeze, vec![Some(batch), Some(axes)], vec![batch1]);
        g.add_node("concat", Op::Concat { axis: 0 }, vec![Some(batch1), Some(minus_one)], vec![target]);
        g.add_node("flatten", Op::Reshape { allowzero: false }, vec![Some(drop), Some(target)], vec![flat]);
        g.add_node("fc", Op::MatMul { activation: None }, vec![Some(flat), Some(w_fc)], vec![mm]);
        g.add_node("fc_bias", Op::Binary(BinaryOp::Add), vec![Some(mm), Some(b_fc)], vec![fc]);
        g.add_node("unused", Op::Unary(UnaryOp::Exp), vec![Some(fc)], vec![dead]);
        g.add_node("out", Op::Identity, vec![Some(fc)], vec![logits]);
        g
    }

    fn op_names(g: &Graph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.op.name()).collect()
    }

    #[test]
    fn pipeline_reaches_a_fixed_point_and_keeps_output_names() {
        let mut g = exported_model();
        let report = optimize(&mut g, &ToyEval::default(), &OptimizeOptions::default()).unwrap();

        // Without facts for the Relu output, the batch dim of the Shape chain stays
        // unknown, so the chain stays; everything else folds or fuses.
        assert_eq!(op_names(&g), ["Conv", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "MatMul"]);
        let conv = &g.nodes[0];
        assert_eq!(conv.op.activation(), Some(&UnaryOp::Relu));
        assert_eq!(conv.inputs.len(), 3);
        let matmul = g.nodes.last().unwrap();
        assert_eq!(matmul.inputs.len(), 3);
        assert_eq!(g.outputs.len(), 1);
        assert_eq!(g.name(g.outputs[0]), "logits");
        assert_eq!(g.nodes.last().unwrap().outputs, g.outputs);
        assert_eq!(g.name(g.inputs[0]), "input");

        assert_eq!(report.nodes_before, 14);
        assert_eq!(report.nodes_after, 7);
        assert_eq!(report.constants_folded, 1);
        assert_eq!(report.identities_removed, 2);
        assert_eq!(report.batch_norms_folded, 1);
        assert_eq!(report.biases_fused, 1);
        assert_eq!(report.activations_fused, 1);
        assert_eq!(report.dead_nodes_removed, 1);
        assert!(report.values_pruned > 0);
        assert!(report.fold_failures.is_empty(), "{:?}", report.fold_failures);
        assert!(report.rounds >= 2);
        assert!(report.to_string().starts_with("14 → 7 nodes"), "{report}");
        g.sort_and_check().unwrap();
    }

    #[test]
    fn fixed_facts_fold_the_whole_shape_chain() {
        let mut g = exported_model();
        let x = g.inputs[0];
        g.values[x].fact = f32_fact(&[4, 1, 2, 2]);
        // What inference would say about the tensors the Shape chain reads (through
        // the Dropout, and directly once the Dropout is gone).
        for name in ["relu", "drop"] {
            let v = g.find_value(name).unwrap();
            g.values[v].fact = f32_fact(&[4, 2, 2, 2]);
        }

        optimize(&mut g, &ToyEval::default(), &OptimizeOptions::default()).unwrap();
        assert_eq!(op_names(&g), ["Conv", "Reshape", "MatMul"]);
        let target = g.nodes[1].inputs[1].unwrap();
        assert_eq!(g.constant(target).unwrap().to_i64_vec(), vec![4, -1]);
    }

    #[test]
    fn options_turn_fusions_off() {
        let mut g = exported_model();
        let opts = OptimizeOptions { fold_batch_norm: false, fuse_epilogues: false, ..OptimizeOptions::default() };
        let report = optimize(&mut g, &ToyEval::default(), &opts).unwrap();
        assert_eq!(report.batch_norms_folded + report.biases_fused + report.activations_fused, 0);
        assert!(op_names(&g).contains(&"BatchNormalization"));
    }

    #[test]
    fn inference_errors_are_reported_not_fatal() {
        // Shapes [2] and [3] do not broadcast: inference must reject the Add.
        let mut g = Graph::new(17);
        let x = g.add_value("x", f32_fact(&[2]));
        let z = g.add_value("z", f32_fact(&[3]));
        let y = g.add_value("y", unknown(DType::F32));
        g.inputs.extend([x, z]);
        g.outputs.push(y);
        g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(x), Some(z)], vec![y]);
        let report = optimize(&mut g, &ToyEval::default(), &OptimizeOptions::default()).unwrap();
        assert_eq!(report.inference_errors.len(), 1, "{:?}", report.inference_errors);
        assert!(report.inference_errors[0].contains("'add'"), "{:?}", report.inference_errors);
        assert_eq!(g.nodes.len(), 1);
    }

    #[test]
    fn an_empty_graph_is_already_optimal() {
        let mut g = Graph::new(17);
        let x = g.add_value("x", Fact::new(DType::F32, Shape::new(vec![Dim::Unknown])));
        g.inputs.push(x);
        g.outputs.push(x);
        let report = optimize(&mut g, &ToyEval::default(), &OptimizeOptions::default()).unwrap();
        assert_eq!(report.rounds, 1);
        assert_eq!(report.nodes_after, 0);
        assert_eq!(g.outputs, g.inputs);
    }
}
