//! Folding an inference-mode BatchNormalization into the Conv that feeds it.
//!
//! `BN(x) = scale · (x − mean) / √(var + ε) + B` is an affine map per channel, and
//! so is a Conv's output channel. With `s = scale / √(var + ε)`:
//! `BN(W ∗ x + b) = (s·W) ∗ x + s·(b − mean) + B`, a Conv with new weights and bias.

use crate::consts::tensor_from_f64;
use crate::uses::Uses;
use crate::{PassError, Patch};
use smelt_ir::{Graph, Node, Op, Tensor};

/// Folds every BatchNormalization that directly follows a Conv with constant
/// weights (and constant or absent bias) into that Conv, when the BN is the Conv
/// output's only reader. Returns how many were folded.
pub fn fold_conv_batchnorm(graph: &mut Graph) -> Result<usize, PassError> {
    let uses = Uses::new(graph);
    let mut patch = Patch::new("Conv+BatchNormalization folding", graph);
    let mut folded = 0;
    for (bn_index, bn) in graph.nodes.iter().enumerate() {
        let Op::BatchNormalization { epsilon } = bn.op else { continue };
        let Some(&Some(conv_output)) = bn.inputs.first() else { continue };
        let Some(conv_index) = uses.private_producer(conv_output, bn_index) else { continue };
        let conv = &graph.nodes[conv_index];
        // Extra outputs (training-mode statistics) would have no producer left.
        let extra_outputs_unread = bn.outputs[1..].iter().all(|&o| !uses.is_used(o));
        if !extra_outputs_unread || patch.touches(conv_index) {
            continue;
        }
        let Some((weight, bias)) = folded_parameters(graph, conv, bn, epsilon) else { continue };

        let weight_name = conv.inputs[1].map_or_else(|| conv.name.clone(), |w| graph.name(w).to_string());
        let weight = patch.add_constant(format!("{weight_name}_bn_folded"), weight);
        let bias = patch.add_constant(format!("{}_bn_folded_bias", conv.name), bias);
        let node = Node {
            name: conv.name.clone(),
            op: conv.op.clone(),
            inputs: vec![conv.inputs[0], Some(weight), Some(bias)],
            outputs: vec![bn.outputs[0]],
        };
        patch.replace_node(conv_index, node);
        patch.remove_node(bn_index);
        folded += 1;
    }
    if folded > 0 {
        patch.apply(graph)?;
    }
    Ok(folded)
}

