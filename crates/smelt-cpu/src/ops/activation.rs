//! Every [`UnaryOp`] as a function on floats: one value at a time ([`apply_f32`],
//! [`apply_f64`]) and over slices ([`apply_slice_f32`], [`map_slice_f32`]).
//!
//! The slice forms are what the elementwise kernels and the fused epilogues of
//! Conv/Gemm/MatMul call. Each op's body is a branch-free (select-based) closure that
//! is monomorphised into its own loop, so the compiler can vectorise it. libm's `expf`,
//! `tanhf` and `erff` are opaque calls that do not vectorise, so the hot transcendental
//! functions (exp, tanh, erf, sigmoid) have polynomial f32 forms here, accurate to a
//! few ulp; f64 uses the standard library (and a series for erf, which std lacks).
//!
//! Ops whose result is not a float of the same meaning give it as a float: `Not`,
//! `IsNaN` and `IsInf` give 0.0 or 1.0, `BitwiseNot` complements the value truncated
//! to an i64. Elementwise kernels run those on their own integer/bool paths instead.

// The constants' literals carry f64 precision on purpose: `with_unary!` expands
// each body for f64 as well as f32, and the f32-only polynomials keep their
// coefficients as derived.
#![allow(clippy::excessive_precision)]

use smelt_ir::UnaryOp;

