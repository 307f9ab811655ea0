//! Estimated floating-point operations of one op on concrete shapes, for reports
//! (achieved FLOP/s per kernel), roofline analysis and cost-driven choices.
//!
//! The convention, chosen to match how FLOPs are usually quoted for models:
//!
//! - **Products** count a multiply-add as 2: MatMul and Gemm are `2·M·N·K` per
//!   batch entry; Conv is `2 · (C/group)·∏kernel · M · ∏out · N`, i.e. 2 × the
//!   output elements × the weight elements each one reads; ConvTranspose is 2 × the
//!   *input* elements × the weight elements each one scatters to. Einsum is the
//!   product of the sizes of every label (and of the broadcast `...` dims) times the
//!   operand count (2 for the usual two-operand contraction: a multiply and an add).
//! - **Elementwise** ops count 1 per output element; transcendental functions (exp,
//!   log, erf, tanh, sigmoid, GELU, trigonometry, Pow, ...) count
//!   [`TRANSCENDENTAL`]. N-ary Sum/Min/Max count N-1, Mean N.
//! - **Reductions and normalisations** count a small constant per input element:
//!   1 for a plain reduction, 2 for L2/SumSquare, [`SOFTMAX`] for the softmax family,
//!   [`NORMALIZATION`] for Layer/Group/Instance normalisation, 2 for inference
//!   BatchNorm (a folded scale and shift). Pools count one per window element read.
//! - **Data movement** (reshapes, transposes, gathers, scatters without reduction,
//!   concat, slice, pad, casts, shape ops) is 0: it costs bandwidth, not FLOPs.
//! - Fused bias and activation add their own elementwise cost.
//!
//! Missing shapes (an omitted optional input) contribute nothing; arithmetic
//! saturates rather than overflowing.

use crate::{AttentionLayout, BinaryOp, Op, ReduceKind, ResizeMode, ScatterReduction, UnaryOp, VariadicOp};

/// FLOPs charged per element for a transcendental function.
pub const TRANSCENDENTAL: u64 = 4;
/// FLOPs per input element for Softmax/LogSoftmax: max, subtract, exp, sum, scale.
pub const SOFTMAX: u64 = 4 + TRANSCENDENTAL;
/// FLOPs per input element for Layer/Group/Instance normalisation: mean, centre,
/// square, sum, normalise, scale, shift.
pub const NORMALIZATION: u64 = 8;

