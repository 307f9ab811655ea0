//! Codes of the unary functions in kernels/activation.wgsl (the `ACT` override),
//! shared by the unary kernel and the fused epilogues of MatMul, Gemm and Conv.

use smelt_ir::UnaryOp;

/// `(code, alpha, beta)` for a unary op the GPU computes in f32, or `None`.
pub fn code(op: &UnaryOp) -> Option<(u32, f32, f32)> {
    use UnaryOp::*;
    Some(match *op {
        Relu => (1, 0.0, 0.0),
        LeakyRelu { alpha } => (2, alpha, 0.0),
        Elu { alpha } => (3, alpha, 0.0),
        Selu { alpha, gamma } => (4, alpha, gamma),
        Celu { alpha } => (5, alpha, 0.0),
        ThresholdedRelu { alpha } => (6, alpha, 0.0),
        Gelu { tanh: false } => (7, 0.0, 0.0),
        Gelu { tanh: true } => (8, 0.0, 0.0),
        HardSigmoid { alpha, beta } => (9, alpha, beta),
        HardSwish => (10, 0.0, 0.0),
        Softplus => (11, 0.0, 0.0),
        Softsign => (12, 0.0, 0.0),
        Mish => (13, 0.0, 0.0),
        Clip { min, max } => (14, min, max),
        Sigmoid => (15, 0.0, 0.0),
        Tanh => (16, 0.0, 0.0),
        Abs => (17, 0.0, 0.0),
        Neg => (18, 0.0, 0.0),
        Sqrt => (19, 0.0, 0.0),
        Reciprocal => (20, 0.0, 0.0),
        Exp => (21, 0.0, 0.0),
        Log => (22, 0.0, 0.0),
        Erf => (23, 0.0, 0.0),
        Sign => (24, 0.0, 0.0),
        Floor => (25, 0.0, 0.0),
        Ceil => (26, 0.0, 0.0),
        Round => (27, 0.0, 0.0),
        Sin => (28, 0.0, 0.0),
        Cos => (29, 0.0, 0.0),
        Tan => (30, 0.0, 0.0),
        Asin => (31, 0.0, 0.0),
        Acos => (32, 0.0, 0.0),
        Atan => (33, 0.0, 0.0),
        Sinh => (34, 0.0, 0.0),
        Cosh => (35, 0.0, 0.0),
        Asinh => (36, 0.0, 0.0),
        Acosh => (37, 0.0, 0.0),
        Atanh => (38, 0.0, 0.0),
        Not | IsNaN | IsInf { .. } | BitwiseNot => return None,
    })
}

/// Highest code (the translation test compiles 0..=MAX_CODE).
pub const MAX_CODE: u32 = 38;

/// Override constants selecting a fused activation (none: identity).
pub fn overrides(activation: Option<&UnaryOp>) -> Option<Vec<(&'static str, f64)>> {
    let (c, alpha, beta) = match activation {
        None => (0, 0.0, 0.0),
        Some(op) => code(op)?,
    };
    Some(vec![("ACT", c as f64), ("ACT_ALPHA", alpha as f64), ("ACT_BETA", beta as f64)])
}

/// Every activation override set, for the translation test.
pub fn all_override_sets() -> Vec<Vec<(&'static str, f64)>> {
    (0..=MAX_CODE).map(|c| vec![("ACT", c as f64), ("ACT_ALPHA", 0.5), ("ACT_BETA", 1.5)]).collect()
}
