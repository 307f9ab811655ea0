//! The operator set. Ops are a typed enum whose attributes are parsed once, at
//! import; nothing past the importer looks at op-name strings.
//!
//! Canonical form: every op is stored in the shape of the *newest* ONNX opset that
//! Smelt supports. Where an older opset had an attribute that later became an input
//! (Squeeze/Unsqueeze axes, Slice starts/ends, Pad pads, Clip min/max, Split split,
//! Reduce axes, Upsample scales, ...), the importer turns the attribute into a
//! constant input, so kernels and passes see one form only. Semantic differences
//! between opsets that cannot be expressed that way are fields (`coerce_2d` on
//! Softmax, `per_channel` on GroupNormalization, ...).

use crate::{DType, Tensor};

/// One-input elementwise ops. Also used as the fused activation of Conv/Gemm/MatMul.
#[derive(Clone, Debug, PartialEq)]
pub enum UnaryOp {
    Abs,
    Neg,
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Erf,
    Tanh,
    Sigmoid,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu {
        alpha: f32,
    },
    ThresholdedRelu {
        alpha: f32,
    },
    /// `approximate = "tanh"` selects the tanh form; otherwise the erf form.
    Gelu {
        tanh: bool,
    },
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Softplus,
    Softsign,
    Mish,
    /// `min(max(x, min), max)` with constant bounds; only produced by fusion
    /// (the graph-level op is [`Op::Clip`], whose bounds are inputs).
    Clip {
        min: f32,
        max: f32,
    },
    Not,
    IsNaN,
    IsInf {
        detect_positive: bool,
        detect_negative: bool,
    },
    Sign,
    Floor,
    Ceil,
    /// Round half to even.
    Round,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    BitwiseNot,
}

/// Two-input elementwise ops with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// `fmod = 1`: C `fmod` (sign of the dividend); otherwise Python `%` (sign of the divisor).
    Mod {
        fmod: bool,
    },
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
    BitShiftLeft,
    BitShiftRight,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    /// `x < 0 ? slope * x : x`, slope broadcast to x.
    PRelu,
}

impl BinaryOp {
    /// Whether the output is `bool` regardless of the input type.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
        )
    }
}

/// N-input elementwise ops with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VariadicOp {
    Min,
    Max,
    Sum,
    Mean,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// How [`Op::Attention`] masks its scores before the softmax.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttentionMask {
    /// No mask input.
    None,
    /// A float mask added to the scores (BERT's `(1 - mask) · min`).
    Add,
    /// A bool mask: where true the score is kept, elsewhere it becomes `fill`
    /// (GPT-2's causal `Where(mask, scores, min)`).
    Select { fill: f32 },
}

/// How [`Op::Attention`]'s operands and output are laid out in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionLayout {
    /// Each head's matrix is contiguous: q `[.., S, D]`, k `[.., L, D]` (or
    /// `[.., D, L]`), v `[.., L, Dv]`, output `[.., S, Dv]`, batch dims leading.
    #[default]
    HeadMajor,
    /// Rank 4 with the heads inside each position, as a projection followed by
    /// a Reshape leaves them: q `[B, S, H, D]`, k `[B, L, H, D]`, v `[B, L, H, Dv]`,
    /// output `[B, S, H, Dv]`. The problem is the head-major one on those
    /// tensors with axes 1 and 2 exchanged (the `Transpose(perm = [0, 2, 1, 3])`
    /// exporters put around attention); the mask broadcasts to `[B, H, S, L]`.
    TokenMajor,
}

/// Attributes of [`Op::Attention`].
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionAttrs {
    /// Multiplies `q·kᵀ` before the mask.
    pub scale: f32,
    /// The key input is given transposed, `[.., D, L]`, as exporters leave it
    /// after their `Transpose(perm = [0, 2, 3, 1])`. Head-major only.
    pub keys_transposed: bool,
    pub mask: AttentionMask,
    pub layout: AttentionLayout,
}

/// Attributes shared by Conv and ConvTranspose. Empty `strides`/`dilations` mean all
/// ones; empty `pads` means all zeros (`[begin_0, begin_1, .., end_0, end_1, ..]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    /// Spatial kernel size; `None` means "take it from the weight's shape".
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub group: usize,
    pub auto_pad: AutoPad,
    /// Activation applied to the output, set by fusion passes (never by the importer).
    pub activation: Option<UnaryOp>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConvTransposeAttrs {
    pub conv: ConvAttrs,
    pub output_padding: Vec<usize>,
    /// Explicit output spatial shape; when set, pads are computed from it.
    pub output_shape: Option<Vec<usize>>,
}