/// Runs `$body` with `$f` bound to a closure `Fn($t) -> $t` computing `$op`.
/// `$m` names the module with the type's `exp`, `tanh`, `erf` and `sigmoid`.
macro_rules! with_unary {
    ($t:ty, $m:ident, $op:expr, $f:ident => $body:expr) => {{
        const ZERO: $t = 0.0;
        const ONE: $t = 1.0;
        match *$op {
            UnaryOp::Abs => {
                let $f = |x: $t| x.abs();
                $body
            }
            UnaryOp::Neg => {
                let $f = |x: $t| -x;
                $body
            }
            UnaryOp::Sqrt => {
                let $f = |x: $t| x.sqrt();
                $body
            }
            UnaryOp::Reciprocal => {
                let $f = |x: $t| ONE / x;
                $body
            }
            UnaryOp::Exp => {
                let $f = |x: $t| $m::exp(x);
                $body
            }
            UnaryOp::Log => {
                let $f = |x: $t| x.ln();
                $body
            }
            UnaryOp::Erf => {
                let $f = |x: $t| $m::erf(x);
                $body
            }
            UnaryOp::Tanh => {
                let $f = |x: $t| $m::tanh(x);
                $body
            }
            UnaryOp::Sigmoid => {
                let $f = |x: $t| $m::sigmoid(x);
                $body
            }
            // `x < 0` rather than `max(x, 0)`: NaN must come through, as onnxruntime does.
            UnaryOp::Relu => {
                let $f = |x: $t| if x < ZERO { ZERO } else { x };
                $body
            }
            UnaryOp::LeakyRelu { alpha } => {
                let alpha = alpha as $t;
                let $f = move |x: $t| if x < ZERO { alpha * x } else { x };
                $body
            }
            UnaryOp::Elu { alpha } => {
                let alpha = alpha as $t;
                let $f = move |x: $t| if x < ZERO { alpha * ($m::exp(x) - ONE) } else { x };
                $body
            }
            UnaryOp::Selu { alpha, gamma } => {
                let (alpha, gamma) = (alpha as $t, gamma as $t);
                let $f = move |x: $t| {
                    if x > ZERO {
                        gamma * x
                    } else {
                        gamma * (alpha * $m::exp(x) - alpha)
                    }
                };
                $body
            }
            // max(0, x) + min(0, alpha * (exp(x / alpha) - 1)): for x > 0 the second term is 0.
            UnaryOp::Celu { alpha } => {
                let alpha = alpha as $t;
                let $f = move |x: $t| if x > ZERO { x } else { alpha * ($m::exp(x / alpha) - ONE) };
                $body
            }
            UnaryOp::ThresholdedRelu { alpha } => {
                let alpha = alpha as $t;
                let $f = move |x: $t| if x > alpha { x } else { ZERO };
                $body
            }
            UnaryOp::Gelu { tanh: false } => {
                let $f = |x: $t| $m::gelu_erf(x);
                $body
            }
            UnaryOp::Gelu { tanh: true } => {
                let $f = |x: $t| {
                    const SQRT_2_OVER_PI: $t = 0.797_884_560_802_865_355_9;
                    0.5 * x * (ONE + $m::tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
                };
                $body
            }
            UnaryOp::HardSigmoid { alpha, beta } => {
                let (alpha, beta) = (alpha as $t, beta as $t);
                let $f = move |x: $t| clamp01(alpha * x + beta);
                $body
            }
            UnaryOp::HardSwish => {
                let $f = |x: $t| x * clamp01(x * (ONE / 6.0) + 0.5);
                $body
            }
            UnaryOp::Softplus => {
                let $f = |x: $t| softplus(x);
                $body
            }
            UnaryOp::Softsign => {
                let $f = |x: $t| x / (ONE + x.abs());
                $body
            }
            UnaryOp::Mish => {
                let $f = |x: $t| x * $m::tanh(softplus(x));
                $body
            }
            // Two steps so that min > max gives max (the ONNX rule) and NaN comes through.
            UnaryOp::Clip { min, max } => {
                let (lo, hi) = (min as $t, max as $t);
                let $f = move |x: $t| {
                    let y = if x < lo { lo } else { x };
                    if y > hi {
                        hi
                    } else {
                        y
                    }
                };
                $body
            }
            UnaryOp::Not => {
                let $f = |x: $t| if x == ZERO { ONE } else { ZERO };
                $body
            }
            UnaryOp::IsNaN => {
                let $f = |x: $t| if x.is_nan() { ONE } else { ZERO };
                $body
            }
            UnaryOp::IsInf { detect_positive, detect_negative } => {
                let $f = move |x: $t| {
                    let hit = (detect_positive && x == <$t>::INFINITY) || (detect_negative && x == <$t>::NEG_INFINITY);
                    if hit {
                        ONE
                    } else {
                        ZERO
                    }
                };
                $body
            }
            // ±0 give +0 and NaN stays NaN, as onnxruntime's Sign does.
            UnaryOp::Sign => {
                let $f = |x: $t| {
                    if x > ZERO {
                        ONE
                    } else if x < ZERO {
                        -ONE
                    } else if x == ZERO {
                        ZERO
                    } else {
                        x
                    }
                };
                $body
            }
            UnaryOp::Floor => {
                let $f = |x: $t| x.floor();
                $body
            }
            UnaryOp::Ceil => {
                let $f = |x: $t| x.ceil();
                $body
            }
            UnaryOp::Round => {
                let $f = |x: $t| x.round_ties_even();
                $body
            }
            UnaryOp::Sin => {
                let $f = |x: $t| x.sin();
                $body
            }
            UnaryOp::Cos => {
                let $f = |x: $t| x.cos();
                $body
            }
            UnaryOp::Tan => {
                let $f = |x: $t| x.tan();
                $body
            }
            UnaryOp::Asin => {
                let $f = |x: $t| x.asin();
                $body
            }
            UnaryOp::Acos => {
                let $f = |x: $t| x.acos();
                $body
            }
            UnaryOp::Atan => {
                let $f = |x: $t| x.atan();
                $body
            }
            UnaryOp::Sinh => {
                let $f = |x: $t| x.sinh();
                $body
            }
            UnaryOp::Cosh => {
                let $f = |x: $t| x.cosh();
                $body
            }
            UnaryOp::Asinh => {
                let $f = |x: $t| x.asinh();
                $body
            }
            UnaryOp::Acosh => {
                let $f = |x: $t| x.acosh();
                $body
            }
            UnaryOp::Atanh => {
                let $f = |x: $t| x.atanh();
                $body
            }
            UnaryOp::BitwiseNot => {
                let $f = |x: $t| !(x as i64) as $t;
                $body
            }
        }
    }};
}

/// Clamps to [0, 1], letting NaN through.
#[inline(always)]
fn clamp01<T: num_traits::Float>(v: T) -> T {
    if v < T::zero() {
        T::zero()
    } else if v > T::one() {
        T::one()
    } else {
        v
    }
}

/// `ln(1 + e^x)` without overflow for large x nor underflow to 0 for very negative x.
#[inline(always)]
fn softplus<T: num_traits::Float>(x: T) -> T {
    if x > T::zero() {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `op` applied to one f32.
pub fn apply_f32(op: &UnaryOp, x: f32) -> f32 {
    with_unary!(f32, fast32, op, f => f(x))
}

/// The bounds `[min, max]` of an activation that is a clamp (Relu, Clip), which
/// kernels fold into how they store their results; `None` for any other.
pub fn clamp_bounds(op: &UnaryOp) -> Option<(f32, f32)> {
    match *op {
        UnaryOp::Relu => Some((0.0, f32::INFINITY)),
        UnaryOp::Clip { min, max } => Some((min, max)),
        _ => None,
    }
}

/// `op` applied to one f64.
pub fn apply_f64(op: &UnaryOp, x: f64) -> f64 {
    with_unary!(f64, precise64, op, f => f(x))
}

/// `op` applied in place to every element. Where the CPU has AVX-512 (and FMA)
/// the transcendental ops fuse their multiply-adds, so their results may differ
/// from [`apply_f32`]'s in the last bits.
pub fn apply_slice_f32(op: &UnaryOp, xs: &mut [f32]) {
    super::wide::run_either(
        xs,
        |xs| {
            with_unary!(f32, fused32, op, f => {
                for x in xs.iter_mut() {
                    *x = f(*x);
                }
            })
        },
        |xs| {
            with_unary!(f32, fast32, op, f => {
                for x in xs.iter_mut() {
                    *x = f(*x);
                }
            })
        },
    )
}

/// `xs[i] = op(xs[i] + scalar + vector[i])` in one pass, each addend only where
/// given (`vector` as long as `xs`) and added in that order, `op` only where
/// given: a GEMM or Conv epilogue (bias, residual, activation) reads and writes
/// its output once instead of once per step. Rounding as [`apply_slice_f32`].
pub fn add_then_apply_f32(xs: &mut [f32], scalar: Option<f32>, vector: Option<&[f32]>, op: Option<&UnaryOp>) {
    if let Some(v) = vector {
        assert_eq!(v.len(), xs.len(), "addend and values differ in length");
    }
    // One loop per combination of addends, so none of them tests per element,
    // each in a closure of its own: one closure holding all four is too large
    // for LLVM to inline into the AVX-512 function, and its `mul_add`s then
    // become libm calls. For the same reason the loops are `for` loops, not
    // `for_each` (whose `fold` is not inlined either).
    macro_rules! each {
        ($x:ident => $e:expr) => {
            each!(@run xs, f, for $x in xs.iter_mut() { *$x = f($e) })
        };
        ($v:expr, $x:ident, $r:ident => $e:expr) => {
            each!(@run xs, f, for ($x, &$r) in xs.iter_mut().zip($v) { *$x = f($e) })
        };
        (@run $xs:ident, $f:ident, $body:expr) => {
            match op {
                None => super::wide::run(|| {
                    let $f = |x: f32| x;
                    let $xs = xs;
                    $body
                }),
                Some(op) => super::wide::run_either(
                    xs,
                    |$xs| with_unary!(f32, fused32, op, $f => $body),
                    |$xs| with_unary!(f32, fast32, op, $f => $body),
                ),
            }
        };
    }
    match (scalar, vector) {
        (Some(b), Some(v)) => each!(v, x, r => *x + b + r),
        (Some(b), None) => each!(x => *x + b),
        (None, Some(v)) => each!(v, x, r => *x + r),
        (None, None) => each!(x => *x),
    }
}

/// `dst[i] = op(src[i])`. The slices must have the same length; extra elements of the
/// longer one are left alone. Rounding as [`apply_slice_f32`].
pub fn map_slice_f32(op: &UnaryOp, src: &[f32], dst: &mut [f32]) {
    super::wide::run_either(
        dst,
        |dst| {
            with_unary!(f32, fused32, op, f => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f(s);
                }
            })
        },
        |dst| {
            with_unary!(f32, fast32, op, f => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f(s);
                }
            })
        },
    )
}

