//! ONNX nodes → Smelt ops.
//!
//! Each ONNX op type has one lowering function that reads the node's attributes
//! for the model's opset and returns the op in Smelt's canonical form (the newest
//! opset's form; see `smelt_ir::op`): attributes that later opsets turned into
//! inputs become constant inputs added to the graph here.

mod conv;
mod elementwise;
mod linalg;
mod movement;
mod norm;
mod reduce;
mod resize;

use crate::attrs::NodeAttrs;
use crate::OnnxError;
use smelt_ir::{DType, Graph, Op, Tensor, UnaryOp, ValueId};
use std::collections::HashMap;

/// Every default-domain op type the importer understands, with the opset that
/// introduced it. `Constant` is imported as a graph constant, not as a node.
pub const SUPPORTED_OPS: &[(&str, i64)] = &[
    ("Abs", 1),
    ("Acos", 7),
    ("Acosh", 9),
    ("Add", 1),
    ("And", 1),
    ("ArgMax", 1),
    ("ArgMin", 1),
    ("Asin", 7),
    ("Asinh", 9),
    ("Atan", 7),
    ("Atanh", 9),
    ("AveragePool", 1),
    ("BatchNormalization", 1),
    ("BitShift", 11),
    ("BitwiseAnd", 18),
    ("BitwiseNot", 18),
    ("BitwiseOr", 18),
    ("BitwiseXor", 18),
    ("Cast", 1),
    ("CastLike", 15),
    ("Ceil", 1),
    ("Celu", 12),
    ("Clip", 1),
    ("Concat", 1),
    ("Constant", 1),
    ("ConstantOfShape", 9),
    ("Conv", 1),
    ("ConvTranspose", 1),
    ("Cos", 7),
    ("Cosh", 9),
    ("CumSum", 11),
    ("DepthToSpace", 1),
    ("Div", 1),
    ("Dropout", 1),
    ("Einsum", 12),
    ("Elu", 1),
    ("Equal", 1),
    ("Erf", 9),
    ("Exp", 1),
    ("Expand", 8),
    ("Flatten", 1),
    ("Floor", 1),
    ("Gather", 1),
    ("GatherElements", 11),
    ("GatherND", 11),
    ("Gelu", 20),
    ("Gemm", 1),
    ("GlobalAveragePool", 1),
    ("GlobalMaxPool", 1),
    ("Greater", 1),
    ("GreaterOrEqual", 12),
    ("GroupNormalization", 18),
    ("HardSigmoid", 1),
    ("HardSwish", 14),
    ("Hardmax", 1),
    ("Identity", 1),
    ("InstanceNormalization", 1),
    ("IsInf", 10),
    ("IsNaN", 9),
    ("LayerNormalization", 17),
    ("LeakyRelu", 1),
    ("Less", 1),
    ("LessOrEqual", 12),
    ("Log", 1),
    ("LogSoftmax", 1),
    ("LpNormalization", 1),
    ("LpPool", 1),
    ("MatMul", 1),
    ("Max", 1),
    ("MaxPool", 1),
    ("Mean", 1),
    ("Min", 1),
    ("Mish", 18),
    ("Mod", 10),
    ("Mul", 1),
    ("Neg", 1),
    ("Not", 1),
    ("OneHot", 9),
    ("Or", 1),
    ("PRelu", 1),
    ("Pad", 1),
    ("Pow", 1),
    ("Range", 11),
    ("Reciprocal", 1),
    ("ReduceL1", 1),
    ("ReduceL2", 1),
    ("ReduceLogSum", 1),
    ("ReduceLogSumExp", 1),
    ("ReduceMax", 1),
    ("ReduceMean", 1),
    ("ReduceMin", 1),
    ("ReduceProd", 1),
    ("ReduceSum", 1),
    ("ReduceSumSquare", 1),
    ("Relu", 1),
    ("Reshape", 1),
    ("Resize", 10),
    ("Round", 11),
    ("Scatter", 9),
    ("ScatterElements", 11),
    ("ScatterND", 11),
    ("Selu", 1),
    ("Shape", 1),
    ("Sigmoid", 1),
    ("Sign", 9),
    ("Sin", 7),
    ("Sinh", 9),
    ("Size", 1),
    ("Slice", 1),
    ("Softmax", 1),
    ("Softplus", 1),
    ("Softsign", 1),
    ("SpaceToDepth", 1),
    ("Split", 1),
    ("Sqrt", 1),
    ("Squeeze", 1),
    ("Sub", 1),
    ("Sum", 1),
    ("Tan", 7),
    ("Tanh", 1),
    ("ThresholdedRelu", 10),
    ("Tile", 1),
    ("TopK", 1),
    ("Transpose", 1),
    ("Trilu", 14),
    ("Unsqueeze", 1),
    ("Upsample", 7),
    ("Where", 9),
    ("Xor", 1),
];