/// MaxPool / AveragePool attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    pub kernel_shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
    /// AveragePool only: whether padded cells count in the divisor.
    pub count_include_pad: bool,
    /// MaxPool only: 0 = row major indices, 1 = column major.
    pub storage_order: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScatterReduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordinateTransform {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeepAspectRatioPolicy {
    Stretch,
    NotLarger,
    NotSmaller,
}

/// Resize (and the old Upsample, imported as Resize). Inputs: `X, roi?, scales?, sizes?`.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeAttrs {
    pub mode: ResizeMode,
    pub coordinate_transform: CoordinateTransform,
    pub nearest_mode: NearestMode,
    pub cubic_coeff_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
    pub antialias: bool,
    /// Axes that `roi`, `scales` and `sizes` refer to; `None` = all axes.
    pub axes: Option<Vec<i64>>,
    pub keep_aspect_ratio_policy: KeepAspectRatioPolicy,
}

/// An operator with its attributes. Inputs are positional as in ONNX (after the
/// canonicalisation described in the module doc); optional inputs may be absent.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    // ── elementwise ────────────────────────────────────────────────────────
    Unary(UnaryOp),
    Binary(BinaryOp),
    Variadic(VariadicOp),
    /// Inputs: `x, min?, max?` (scalars).
    Clip,
    /// Inputs: `condition, x, y`.
    Where,
    /// `saturate` only matters for float8 targets, which Smelt does not have; kept for fidelity.
    Cast {
        to: DType,
    },
    /// Inputs: `x, target`; casts x to target's dtype.
    CastLike,
    Identity,
    /// Inference-mode Dropout: output 0 is the input, optional output 1 (mask) is all true.
    Dropout,

    // ── softmax family ────────────────────────────────────────────────────
    /// `coerce_2d` is opset < 13 semantics: flatten to [prod(dims[..axis]), prod(dims[axis..])].
    Softmax {
        axis: i64,
        coerce_2d: bool,
    },
    LogSoftmax {
        axis: i64,
        coerce_2d: bool,
    },
    Hardmax {
        axis: i64,
        coerce_2d: bool,
    },

    // ── matrix products and convolution ───────────────────────────────────
    /// numpy matmul. Optional input 2 is a bias added along the last axis and
    /// `activation` is applied last; both are set by fusion only.
    MatMul {
        activation: Option<UnaryOp>,
    },
    /// Inputs: `A, B, C?`. `activation` is set by fusion only.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
        activation: Option<UnaryOp>,
    },
    /// Inputs: `X, W, B?, Z?`. `Z`, of the output's shape, is added before the
    /// activation (a residual connection); like `activation`, set by fusion only.
    Conv(ConvAttrs),
    /// Inputs: `X, W, B?`.
    ConvTranspose(ConvTransposeAttrs),
    /// Inputs: the N operands the equation names.
    Einsum {
        equation: String,
    },

    /// Scaled dot-product attention over the last two axes,
    /// `softmax(scale · q·kᵀ ⊕ mask) · v`, made only by fusion
    /// (`smelt_passes::fuse_attention`) for backends with a fused kernel.
    /// Inputs: `q [.., S, D], k [.., L, D] (or kᵀ [.., D, L]), v [.., L, Dv], mask?`;
    /// leading dims broadcast as in MatMul, the mask broadcasts to the scores
    /// `[.., S, L]`. Output: `[.., S, Dv]`.
    Attention(AttentionAttrs),

    // ── pooling and normalisation ─────────────────────────────────────────
    /// Outputs: `Y, Indices?`.
    MaxPool(PoolAttrs),
    AveragePool(PoolAttrs),
    /// `p` = 1 or 2.
    LpPool {
        attrs: PoolAttrs,
        p: i64,
    },
    GlobalAveragePool,
    GlobalMaxPool,
    /// Inference mode. Inputs: `X, scale, B, mean, var`.
    BatchNormalization {
        epsilon: f32,
    },
    /// Inputs: `X, Scale, B?`. Outputs: `Y, Mean?, InvStdDev?`.
    LayerNormalization {
        axis: i64,
        epsilon: f32,
    },
    /// Inputs: `X, scale, B`.
    InstanceNormalization {
        epsilon: f32,
    },
    /// Inputs: `X, scale, bias`. `per_channel`: opset 21 semantics (scale/bias of
    /// length C); opset 18 has them per group.
    GroupNormalization {
        epsilon: f32,
        num_groups: usize,
        per_channel: bool,
    },
    LpNormalization {
        axis: i64,
        p: i64,
    },

    // ── shape and data movement ───────────────────────────────────────────
    /// Inputs: `data, shape`.
    Reshape {
        allowzero: bool,
    },
    Flatten {
        axis: i64,
    },
    /// `None` reverses the axes.
    Transpose {
        perm: Option<Vec<usize>>,
    },
    /// Inputs: `data, axes?`.
    Squeeze,
    /// Inputs: `data, axes`.
    Unsqueeze,
    Concat {
        axis: i64,
    },
    /// Inputs: `input, split?`. `num_outputs` (opset 18) splits into equal parts, the
    /// last one smaller; without either, the node's output count splits equally.
    Split {
        axis: i64,
        num_outputs: Option<usize>,
    },
    /// Inputs: `data, starts, ends, axes?, steps?`.
    Slice,
    /// Inputs: `data, indices`.
    Gather {
        axis: i64,
    },
    GatherElements {
        axis: i64,
    },
    GatherND {
        batch_dims: usize,
    },
    /// Inputs: `data, indices, updates`.
    ScatterND {
        reduction: ScatterReduction,
    },
    ScatterElements {
        axis: i64,
        reduction: ScatterReduction,
    },
    /// Inputs: `input, shape`.
    Expand,
    /// Inputs: `input, repeats`.
    Tile,
    /// Inputs: `data, pads, constant_value?, axes?`.
    Pad {
        mode: PadMode,
    },
    Shape {
        start: i64,
        end: Option<i64>,
    },
    Size,
    /// Input: `shape`. `value` is a one-element tensor (f32 0.0 by default).
    ConstantOfShape {
        value: Tensor,
    },
    /// Inputs: `start, limit, delta` (scalars).
    Range,
    /// Inputs: `input, k?`.
    Trilu {
        upper: bool,
    },
    /// Inputs: `x, axis`.
    CumSum {
        exclusive: bool,
        reverse: bool,
    },
    /// Inputs: `X, K`. Outputs: `Values, Indices`.
    TopK {
        axis: i64,
        largest: bool,
        sorted: bool,
    },
    /// Inputs: `indices, depth, values`.
    OneHot {
        axis: i64,
    },
    DepthToSpace {
        blocksize: usize,
        column_row: bool,
    },
    SpaceToDepth {
        blocksize: usize,
    },
    Resize(ResizeAttrs),

    // ── reductions ────────────────────────────────────────────────────────
    /// Inputs: `data, axes?`. Empty or absent axes reduce everything unless
    /// `noop_with_empty_axes`.
    Reduce {
        kind: ReduceKind,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    ArgMax {
        axis: i64,
        keepdims: bool,
        select_last_index: bool,
    },
    ArgMin {
        axis: i64,
        keepdims: bool,
        select_last_index: bool,
    },
}