/// `dst[i] = op(src[i])` on f64, with the same length rule as [`map_slice_f32`].
pub fn map_slice_f64(op: &UnaryOp, src: &[f64], dst: &mut [f64]) {
    with_unary!(f64, precise64, op, f => {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f(s);
        }
    })
}

/// e^x in f32, within 2 ulp (subnormal results included), vectorisable.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    exp_f32_with::<false>(x)
}

/// `a·b + c`, rounded once when `FUSED` (where the code runs with FMA: the
/// compiler never fuses on its own, and without the instruction `mul_add` is a
/// library call), twice otherwise.
#[inline(always)]
fn mul_add<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// [`exp_f32`] with its multiply-adds fused or not.
#[inline(always)]
fn exp_f32_with<const FUSED: bool>(x: f32) -> f32 {
    /// The polynomial's coefficients, constant term first.
    #[allow(clippy::excessive_precision)]
    const EXP_POLY: [f32; 7] = [
        1.000_000_000_6,
        1.000_000_036_3,
        0.499_999_920_8,
        0.166_664_202_6,
        0.041_668_226_17,
        0.008_374_809_251,
        0.001_383_679_239,
    ];
    // Cody–Waite: x = n ln2 + r with |r| <= ln2/2, e^x = 2^n e^r. LN2_HI has few
    // mantissa bits so n * LN2_HI is exact for every n reached here.
    const LN2_HI: f32 = 0.693_359_375;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer and leaves it in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    // Past 88.76 the result is +inf; below -104 it rounds to 0. NaN passes the clamp.
    let x = x.clamp(-104.0, 88.76);
    let t = mul_add::<FUSED>(x, std::f32::consts::LOG2_E, SHIFTER);
    let n_int = t.to_bits() as i32 - SHIFTER.to_bits() as i32;
    let n = t - SHIFTER;
    let r = mul_add::<FUSED>(-n, LN2_LO, mul_add::<FUSED>(-n, LN2_HI, x));
    // Minimax polynomial for e^r on [-ln2/2, ln2/2], relative error 2e-9,
    // evaluated by Estrin's scheme: 3 multiply-adds deep instead of 6.
    let (r2, c) = (r * r, EXP_POLY);
    let fma = mul_add::<FUSED>;
    let p = fma(fma(c[3], r, c[2]), r2, fma(c[1], r, c[0]));
    let p = fma(fma(c[6], r2, fma(c[5], r, c[4])), r2 * r2, p);
    // 2^n as two factors so that n down to -150 (subnormal results) and up to 128
    // (overflow to inf) need no special case.
    let n1 = n_int >> 1;
    let n2 = n_int - n1;
    let scale1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let scale2 = f32::from_bits(((n2 + 127) as u32) << 23);
    p * scale1 * scale2
}