/// Whether a node's (domain, op_type) is one Smelt can import.
pub fn is_supported(domain: &str, op_type: &str) -> bool {
    is_default_domain(domain) && SUPPORTED_OPS.iter().any(|(name, _)| *name == op_type)
}

pub fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// What a node becomes: the op, its canonical inputs, and how many of the node's
/// outputs (a prefix) the op produces.
pub(crate) struct Lowered {
    pub op: Op,
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: usize,
}

/// One node being lowered: its attributes, resolved inputs, and access to the
/// graph for the constant inputs canonicalisation adds.
pub(crate) struct OpContext<'a> {
    pub node: &'a str,
    pub op_type: &'a str,
    pub opset: i64,
    pub attrs: NodeAttrs<'a>,
    /// Resolved inputs; an omitted optional input is `None`; trailing omitted ones are trimmed.
    pub inputs: Vec<Option<ValueId>>,
    /// Output count, trailing omitted outputs trimmed.
    pub n_outputs: usize,
    /// Output count including trailing omitted outputs (it decides Split's parts).
    pub n_outputs_all: usize,
    pub graph: &'a mut Graph,
    pub names: &'a mut HashMap<String, ValueId>,
}

impl<'a> OpContext<'a> {
    pub fn error(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::BadNode { node: self.node.to_string(), op: self.op_type.to_string(), message: message.into() }
    }

    /// Checks the input count and that the first `min` inputs are present.
    pub fn expect_inputs(&self, min: usize, max: usize) -> Result<(), OnnxError> {
        let n = self.inputs.len();
        if n < min || n > max {
            let range = if min == max {
                min.to_string()
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.error(format!("has {n} input(s); opset {} expects {range}", self.opset)));
        }
        if let Some(i) = self.inputs[..min].iter().position(Option::is_none) {
            return Err(self.error(format!("input {i} is required but empty")));
        }
        Ok(())
    }

    pub fn expect_outputs(&self, min: usize, max: usize) -> Result<(), OnnxError> {
        let n = self.n_outputs;
        if n < min || n > max {
            let range = if min == max {
                min.to_string()
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.error(format!("has {n} output(s); opset {} expects {range}", self.opset)));
        }
        Ok(())
    }

    /// Checks the common one-output shape and reads no attributes.
    pub fn expect_io(&self, min_in: usize, max_in: usize) -> Result<(), OnnxError> {
        self.expect_inputs(min_in, max_in)?;
        self.expect_outputs(1, 1)
    }

    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    /// The element type of input `i`, as far as the importer knows it.
    pub fn input_dtype(&self, i: usize) -> Option<DType> {
        self.input(i).map(|v| self.graph.fact(v).dtype)
    }

    /// Adds a constant input for this node, named after the node and its role.
    pub fn add_constant(&mut self, role: &str, tensor: Tensor) -> ValueId {
        let name = unused_name(self.names, &format!("{}::{role}", self.node));
        let id = self.graph.add_constant(name.clone(), tensor);
        self.names.insert(name, id);
        id
    }