fn count(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

/// Estimated FLOPs of `op` with the given input shapes (`None` = omitted optional
/// input) and output shapes. See the module doc for what is counted.
pub fn flops(op: &Op, inputs: &[Option<&[usize]>], outputs: &[&[usize]]) -> u64 {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let in_elems = |i: usize| input(i).map_or(0, count);
    let out_elems = outputs.first().map_or(0, |s| count(s));
    let fused = |activation: Option<&UnaryOp>, bias: bool| {
        let per = activation.map_or(0, unary_cost) + bias as u64;
        out_elems.saturating_mul(per)
    };
    match op {
        Op::Unary(u) => out_elems.saturating_mul(unary_cost(u)),
        Op::Binary(b) => out_elems.saturating_mul(binary_cost(*b)),
        Op::Variadic(v) => {
            let n = inputs.iter().flatten().count() as u64;
            let per = match v {
                VariadicOp::Mean => n,
                _ => n.saturating_sub(1),
            };
            out_elems.saturating_mul(per)
        }
        Op::Clip => out_elems.saturating_mul(2),
        Op::Where => out_elems,

        Op::MatMul { activation } => {
            // K is A's last dim (its only dim when A is a vector).
            let k = input(0).and_then(|a| a.last().copied()).unwrap_or(0) as u64;
            out_elems.saturating_mul(k).saturating_mul(2).saturating_add(fused(activation.as_ref(), input(2).is_some()))
        }
        Op::Attention(attrs) => {
            // Two products (S·L·D and S·L·Dv multiply-adds per batch) and a
            // softmax over the S·L scores.
            let (Some(q), Some(v)) = (input(0), input(2)) else { return 0 };
            let head_major = |s: &[usize]| match (attrs.layout, s) {
                (AttentionLayout::TokenMajor, &[b, s, h, d]) => vec![b, h, s, d],
                _ => s.to_vec(),
            };
            let (q, v) = (head_major(q), head_major(v));
            let last_two = |s: &[usize]| match s {
                [.., a, b] => (*a as u64, *b as u64),
                _ => (0, 0),
            };
            let ((s, d), (l, dv)) = (last_two(&q), last_two(&v));
            let scores = count(&q[..q.len().saturating_sub(2)]).saturating_mul(s).saturating_mul(l);
            scores.saturating_mul(2 * (d + dv)).saturating_add(scores.saturating_mul(SOFTMAX))
        }
        Op::Gemm { trans_a, activation, .. } => {
            let k = input(0).map_or(0, |a| if *trans_a { a.first() } else { a.get(1) }.copied().unwrap_or(0)) as u64;
            out_elems.saturating_mul(k).saturating_mul(2).saturating_add(fused(activation.as_ref(), input(2).is_some()))
        }
        Op::Conv(c) => {
            // Each output element reads (C/group)·∏kernel weights: W's dims past the first.
            let per_out = input(1).map_or(0, |w| count(w.get(1..).unwrap_or(&[])));
            out_elems
                .saturating_mul(per_out)
                .saturating_mul(2)
                .saturating_add(fused(c.activation.as_ref(), input(2).is_some()))
        }
        Op::ConvTranspose(c) => {
            // Each input element scatters into (M/group)·∏kernel outputs.
            let per_in = input(1).map_or(0, |w| count(w.get(1..).unwrap_or(&[])));
            let bias = if input(2).is_some() { out_elems } else { 0 };
            in_elems(0)
                .saturating_mul(per_in)
                .saturating_mul(2)
                .saturating_add(bias)
                .saturating_add(fused(c.conv.activation.as_ref(), false))
        }
        Op::Einsum { equation } => einsum_flops(equation, inputs),

        Op::MaxPool(p) | Op::AveragePool(p) => out_elems.saturating_mul(count(&p.kernel_shape)),
        Op::LpPool { attrs, .. } => out_elems.saturating_mul(count(&attrs.kernel_shape)).saturating_mul(2),
        Op::GlobalAveragePool | Op::GlobalMaxPool => in_elems(0),

        Op::Softmax { .. } | Op::LogSoftmax { .. } => in_elems(0).saturating_mul(SOFTMAX),
        Op::Hardmax { .. } => in_elems(0),
        Op::BatchNormalization { .. } => in_elems(0).saturating_mul(2),
        Op::LayerNormalization { .. } | Op::InstanceNormalization { .. } | Op::GroupNormalization { .. } => {
            in_elems(0).saturating_mul(NORMALIZATION)
        }
        Op::LpNormalization { .. } => in_elems(0).saturating_mul(3),

        Op::Reduce { kind, .. } => {
            let per = match kind {
                ReduceKind::L2 | ReduceKind::SumSquare => 2,
                ReduceKind::LogSumExp => 1 + TRANSCENDENTAL,
                _ => 1,
            };
            in_elems(0).saturating_mul(per)
        }
        Op::ArgMax { .. } | Op::ArgMin { .. } | Op::TopK { .. } | Op::CumSum { .. } => in_elems(0),
        Op::ScatterND { reduction } | Op::ScatterElements { reduction, .. } => match reduction {
            ScatterReduction::None => 0,
            _ => in_elems(2),
        },
        Op::Resize(r) => {
            // Linear reads 2 taps per resized axis, cubic 4; each tap is a multiply-add.
            let resized = match (input(0), outputs.first()) {
                (Some(i), Some(o)) => i.iter().zip(o.iter()).filter(|(a, b)| a != b).count() as u32,
                _ => 0,
            };
            let taps: u64 = match r.mode {
                ResizeMode::Nearest => 0,
                ResizeMode::Linear => 2u64.saturating_pow(resized),
                ResizeMode::Cubic => 4u64.saturating_pow(resized),
            };
            out_elems.saturating_mul(taps.saturating_mul(2))
        }
        Op::Range => out_elems,

        Op::Cast { .. }
        | Op::CastLike
        | Op::Identity
        | Op::Dropout
        | Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Transpose { .. }
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Concat { .. }
        | Op::Split { .. }
        | Op::Slice
        | Op::Gather { .. }
        | Op::GatherElements { .. }
        | Op::GatherND { .. }
        | Op::Expand
        | Op::Tile
        | Op::Pad { .. }
        | Op::Shape { .. }
        | Op::Size
        | Op::ConstantOfShape { .. }
        | Op::Trilu { .. }
        | Op::OneHot { .. }
        | Op::DepthToSpace { .. }
        | Op::SpaceToDepth { .. } => 0,
    }
}

fn unary_cost(u: &UnaryOp) -> u64 {
    match u {
        UnaryOp::Exp
        | UnaryOp::Log
        | UnaryOp::Erf
        | UnaryOp::Tanh
        | UnaryOp::Sigmoid
        | UnaryOp::Elu { .. }
        | UnaryOp::Selu { .. }
        | UnaryOp::Celu { .. }
        | UnaryOp::Gelu { .. }
        | UnaryOp::Softplus
        | UnaryOp::Mish
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tan
        | UnaryOp::Asin
        | UnaryOp::Acos
        | UnaryOp::Atan
        | UnaryOp::Sinh
        | UnaryOp::Cosh
        | UnaryOp::Asinh
        | UnaryOp::Acosh
        | UnaryOp::Atanh => TRANSCENDENTAL,
        _ => 1,
    }
}

fn binary_cost(b: BinaryOp) -> u64 {
    match b {
        BinaryOp::Pow => TRANSCENDENTAL,
        _ => 1,
    }
}

/// The product of every label's size (and of the broadcast ellipsis dims), times
/// the operand count. Unparseable equations or rank mismatches cost 0: inference
/// rejects them before anything runs.
fn einsum_flops(equation: &str, inputs: &[Option<&[usize]>]) -> u64 {
    let Ok(eq) = crate::infer::einsum::parse(equation) else { return 0 };
    let mut sizes: std::collections::BTreeMap<char, usize> = std::collections::BTreeMap::new();
    let mut ellipsis: Vec<usize> = Vec::new();
    for (term, shape) in eq.inputs.iter().zip(inputs) {
        let Some(shape) = shape else { return 0 };
        let n = term.letters.len();
        let Some(ell_rank) = shape.len().checked_sub(n) else { return 0 };
        let at = term.ellipsis.unwrap_or(n);
        for (j, c) in term.letters.iter().enumerate() {
            let d = shape[if j < at { j } else { j + ell_rank }];
            let e = sizes.entry(*c).or_insert(d);
            *e = (*e).max(d);
        }
        if term.ellipsis.is_some() {
            let own = &shape[at..at + ell_rank];
            // Broadcast: align on the right, keep the larger size.
            if own.len() > ellipsis.len() {
                let mut grown = vec![1; own.len() - ellipsis.len()];
                grown.extend_from_slice(&ellipsis);
                ellipsis = grown;
            }
            let off = ellipsis.len() - own.len();
            for (k, &d) in own.iter().enumerate() {
                ellipsis[off + k] = ellipsis[off + k].max(d);
            }
        }
    }
    let space = sizes.values().chain(ellipsis.iter()).fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
    space.saturating_mul(eq.inputs.len().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttentionAttrs, AttentionMask, AutoPad, ConvAttrs, ConvTransposeAttrs, PoolAttrs, ResizeAttrs};

    fn f(op: &Op, inputs: &[&[usize]], output: &[usize]) -> u64 {
        let inputs: Vec<Option<&[usize]>> = inputs.iter().map(|s| Some(*s)).collect();
        flops(op, &inputs, &[output])
    }

    fn conv_attrs(group: usize) -> ConvAttrs {
        ConvAttrs {
            kernel_shape: None,
            strides: vec![],
            pads: vec![],
            dilations: vec![],
            group,
            auto_pad: AutoPad::NotSet,
            activation: None,
        }
    }

    #[test]
    fn products() {
        let mm = Op::MatMul { activation: None };
        assert_eq!(f(&mm, &[&[8, 128, 768], &[768, 3072]], &[8, 128, 3072]), 2 * 8 * 128 * 768 * 3072);
        assert_eq!(f(&mm, &[&[5], &[5, 3]], &[3]), 2 * 5 * 3);
        let fused = Op::MatMul { activation: Some(UnaryOp::Relu) };
        assert_eq!(f(&fused, &[&[2, 3], &[3, 4], &[4]], &[2, 4]), 2 * 2 * 3 * 4 + 2 * 8);
        let gemm = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: true, trans_b: false, activation: None };
        assert_eq!(f(&gemm, &[&[7, 4], &[7, 5]], &[4, 5]), 2 * 4 * 5 * 7);
        let attention = Op::Attention(AttentionAttrs {
            scale: 1.0,
            keys_transposed: true,
            mask: AttentionMask::None,
            layout: AttentionLayout::HeadMajor,
        });
        let scores = 2 * 12 * 128 * 128;
        assert_eq!(
            f(&attention, &[&[2, 12, 128, 64], &[2, 12, 64, 128], &[2, 12, 128, 32]], &[2, 12, 128, 32]),
            scores * 2 * (64 + 32) + scores * SOFTMAX
        );
        let token_major = Op::Attention(AttentionAttrs {
            scale: 1.0,
            keys_transposed: false,
            mask: AttentionMask::None,
            layout: AttentionLayout::TokenMajor,
        });
        assert_eq!(
            f(&token_major, &[&[2, 128, 12, 64], &[2, 128, 12, 64], &[2, 128, 12, 32]], &[2, 128, 12, 32]),
            scores * 2 * (64 + 32) + scores * SOFTMAX
        );
    }

    #[test]
    fn convolutions() {
        // ResNet stem: 2·(3·7·7)·64·112·112 per image.
        let conv = Op::Conv(conv_attrs(1));
        let stem = f(&conv, &[&[1, 3, 224, 224], &[64, 3, 7, 7]], &[1, 64, 112, 112]);
        assert_eq!(stem, 2 * 3 * 7 * 7 * 64 * 112 * 112);
        // Depthwise: group = C, so each output reads one channel's kernel.
        let dw = Op::Conv(conv_attrs(32));
        assert_eq!(f(&dw, &[&[1, 32, 10, 10], &[32, 1, 3, 3]], &[1, 32, 8, 8]), 2 * 9 * 32 * 64);
        let t =
            Op::ConvTranspose(ConvTransposeAttrs { conv: conv_attrs(1), output_padding: vec![], output_shape: None });
        assert_eq!(f(&t, &[&[1, 8, 5, 5], &[8, 4, 3, 3]], &[1, 4, 7, 7]), 2 * 8 * 25 * 4 * 9);
    }

    #[test]
    fn einsum_counts_the_index_space() {
        let op = Op::Einsum { equation: "bij,bjk->bik".into() };
        assert_eq!(f(&op, &[&[4, 3, 5], &[4, 5, 6]], &[4, 3, 6]), 2 * 4 * 3 * 5 * 6);
        let ell = Op::Einsum { equation: "...ij,...jk".into() };
        assert_eq!(f(&ell, &[&[2, 1, 3, 5], &[4, 5, 6]], &[2, 4, 3, 6]), 2 * 2 * 4 * 3 * 5 * 6);
        let trace = Op::Einsum { equation: "ii".into() };
        assert_eq!(f(&trace, &[&[7, 7]], &[]), 7);
    }

    #[test]
    fn elementwise_reductions_and_movement() {
        assert_eq!(f(&Op::Binary(BinaryOp::Add), &[&[2, 3], &[3]], &[2, 3]), 6);
        assert_eq!(f(&Op::Unary(UnaryOp::Exp), &[&[10]], &[10]), 10 * TRANSCENDENTAL);
        assert_eq!(f(&Op::Variadic(VariadicOp::Sum), &[&[4], &[4], &[4]], &[4]), 8);
        assert_eq!(f(&Op::Softmax { axis: -1, coerce_2d: false }, &[&[2, 5]], &[2, 5]), 10 * SOFTMAX);
        let ln = Op::LayerNormalization { axis: -1, epsilon: 1e-5 };
        assert_eq!(f(&ln, &[&[4, 8], &[8]], &[4, 8]), 32 * NORMALIZATION);
        let sum = Op::Reduce { kind: ReduceKind::Sum, keepdims: false, noop_with_empty_axes: false };
        assert_eq!(f(&sum, &[&[4, 8]], &[4]), 32);
        let pool = Op::MaxPool(PoolAttrs {
            kernel_shape: vec![3, 3],
            strides: vec![],
            pads: vec![],
            dilations: vec![],
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            count_include_pad: false,
            storage_order: 0,
        });
        assert_eq!(f(&pool, &[&[1, 2, 5, 5]], &[1, 2, 3, 3]), 18 * 9);
        assert_eq!(f(&Op::Transpose { perm: None }, &[&[100, 100]], &[100, 100]), 0);
        assert_eq!(f(&Op::Gather { axis: 0 }, &[&[1000, 64], &[8]], &[8, 64]), 0);
    }

    #[test]
    fn resize_counts_interpolation_taps() {
        let mut attrs = ResizeAttrs {
            mode: ResizeMode::Linear,
            coordinate_transform: crate::CoordinateTransform::HalfPixel,
            nearest_mode: crate::NearestMode::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: None,
            keep_aspect_ratio_policy: crate::KeepAspectRatioPolicy::Stretch,
        };
        let out = [1, 3, 20, 20];
        assert_eq!(f(&Op::Resize(attrs.clone()), &[&[1, 3, 10, 10]], &out), 1200 * 4 * 2);
        attrs.mode = ResizeMode::Nearest;
        assert_eq!(f(&Op::Resize(attrs), &[&[1, 3, 10, 10]], &out), 0);
    }

    #[test]
    fn huge_shapes_saturate() {
        let mm = Op::MatMul { activation: None };
        let big = usize::MAX / 2;
        assert_eq!(f(&mm, &[&[big, big], &[big, big]], &[big, big]), u64::MAX);
    }
}