impl Op {
    /// The ONNX op type this op came from (or stands for, for fused forms), for
    /// reports and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Variadic(v) => match v {
                VariadicOp::Min => "Min",
                VariadicOp::Max => "Max",
                VariadicOp::Sum => "Sum",
                VariadicOp::Mean => "Mean",
            },
            Op::Clip => "Clip",
            Op::Where => "Where",
            Op::Cast { .. } => "Cast",
            Op::CastLike => "CastLike",
            Op::Identity => "Identity",
            Op::Dropout => "Dropout",
            Op::Softmax { .. } => "Softmax",
            Op::LogSoftmax { .. } => "LogSoftmax",
            Op::Hardmax { .. } => "Hardmax",
            Op::MatMul { .. } => "MatMul",
            Op::Gemm { .. } => "Gemm",
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::Einsum { .. } => "Einsum",
            Op::Attention(_) => "Attention",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::LpPool { .. } => "LpPool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::LayerNormalization { .. } => "LayerNormalization",
            Op::InstanceNormalization { .. } => "InstanceNormalization",
            Op::GroupNormalization { .. } => "GroupNormalization",
            Op::LpNormalization { .. } => "LpNormalization",
            Op::Reshape { .. } => "Reshape",
            Op::Flatten { .. } => "Flatten",
            Op::Transpose { .. } => "Transpose",
            Op::Squeeze => "Squeeze",
            Op::Unsqueeze => "Unsqueeze",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Slice => "Slice",
            Op::Gather { .. } => "Gather",
            Op::GatherElements { .. } => "GatherElements",
            Op::GatherND { .. } => "GatherND",
            Op::ScatterND { .. } => "ScatterND",
            Op::ScatterElements { .. } => "ScatterElements",
            Op::Expand => "Expand",
            Op::Tile => "Tile",
            Op::Pad { .. } => "Pad",
            Op::Shape { .. } => "Shape",
            Op::Size => "Size",
            Op::ConstantOfShape { .. } => "ConstantOfShape",
            Op::Range => "Range",
            Op::Trilu { .. } => "Trilu",
            Op::CumSum { .. } => "CumSum",
            Op::TopK { .. } => "TopK",
            Op::OneHot { .. } => "OneHot",
            Op::DepthToSpace { .. } => "DepthToSpace",
            Op::SpaceToDepth { .. } => "SpaceToDepth",
            Op::Resize(_) => "Resize",
            Op::Reduce { kind, .. } => match kind {
                ReduceKind::Sum => "ReduceSum",
                ReduceKind::Mean => "ReduceMean",
                ReduceKind::Max => "ReduceMax",
                ReduceKind::Min => "ReduceMin",
                ReduceKind::Prod => "ReduceProd",
                ReduceKind::L1 => "ReduceL1",
                ReduceKind::L2 => "ReduceL2",
                ReduceKind::LogSum => "ReduceLogSum",
                ReduceKind::LogSumExp => "ReduceLogSumExp",
                ReduceKind::SumSquare => "ReduceSumSquare",
            },
            Op::ArgMax { .. } => "ArgMax",
            Op::ArgMin { .. } => "ArgMin",
        }
    }

    /// Input positions whose *values* (not just shapes) decide output shapes, e.g.
    /// Reshape's `shape`. Shape inference needs them constant to give fixed dims, and
    /// the executor reads them on the host.
    pub fn shape_inputs(&self) -> &'static [usize] {
        match self {
            Op::Reshape { .. } | Op::Expand | Op::Tile | Op::Squeeze | Op::Unsqueeze => &[1],
            Op::Split { .. } | Op::Trilu { .. } | Op::TopK { .. } => &[1],
            Op::Slice => &[1, 2, 3, 4],
            Op::Pad { .. } => &[1, 3],
            Op::ConstantOfShape { .. } => &[0],
            Op::Range => &[0, 1, 2],
            Op::OneHot { .. } => &[1],
            Op::Resize(_) => &[1, 2, 3],
            Op::Reduce { .. } => &[1],
            Op::CumSum { .. } => &[1],
            _ => &[],
        }
    }

    /// Fused activation, for display.
    pub fn activation(&self) -> Option<&UnaryOp> {
        match self {
            Op::MatMul { activation } | Op::Gemm { activation, .. } => activation.as_ref(),
            Op::Conv(c) => c.activation.as_ref(),
            _ => None,
        }
    }
}