/// tanh in f32, relative error about 2e-7, vectorisable.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let ax = x.abs();
    // Near 0, (1 - e)/(1 + e) would cancel: use an odd minimax polynomial there.
    let x2 = x * x;
    let small = x
        * (0.999_999_996_1
            + x2 * (-0.333_332_607_6
                + x2 * (0.133_311_312_3
                    + x2 * (-0.053_721_299_54 + x2 * (0.020_591_614_24 + x2 * -0.005_660_597_917)))));
    let e = exp_f32(-2.0 * ax);
    let large = ((1.0 - e) / (1.0 + e)).copysign(x);
    if ax < 0.625 {
        small
    } else {
        large
    }
}

/// The logistic function 1 / (1 + e^-x) in f32, vectorisable.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// erf in f32, relative error about 2e-7, vectorisable.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    const SPLIT: f32 = 0.921_875;
    let ax = x.abs();
    // |x| < SPLIT: erf(x) = x P(x^2), minimax, relative error 4e-10.
    let x2 = x * x;
    let small = x
        * (1.128_379_166_6
            + x2 * (-0.376_126_337_5
                + x2 * (0.112_836_956_8
                    + x2 * (-0.026_859_406_39
                        + x2 * (0.005_201_049_038 + x2 * (-8.142_868_392e-4 + x2 * 8.370_714_638e-5))))));
    // Otherwise erf(x) = 1 - erfc(x) with ln(erfc(x)) = Q(|x|), a polynomial fitted on
    // [SPLIT, 4] (absolute error 1e-8); past 4, erf rounds to 1 in f32. The comparison
    // keeps NaN as NaN.
    let z = if ax > 4.0 { 4.0 } else { ax };
    let q = 3.349_138_342e-4
        + z * (-1.130_315_425
            + z * (-0.631_637_844_4
                + z * (-0.110_317_216_3
                    + z * (0.026_603_252_28
                        + z * (-0.004_848_537_354
                            + z * (6.245_659_993e-4
                                + z * (-5.142_086_305e-5 + z * (2.221_188_988e-6 + z * -2.740_957_103e-8))))))));
    let large = (1.0 - exp_f32(q)).copysign(x);
    if ax < SPLIT {
        small
    } else {
        large
    }
}

