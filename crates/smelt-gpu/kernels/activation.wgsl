// Shared by every kernel family that applies an elementwise function: the unary
// ops, and the fused activation epilogue of MatMul/Gemm/Conv. Prepended to a
// kernel's source by the Rust side (WGSL has no includes). Codes are defined in
// src/ops/activation.rs; keep the two in step.

// Fused activation of this pipeline (0 = none) and its two parameters.
override ACT: u32 = 0u;
override ACT_ALPHA: f32 = 0.0;
override ACT_BETA: f32 = 0.0;

fn quiet_nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// Abramowitz and Stegun 7.1.26 refined with one more term: |error| < 1.5e-7.
fn erf_f32(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    return s * (1.0 - poly * exp(-a * a));
}

// tanh through exp overflows to NaN on some drivers for large |x|; past 10 the
// f32 result is +-1 anyway. Drivers may also compute it as (e^x - e^-x) /
// (e^x + e^-x) (Mesa does), which keeps only a few digits for tiny |x| (Mish of
// very negative inputs takes tanh of about 1e-5): below 0.01 the series is exact
// to f32 precision.
fn tanh_f32(x: f32) -> f32 {
    if (abs(x) < 0.01) {
        let x2 = x * x;
        return x * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)));
    }
    return tanh(clamp(x, -10.0, 10.0));
}

// log(1 + y) for y >= 0. `log(1.0 + y)` rounds 1 + y to 24 bits first, which
// for y near 1e-5 is off by about 1e-3 relative (softplus(-10) failed ONNX's
// Mish cases by that); and drivers only promise log() to about 2^-21 absolute
// near 1. Below 0.01 the series to y^5 is exact to f32 precision.
fn log1p_f32(y: f32) -> f32 {
    if (y < 0.01) {
        return y * (1.0 - y * (0.5 - y * (1.0 / 3.0 - y * (0.25 - y * 0.2))));
    }
    return log(1.0 + y);
}

// ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): no overflow for large x, and exact
// where e^x is tiny (as smelt-cpu computes it).
fn softplus_f32(x: f32) -> f32 {
    return max(x, 0.0) + log1p_f32(exp(-abs(x)));
}

fn unary_f32(code: u32, x: f32, alpha: f32, beta: f32) -> f32 {
    switch code {
        case 0u: { return x; }
        case 1u: { return max(x, 0.0); }
        case 2u: { return select(x, alpha * x, x < 0.0); }
        case 3u: { return select(x, alpha * (exp(x) - 1.0), x < 0.0); }
        case 4u: { return beta * select(x, alpha * (exp(x) - 1.0), x <= 0.0); }
        case 5u: { return max(0.0, x) + min(0.0, alpha * (exp(x / alpha) - 1.0)); }
        case 6u: { return select(0.0, x, x > alpha); }
        case 7u: { return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752)); }
        case 8u: { return 0.5 * x * (1.0 + tanh_f32(0.79788456080286536 * (x + 0.044715 * x * x * x))); }
        case 9u: { return clamp(alpha * x + beta, 0.0, 1.0); }
        case 10u: { return x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
        case 11u: { return softplus_f32(x); }
        case 12u: { return x / (1.0 + abs(x)); }
        case 13u: { return x * tanh_f32(softplus_f32(x)); }
        case 14u: { return min(max(x, alpha), beta); }
        case 15u: { return 1.0 / (1.0 + exp(-x)); }
        case 16u: { return tanh_f32(x); }
        case 17u: { return abs(x); }
        case 18u: { return -x; }
        case 19u: { return sqrt(x); }
        case 20u: { return 1.0 / x; }
        case 21u: { return exp(x); }
        case 22u: { return log(x); }
        case 23u: { return erf_f32(x); }
        case 24u: { return sign(x); }
        case 25u: { return floor(x); }
        case 26u: { return ceil(x); }
        case 27u: { return round(x); }
        case 28u: { return sin(x); }
        case 29u: { return cos(x); }
        case 30u: { return tan(x); }
        case 31u: { return asin(x); }
        case 32u: { return acos(x); }
        case 33u: { return atan(x); }
        case 34u: { return sinh(x); }
        case 35u: { return cosh(x); }
        case 36u: { return asinh(x); }
        case 37u: { return acosh(x); }
        case 38u: { return atanh(x); }
        default: { return x; }
    }
}

// The pipeline's fused activation.
fn activate(x: f32) -> f32 {
    return unary_f32(ACT, x, ACT_ALPHA, ACT_BETA);
}