impl UnaryOp {
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Abs => "Abs",
            UnaryOp::Neg => "Neg",
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Reciprocal => "Reciprocal",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Erf => "Erf",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Relu => "Relu",
            UnaryOp::LeakyRelu { .. } => "LeakyRelu",
            UnaryOp::Elu { .. } => "Elu",
            UnaryOp::Selu { .. } => "Selu",
            UnaryOp::Celu { .. } => "Celu",
            UnaryOp::ThresholdedRelu { .. } => "ThresholdedRelu",
            UnaryOp::Gelu { .. } => "Gelu",
            UnaryOp::HardSigmoid { .. } => "HardSigmoid",
            UnaryOp::HardSwish => "HardSwish",
            UnaryOp::Softplus => "Softplus",
            UnaryOp::Softsign => "Softsign",
            UnaryOp::Mish => "Mish",
            UnaryOp::Clip { .. } => "Clip",
            UnaryOp::Not => "Not",
            UnaryOp::IsNaN => "IsNaN",
            UnaryOp::IsInf { .. } => "IsInf",
            UnaryOp::Sign => "Sign",
            UnaryOp::Floor => "Floor",
            UnaryOp::Ceil => "Ceil",
            UnaryOp::Round => "Round",
            UnaryOp::Sin => "Sin",
            UnaryOp::Cos => "Cos",
            UnaryOp::Tan => "Tan",
            UnaryOp::Asin => "Asin",
            UnaryOp::Acos => "Acos",
            UnaryOp::Atan => "Atan",
            UnaryOp::Sinh => "Sinh",
            UnaryOp::Cosh => "Cosh",
            UnaryOp::Asinh => "Asinh",
            UnaryOp::Acosh => "Acosh",
            UnaryOp::Atanh => "Atanh",
            UnaryOp::BitwiseNot => "BitwiseNot",
        }
    }
}

impl BinaryOp {
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
            BinaryOp::Mod { .. } => "Mod",
            BinaryOp::Equal => "Equal",
            BinaryOp::Less => "Less",
            BinaryOp::LessOrEqual => "LessOrEqual",
            BinaryOp::Greater => "Greater",
            BinaryOp::GreaterOrEqual => "GreaterOrEqual",
            BinaryOp::And => "And",
            BinaryOp::Or => "Or",
            BinaryOp::Xor => "Xor",
            BinaryOp::BitShiftLeft | BinaryOp::BitShiftRight => "BitShift",
            BinaryOp::BitwiseAnd => "BitwiseAnd",
            BinaryOp::BitwiseOr => "BitwiseOr",
            BinaryOp::BitwiseXor => "BitwiseXor",
            BinaryOp::PRelu => "PRelu",
        }
    }
}