/// erf in f64 to about 1e-15, from the series
/// `erf(x) = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1 * 3 * ... * (2n+1))`,
/// whose terms are all positive (no cancellation). Past |x| = 6, erf is ±1 in f64.
pub fn erf_f64(x: f64) -> f64 {
    let ax = x.abs();
    if ax.is_nan() {
        return x;
    }
    if ax >= 6.0 {
        return 1f64.copysign(x);
    }
    let x2 = ax * ax;
    let mut term = ax;
    let mut sum = ax;
    let mut n = 0.0;
    // Terms rise until n ~ x^2 (at most 36 here), then fall geometrically.
    while term > sum * 1e-17 {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
    }
    (std::f64::consts::FRAC_2_SQRT_PI * (-x2).exp() * sum).copysign(x)
}

/// GELU's exact form `x·Φ(x)` in f32, relative error below 5e-7 for |x| < 2,
/// 2e-6 for |x| < 6 and 1e-5 out to where it underflows; vectorisable.
///
/// `0.5·x·(1 + erf(x/√2))` loses the relative accuracy of negative inputs to
/// the cancellation in `1 + erf` (1% at x = -4) and evaluates both of erf's
/// branches and an exp. Instead `Φ(x) = erfc(-x/√2)/2` with one formula for
/// `erfc(a)`, a = |x|/√2: `t·e^(S(u) - a²)` with `t = 1/(1 + a/2)` and
/// `u = 2.4t - 1.4`, which maps a in [0, 10] onto [-1, 1]. S is a degree-9
/// polynomial fitted to `ln(erfc(a)/t) + a²` there (Lawson-weighted least
/// squares on Chebyshev nodes, relative error 4.5e-8 in f64); in f32 the
/// error is mostly `a²`'s rounding, which `x²/2` keeps to one. Past a = 10
/// erfc is below f32's range and the exp flushes it to 0.
#[inline(always)]
pub fn gelu_erf_f32(x: f32) -> f32 {
    gelu_erf_f32_with::<false>(x)
}

/// [`gelu_erf_f32`] with its multiply-adds fused or not. Fused, `x²/2` is not
/// rounded at all before the exp, which removes most of the error far out.
#[inline(always)]
fn gelu_erf_f32_with<const FUSED: bool>(x: f32) -> f32 {
    /// S's coefficients, constant term first.
    const GELU_ERFC_S: [f32; 10] = [
        -0.558_595_4,
        0.570_307_1,
        0.015_747_218,
        -0.029_469_885,
        -0.001_062_959_5,
        0.003_705_797_5,
        -2.266_873e-4,
        -5.320_298e-4,
        7.309_244e-5,
        5.382_467e-5,
    ];
    let fma = mul_add::<FUSED>;
    let a = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / fma(0.5, a, 1.0);
    let u = fma(t, 2.4, -1.4);
    // Estrin's scheme: the terms pair up independently, so the dependency chain
    // is 4 multiply-adds deep instead of Horner's 9.
    let (u2, c) = (u * u, GELU_ERFC_S);
    let u4 = u2 * u2;
    let low = fma(fma(c[3], u, c[2]), u2, fma(c[1], u, c[0]));
    let high = fma(fma(c[7], u, c[6]), u2, fma(c[5], u, c[4]));
    let s = fma(fma(c[9], u, c[8]), u4 * u4, fma(high, u4, low));
    // Half of erfc(a): Φ(x) for negative x, 1 - Φ(x) for positive.
    let h = 0.5 * t * exp_f32_with::<FUSED>(fma(-0.5 * x, x, s));
    x * if x < 0.0 { h } else { 1.0 - h }
}