    /// A 1-D int64 constant, the form shape-like inputs (axes, pads, starts) take.
    pub fn add_i64s(&mut self, role: &str, values: &[i64]) -> ValueId {
        let t = Tensor::from_slice(&[values.len()], values).expect("a 1-D tensor of len elements");
        self.add_constant(role, t)
    }

    /// A scalar in the element type of input `like` (f32 when unknown), for bounds
    /// and fill values that old opsets gave as float attributes.
    pub fn add_scalar_like(&mut self, role: &str, like: usize, value: f64) -> ValueId {
        let dtype = self.input_dtype(like).unwrap_or(DType::F32);
        let t = if dtype == DType::Bool {
            Tensor::from_bools(&[], &[value != 0.0]).expect("one element for a scalar")
        } else {
            smelt_ir::dispatch_dtype!(dtype, T => Tensor::scalar(<T as smelt_ir::Element>::from_f64(value)))
        };
        self.add_constant(role, t)
    }

    /// The op with the node's inputs as they are and every output.
    pub fn lowered(&self, op: Op) -> Lowered {
        Lowered { op, inputs: self.inputs.clone(), outputs: self.n_outputs }
    }

    /// Refuses ops the model's opset does not define yet.
    fn check_since(&self) -> Result<(), OnnxError> {
        let since = SUPPORTED_OPS.iter().find(|(n, _)| *n == self.op_type).map_or(1, |(_, s)| *s);
        if self.opset < since {
            return Err(self.error(format!(
                "{} first appears in opset {since}; the model imports opset {}",
                self.op_type, self.opset
            )));
        }
        Ok(())
    }
}