/// The Conv's weight and bias with the BatchNormalization folded in, computed in
/// f64 and stored in the weight's dtype; `None` when the pattern does not apply.
fn folded_parameters(graph: &Graph, conv: &Node, bn: &Node, epsilon: f32) -> Option<(Tensor, Tensor)> {
    let Op::Conv(attrs) = &conv.op else { return None };
    // An activation between Conv and BN makes the two not compose linearly.
    if attrs.activation.is_some() || conv.outputs.len() != 1 {
        return None;
    }
    let constant = |slot: Option<&Option<usize>>| slot.copied().flatten().and_then(|v| graph.constant(v));
    let weight = constant(conv.inputs.get(1))?;
    let dtype = weight.dtype();
    let out_channels = *weight.shape().first()?;
    if !dtype.is_float() || weight.rank() < 3 || out_channels == 0 {
        return None;
    }
    let per_channel = |t: &Tensor| (t.dtype() == dtype && t.shape() == [out_channels]).then(|| t.to_f64_vec());
    let bias = match conv.inputs.get(2).copied().flatten() {
        None => vec![0.0; out_channels],
        Some(b) => per_channel(graph.constant(b)?)?,
    };
    let [scale, shift, mean, var] = [1, 2, 3, 4].map(|i| constant(bn.inputs.get(i)).and_then(|t| per_channel(t)));
    let (scale, shift, mean, var) = (scale?, shift?, mean?, var?);

    let factor: Vec<f64> = scale.iter().zip(&var).map(|(s, v)| s / (v + epsilon as f64).sqrt()).collect();
    let per_filter = weight.len() / out_channels;
    let new_weight: Vec<f64> =
        weight.to_f64_vec().iter().enumerate().map(|(i, w)| w * factor[i / per_filter]).collect();
    let new_bias: Vec<f64> = (0..out_channels).map(|c| factor[c] * (bias[c] - mean[c]) + shift[c]).collect();
    Some((tensor_from_f64(dtype, weight.shape(), &new_weight), tensor_from_f64(dtype, &[out_channels], &new_bias)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{f32_fact, f32s, unknown};
    use smelt_ir::{AutoPad, ConvAttrs, DType, UnaryOp, ValueId};

    fn conv_op(activation: Option<UnaryOp>) -> Op {
        Op::Conv(ConvAttrs {
            kernel_shape: None,
            strides: vec![],
            pads: vec![],
            dilations: vec![],
            group: 1,
            auto_pad: AutoPad::NotSet,
            activation,
        })
    }

    /// x[1,1,2,2] → Conv(W[2,1,1,1], bias?) → BN(2 channels) → y.
    fn conv_bn(with_bias: bool) -> (Graph, ValueId) {
        let mut g = Graph::new(17);
        let x = g.add_value("x", f32_fact(&[1, 1, 2, 2]));
        let w = g.add_constant("w", f32s(&[2, 1, 1, 1], &[2.0, -1.0]));
        let b = with_bias.then(|| g.add_constant("b", f32s(&[2], &[0.5, 1.0])));
        let scale = g.add_constant("scale", f32s(&[2], &[3.0, 0.5]));
        let shift = g.add_constant("shift", f32s(&[2], &[1.0, -2.0]));
        let mean = g.add_constant("mean", f32s(&[2], &[0.25, 4.0]));
        let var = g.add_constant("var", f32s(&[2], &[3.0, 0.0]));
        let [c, y] = ["c", "y"].map(|n| g.add_value(n, unknown(DType::F32)));
        g.inputs.push(x);
        g.outputs.push(y);
        g.add_node("conv", conv_op(None), vec![Some(x), Some(w), b], vec![c]);
        g.add_node(
            "bn",
            Op::BatchNormalization { epsilon: 1.0 },
            vec![Some(c), Some(scale), Some(shift), Some(mean), Some(var)],
            vec![y],
        );
        (g, y)
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    fn folded_weight_and_bias(g: &Graph) -> (Vec<f32>, Vec<f32>) {
        let read = |slot: usize| {
            let v = g.nodes[0].inputs[slot].unwrap();
            g.constant(v).unwrap().as_slice::<f32>().unwrap().to_vec()
        };
        (read(1), read(2))
    }

    #[test]
    fn folds_into_a_conv_with_bias() {
        let (mut g, y) = conv_bn(true);
        assert_eq!(fold_conv_batchnorm(&mut g).unwrap(), 1);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].outputs, vec![y]);
        // s = scale / sqrt(var + 1) = [1.5, 0.5]
        let (w, b) = folded_weight_and_bias(&g);
        assert!(close(&w, &[3.0, -0.5]), "{w:?}");
        // s * (b - mean) + shift = [1.5 * 0.25 + 1, 0.5 * -3 - 2]
        assert!(close(&b, &[1.375, -3.5]), "{b:?}");
    }

    #[test]
    fn folds_into_a_conv_without_bias() {
        let (mut g, _) = conv_bn(false);
        assert_eq!(fold_conv_batchnorm(&mut g).unwrap(), 1);
        let (w, b) = folded_weight_and_bias(&g);
        assert!(close(&w, &[3.0, -0.5]), "{w:?}");
        assert!(close(&b, &[1.5 * -0.25 + 1.0, 0.5 * -4.0 - 2.0]), "{b:?}");
    }

    #[test]
    fn leaves_a_conv_whose_output_has_other_readers() {
        let (mut g, _) = conv_bn(true);
        let c = g.find_value("c").unwrap();
        g.outputs.push(c);
        assert_eq!(fold_conv_batchnorm(&mut g).unwrap(), 0);
        assert_eq!(g.nodes.len(), 2);
    }

    #[test]
    fn leaves_a_conv_with_an_activation_or_runtime_weights() {
        let (mut g, _) = conv_bn(true);
        g.nodes[0].op = conv_op(Some(UnaryOp::Relu));
        assert_eq!(fold_conv_batchnorm(&mut g).unwrap(), 0);

        let (mut g, _) = conv_bn(true);
        let w = g.add_value("w_runtime", f32_fact(&[2, 1, 1, 1]));
        g.inputs.push(w);
        g.nodes[0].inputs[1] = Some(w);
        assert_eq!(fold_conv_batchnorm(&mut g).unwrap(), 0);
    }
}