/// The f32 functions on CPUs with FMA, where the slice forms run them: the
/// same polynomials with their multiply-adds fused (fewer instructions, shorter
/// dependency chains, and at most as much rounding).
mod fused32 {
    pub use super::erf_f32 as erf;
    pub use super::sigmoid_f32 as sigmoid;
    pub use super::tanh_f32 as tanh;

    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        super::exp_f32_with::<true>(x)
    }

    #[inline(always)]
    pub fn gelu_erf(x: f32) -> f32 {
        super::gelu_erf_f32_with::<true>(x)
    }
}

mod fast32 {
    pub use super::erf_f32 as erf;
    pub use super::exp_f32 as exp;
    pub use super::gelu_erf_f32 as gelu_erf;
    pub use super::sigmoid_f32 as sigmoid;
    pub use super::tanh_f32 as tanh;
}

mod precise64 {
    pub use super::erf_f64 as erf;

    #[inline(always)]
    pub fn gelu_erf(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))
    }

    #[inline(always)]
    pub fn exp(x: f64) -> f64 {
        x.exp()
    }

    #[inline(always)]
    pub fn tanh(x: f64) -> f64 {
        x.tanh()
    }

    #[inline(always)]
    pub fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Largest relative error of `fast` against `exact` over `n` points of [lo, hi],
    /// with values below `floor` compared absolutely.
    fn max_rel_err(fast: impl Fn(f32) -> f32, exact: impl Fn(f64) -> f64, lo: f32, hi: f32, floor: f64) -> f64 {
        let n = 200_000;
        let mut worst = 0.0f64;
        for i in 0..=n {
            let x = lo + (hi - lo) * i as f32 / n as f32;
            let want = exact(x as f64);
            let got = fast(x) as f64;
            let err = (got - want).abs() / want.abs().max(floor);
            worst = worst.max(err);
        }
        worst
    }

    #[test]
    fn exp_is_accurate_across_the_range() {
        assert!(max_rel_err(exp_f32, f64::exp, -87.0, 88.7, 0.0) < 3e-7);
        assert!(max_rel_err(exp_f32, f64::exp, -1.0, 1.0, 0.0) < 2e-7);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        // Subnormal results, as std's exp gives them.
        let sub = exp_f32(-100.0) as f64;
        assert!((sub - (-100f64).exp()).abs() < 1e-45, "{sub}");
    }

    #[test]
    fn tanh_and_sigmoid_are_accurate() {
        assert!(max_rel_err(tanh_f32, f64::tanh, -12.0, 12.0, 0.0) < 3e-7);
        assert!(max_rel_err(tanh_f32, f64::tanh, -1e-3, 1e-3, 0.0) < 2e-7);
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        assert!(max_rel_err(sigmoid_f32, sig, -80.0, 30.0, 0.0) < 3e-7);
        assert_eq!(sigmoid_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid_f32(f32::INFINITY), 1.0);
    }

    #[test]
    fn erf_f64_matches_known_values() {
        // Values from Python's math.erf.
        let known = [
            (0.5, 0.5204998778130465),
            (1e-3, 0.0011283787909692363),
            (1.0, 0.8427007929497149),
            (2.5, 0.999593047982555),
            (-3.0, -0.9999779095030014),
            (5.5, 0.9999999999999927),
        ];
        for (x, want) in known {
            let got = erf_f64(x);
            assert!((got - want).abs() <= 2e-15 * want.abs(), "erf({x}) = {got}, want {want}");
        }
        assert_eq!(erf_f64(0.0), 0.0);
        assert_eq!(erf_f64(f64::INFINITY), 1.0);
        assert!(erf_f64(f64::NAN).is_nan());
    }

    #[test]
    fn gelu_erf_f32_is_accurate() {
        // The reference through erfc, so negative inputs keep their relative
        // accuracy: 0.5·x·erfc(-x/√2) with erfc = 1 - erf near 0 and the f64
        // series' complement far out would cancel, so use the continued form.
        let exact = |x: f64| 0.5 * x * erfc_f64(-x * std::f64::consts::FRAC_1_SQRT_2);
        assert!(max_rel_err(gelu_erf_f32, exact, -2.0, 2.0, 1e-30) < 6e-7);
        // Measured: 4.5e-7, 2.1e-6 and 7.5e-6.
        assert!(max_rel_err(gelu_erf_f32, exact, -6.0, 6.0, 1e-30) < 3e-6);
        assert!(max_rel_err(gelu_erf_f32, exact, -13.0, 13.0, 1e-30) < 1.2e-5);
        assert_eq!(gelu_erf_f32(0.0), 0.0);
        assert_eq!(gelu_erf_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(gelu_erf_f32(f32::MAX), f32::MAX);
        assert_eq!(gelu_erf_f32(-30.0), -0.0);
        assert!(gelu_erf_f32(f32::NAN).is_nan());
    }

    /// erfc in f64 to about 1e-13 relative over the whole line: 1 - erf where
    /// that does not cancel, else the Laplace continued fraction.
    fn erfc_f64(x: f64) -> f64 {
        if x < 2.0 {
            return 1.0 - erf_f64(x);
        }
        // erfc(x) = e^(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))).
        let mut f = x;
        for k in (1..200).rev() {
            f = x + (k as f64 / 2.0) / f;
        }
        (-x * x).exp() / std::f64::consts::PI.sqrt() / f
    }

    #[test]
    fn erf_f32_is_accurate() {
        assert!(max_rel_err(erf_f32, erf_f64, -6.0, 6.0, 0.0) < 2.5e-7);
        assert!(max_rel_err(erf_f32, erf_f64, -1e-4, 1e-4, 0.0) < 2e-7);
        assert!(erf_f32(f32::NAN).is_nan());
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert_eq!(erf_f32(-10.0), -1.0);
    }

    #[test]
    fn ops_follow_their_definitions() {
        let x = -0.75f32;
        let cases: Vec<(UnaryOp, f32)> = vec![
            (UnaryOp::Abs, 0.75),
            (UnaryOp::Neg, 0.75),
            (UnaryOp::Reciprocal, -1.0 / 0.75),
            (UnaryOp::Relu, 0.0),
            (UnaryOp::LeakyRelu { alpha: 0.1 }, -0.075),
            (UnaryOp::Elu { alpha: 2.0 }, 2.0 * ((-0.75f64).exp() - 1.0) as f32),
            (UnaryOp::Selu { alpha: 1.5, gamma: 2.0 }, 2.0 * (1.5 * (-0.75f64).exp() - 1.5) as f32),
            (UnaryOp::Celu { alpha: 2.0 }, 2.0 * ((-0.375f64).exp() - 1.0) as f32),
            (UnaryOp::ThresholdedRelu { alpha: -1.0 }, -0.75),
            (UnaryOp::HardSigmoid { alpha: 0.2, beta: 0.5 }, 0.35),
            (UnaryOp::HardSwish, -0.75 * (-0.75 / 6.0 + 0.5)),
            (UnaryOp::Softplus, (1.0 + (-0.75f64).exp()).ln() as f32),
            (UnaryOp::Softsign, -0.75 / 1.75),
            (UnaryOp::Mish, (-0.75 * (1.0 + (-0.75f64).exp()).ln().tanh()) as f32),
            (UnaryOp::Clip { min: -0.5, max: 1.0 }, -0.5),
            (UnaryOp::Sign, -1.0),
            (UnaryOp::Floor, -1.0),
            (UnaryOp::Ceil, -0.0),
            (UnaryOp::Round, -1.0),
            (UnaryOp::Sigmoid, (1.0 / (1.0 + 0.75f64.exp())) as f32),
            (UnaryOp::Gelu { tanh: false }, (-0.375 * (1.0 + erf_f64(-0.75 / 2f64.sqrt()))) as f32),
            (
                UnaryOp::Gelu { tanh: true },
                (-0.375 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (-0.75 + 0.044715 * -0.421875)).tanh())) as f32,
            ),
            (UnaryOp::Not, 0.0),
            (UnaryOp::IsNaN, 0.0),
        ];
        for (op, want) in cases {
            let got = apply_f32(&op, x);
            assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{op:?}: {got} vs {want}");
            let got64 = apply_f64(&op, x as f64);
            assert!((got64 - want as f64).abs() <= 1e-6 * (want as f64).abs().max(1.0), "{op:?} f64: {got64}");
        }
    }

    #[test]
    fn nan_and_special_values() {
        for op in [
            UnaryOp::Relu,
            UnaryOp::LeakyRelu { alpha: 0.1 },
            UnaryOp::Sign,
            UnaryOp::HardSigmoid { alpha: 0.2, beta: 0.5 },
        ] {
            assert!(apply_f32(&op, f32::NAN).is_nan(), "{op:?}");
        }
        assert!(apply_f32(&UnaryOp::Clip { min: 0.0, max: 1.0 }, f32::NAN).is_nan());
        // min > max: everything becomes max.
        assert_eq!(apply_f32(&UnaryOp::Clip { min: 3.0, max: 1.0 }, -5.0), 1.0);
        assert_eq!(apply_f32(&UnaryOp::ThresholdedRelu { alpha: 1.0 }, f32::NAN), 0.0);
        assert_eq!(apply_f32(&UnaryOp::Sign, -0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(apply_f32(&UnaryOp::Round, 2.5), 2.0);
        assert_eq!(apply_f32(&UnaryOp::Round, -1.5), -2.0);
        assert_eq!(apply_f32(&UnaryOp::Softplus, 100.0), 100.0);
        assert!(apply_f32(&UnaryOp::Softplus, -100.0) > 0.0);
        let inf = UnaryOp::IsInf { detect_positive: false, detect_negative: true };
        assert_eq!(apply_f32(&inf, f32::NEG_INFINITY), 1.0);
        assert_eq!(apply_f32(&inf, f32::INFINITY), 0.0);
    }

    #[test]
    fn slice_forms_agree_with_the_scalar_form() {
        let src: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.013).collect();
        // Exp and the erf GELU fuse their multiply-adds in the slice forms where
        // the CPU has FMA: within their error bounds of the scalar form there
        // (GELU's far negative tail, where x²/2 is rounded or not, differs most),
        // the same bits elsewhere. The others are the same bits everywhere.
        let fused =
            |op: &UnaryOp| matches!(op, UnaryOp::Exp | UnaryOp::Gelu { tanh: false }) && crate::ops::wide::has_avx512();
        for op in [UnaryOp::Erf, UnaryOp::Tanh, UnaryOp::Gelu { tanh: false }, UnaryOp::Exp, UnaryOp::Softsign] {
            let mut dst = vec![0.0; src.len()];
            map_slice_f32(&op, &src, &mut dst);
            let mut inplace = src.clone();
            apply_slice_f32(&op, &mut inplace);
            for i in 0..src.len() {
                let scalar = apply_f32(&op, src[i]);
                if fused(&op) {
                    assert!(
                        (dst[i] - scalar).abs() <= 1e-5 * scalar.abs().max(1e-30),
                        "{op:?}({}): {} vs {scalar}",
                        src[i],
                        dst[i]
                    );
                } else {
                    assert_eq!(dst[i].to_bits(), scalar.to_bits(), "{op:?}({})", src[i]);
                }
                assert_eq!(inplace[i].to_bits(), dst[i].to_bits());
            }
        }
    }

    #[test]
    fn fused_forms_are_accurate() {
        // What the slice forms run on CPUs with FMA, against the same references
        // as the unfused forms.
        let exact = |x: f64| 0.5 * x * erfc_f64(-x * std::f64::consts::FRAC_1_SQRT_2);
        assert!(max_rel_err(gelu_erf_f32_with::<true>, exact, -2.0, 2.0, 1e-30) < 6e-7);
        // Measured: 4.1e-7, 1.2e-6 and 4.0e-6 (unfused: 4.5e-7, 2.1e-6, 7.5e-6).
        assert!(max_rel_err(gelu_erf_f32_with::<true>, exact, -6.0, 6.0, 1e-30) < 1.6e-6);
        assert!(max_rel_err(gelu_erf_f32_with::<true>, exact, -13.0, 13.0, 1e-30) < 6e-6);
        assert!(max_rel_err(exp_f32_with::<true>, f64::exp, -87.0, 88.7, 0.0) < 3e-7);
        assert!(gelu_erf_f32_with::<true>(f32::NAN).is_nan());
        assert_eq!(exp_f32_with::<true>(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32_with::<true>(89.0), f32::INFINITY);
    }
}