/// `base`, or `base_1`, `base_2`, ... if the model already uses it, for the
/// values the importer invents.
pub(crate) fn unused_name(names: &HashMap<String, ValueId>, base: &str) -> String {
    let mut name = base.to_string();
    let mut k = 1;
    while names.contains_key(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    name
}

/// Lowers one default-domain node. `Constant` nodes are handled by the caller.
pub(crate) fn lower(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.check_since()?;
    let lowered = match cx.op_type {
        t if elementwise::is_unary(t) => elementwise::lower_unary(cx)?,
        t if elementwise::is_binary(t) => elementwise::lower_binary(cx)?,
        "Min" | "Max" | "Sum" | "Mean" => elementwise::lower_variadic(cx)?,
        "Clip" => elementwise::lower_clip(cx)?,
        "Where" => elementwise::lower_where(cx)?,
        "Cast" => elementwise::lower_cast(cx)?,
        "CastLike" => elementwise::lower_cast_like(cx)?,
        "Identity" => elementwise::lower_identity(cx)?,
        "Dropout" => elementwise::lower_dropout(cx)?,
        "Softmax" | "LogSoftmax" | "Hardmax" => elementwise::lower_softmax(cx)?,
        "MatMul" => linalg::lower_matmul(cx)?,
        "Gemm" => linalg::lower_gemm(cx)?,
        "Einsum" => linalg::lower_einsum(cx)?,
        "Conv" => conv::lower_conv(cx)?,
        "ConvTranspose" => conv::lower_conv_transpose(cx)?,
        "MaxPool" | "AveragePool" | "LpPool" => conv::lower_pool(cx)?,
        "GlobalAveragePool" | "GlobalMaxPool" => conv::lower_global_pool(cx)?,
        "BatchNormalization" => norm::lower_batch_norm(cx)?,
        "LayerNormalization" => norm::lower_layer_norm(cx)?,
        "InstanceNormalization" => norm::lower_instance_norm(cx)?,
        "GroupNormalization" => norm::lower_group_norm(cx)?,
        "LpNormalization" => norm::lower_lp_norm(cx)?,
        "Reshape" => movement::lower_reshape(cx)?,
        "Flatten" => movement::lower_flatten(cx)?,
        "Transpose" => movement::lower_transpose(cx)?,
        "Squeeze" | "Unsqueeze" => movement::lower_squeeze(cx)?,
        "Concat" => movement::lower_concat(cx)?,
        "Split" => movement::lower_split(cx)?,
        "Slice" => movement::lower_slice(cx)?,
        "Gather" | "GatherElements" | "GatherND" => movement::lower_gather(cx)?,
        "ScatterND" | "ScatterElements" | "Scatter" => movement::lower_scatter(cx)?,
        "Expand" | "Tile" => movement::lower_expand_tile(cx)?,
        "Pad" => movement::lower_pad(cx)?,
        "Shape" => movement::lower_shape(cx)?,
        "Size" => movement::lower_size(cx)?,
        "ConstantOfShape" => movement::lower_constant_of_shape(cx)?,
        "Range" => movement::lower_range(cx)?,
        "Trilu" => movement::lower_trilu(cx)?,
        "CumSum" => movement::lower_cumsum(cx)?,
        "TopK" => movement::lower_topk(cx)?,
        "OneHot" => movement::lower_one_hot(cx)?,
        "DepthToSpace" | "SpaceToDepth" => movement::lower_depth_space(cx)?,
        "Resize" => resize::lower_resize(cx)?,
        "Upsample" => resize::lower_upsample(cx)?,
        t if reduce::reduce_kind(t).is_some() => reduce::lower_reduce(cx)?,
        "ArgMax" | "ArgMin" => reduce::lower_arg(cx)?,
        other => return Err(cx.error(format!("{other} is not an operator Smelt imports"))),
    };
    cx.attrs.finish()?;
    Ok(lowered)
}

/// Best guess of each output's element type from the inputs' types, for values
/// the model declares no type for. Shape inference refines it later.
pub(crate) fn guess_output_dtypes(op: &Op, inputs: &[Option<DType>], n_outputs: usize) -> Vec<DType> {
    let input = |i: usize| inputs.get(i).copied().flatten().unwrap_or(DType::F32);
    let first = match op {
        Op::Binary(b) if b.is_comparison() => DType::Bool,
        Op::Unary(UnaryOp::Not | UnaryOp::IsNaN | UnaryOp::IsInf { .. }) => DType::Bool,
        Op::Cast { to } => *to,
        Op::CastLike => input(1),
        Op::Where => input(1),
        Op::Shape { .. } | Op::Size | Op::ArgMax { .. } | Op::ArgMin { .. } => DType::I64,
        Op::ConstantOfShape { value } => value.dtype(),
        Op::OneHot { .. } => input(2),
        _ => input(0),
    };
    (0..n_outputs)
        .map(|i| match (i, op) {
            (0, _) => first,
            (1, Op::TopK { .. } | Op::MaxPool(_)) => DType::I64,
            (1, Op::Dropout) => DType::Bool,
            // LayerNormalization's Mean and InvStdDev are kept in float32 (stash_type 1).
            (_, Op::LayerNormalization { .. }) => DType::F32,
            _ => first,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::BinaryOp;

    #[test]
    fn supported_ops_are_sorted_and_unique() {
        let names: Vec<&str> = SUPPORTED_OPS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn domains() {
        assert!(is_supported("", "Relu"));
        assert!(is_supported("ai.onnx", "Relu"));
        assert!(!is_supported("com.microsoft", "Relu"));
        assert!(!is_supported("", "If"));
    }

    #[test]
    fn dtype_guesses() {
        let f16 = Some(DType::F16);
        assert_eq!(guess_output_dtypes(&Op::Binary(BinaryOp::Less), &[f16, f16], 1), vec![DType::Bool]);
        assert_eq!(guess_output_dtypes(&Op::Shape { start: 0, end: None }, &[f16], 1), vec![DType::I64]);
        let topk = Op::TopK { axis: -1, largest: true, sorted: true };
        assert_eq!(guess_output_dtypes(&topk, &[f16, Some(DType::I64)], 2), vec![DType::F16, DType::I64]);
        assert_eq!(guess_output_dtypes(&Op::Where, &[Some(DType::Bool), f16, f16], 1), vec![DType::F16]);
    }
}

#[cfg(test)]
mod canonical_tests;
