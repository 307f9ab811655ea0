//! Arithmetic on every numeric element type with ONNX/onnxruntime semantics, so
//! kernels are written once over `T: Num`.
//!
//! Integers wrap on overflow (what onnxruntime's C++ does in practice); f16 and bf16
//! compute in f32 and round back to nearest even. Integer division by zero has no
//! value: kernels check divisors first and report an error, and the methods here
//! return 0 rather than trap.

use half::{bf16, f16};
use smelt_ir::Element;

pub(crate) trait Num: Element + Default {
    /// The smallest value (-inf for floats), identity of `max`.
    const LOWEST: Self;
    /// The largest value (+inf for floats), identity of `min`.
    const HIGHEST: Self;
    const ZERO: Self;
    const ONE: Self;
    const IS_FLOAT: bool;

    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Floats: IEEE division. Integers: truncating division, 0 for a 0 divisor.
    fn div(self, o: Self) -> Self;
    /// `fmod`: remainder with the dividend's sign (C `fmod`, Rust `%`); otherwise
    /// Python's `%`, with the divisor's sign. Integers give 0 for a 0 divisor.
    fn rem(self, o: Self, fmod: bool) -> Self;
    /// `self` raised to an integer power. Integers: exact with wrapping; negative
    /// powers truncate toward zero (only ±1 survive), as `(int)pow(x, e)` does.
    fn powi(self, e: i64) -> Self;
    /// `self` raised to a real power, computed in f64 and converted back (integers
    /// with the float→int conversion of [`Num::from_f64_trunc`]).
    fn powf(self, e: f64) -> Self;
    fn is_zero(self) -> bool;
    /// `x != x`: true only for a float NaN.
    #[inline(always)]
    fn is_nan(self) -> bool {
        #[allow(clippy::eq_op)]
        let nan = self != self;
        nan
    }
    fn to_f32(self) -> f32;
    /// Floats round to nearest even; integers take [`Num::from_f64_trunc`]'s path.
    fn from_f32(v: f32) -> Self;
    /// The value converted as onnxruntime's compiled `static_cast` does on x86-64:
    /// floats round to nearest even; integers truncate toward zero, and a NaN or
    /// out-of-range value gives what `cvttss2si`-style conversion gives (the
    /// "integer indefinite" value, reduced to the target's width).
    fn from_f64_trunc(v: f64) -> Self;
}

/// `(int32_t)v` as x86-64 computes it: truncation, with NaN and out-of-range values
/// giving `i32::MIN`.
#[inline(always)]
fn cvtt_i32(v: f64) -> i32 {
    if v > -2_147_483_649.0 && v < 2_147_483_648.0 {
        v as i32
    } else {
        i32::MIN
    }
}

/// `(int64_t)v` as x86-64 computes it: NaN and out-of-range values give `i64::MIN`.
#[inline(always)]
fn cvtt_i64(v: f64) -> i64 {
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) {
        v as i64
    } else {
        i64::MIN
    }
}

/// Integer power by squaring over a u64 exponent, wrapping.
macro_rules! wrapping_pow {
    ($t:ty, $base:expr, $e:expr) => {{
        let (mut base, mut e, mut acc): ($t, u64, $t) = ($base, $e, 1);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.wrapping_mul(base);
            }
            base = base.wrapping_mul(base);
            e >>= 1;
        }
        acc
    }};
}

macro_rules! int_common {
    ($t:ty) => {
        const LOWEST: $t = <$t>::MIN;
        const HIGHEST: $t = <$t>::MAX;
        const ZERO: $t = 0;
        const ONE: $t = 1;
        const IS_FLOAT: bool = false;

        #[inline(always)]
        fn add(self, o: $t) -> $t {
            self.wrapping_add(o)
        }
        #[inline(always)]
        fn sub(self, o: $t) -> $t {
            self.wrapping_sub(o)
        }
        #[inline(always)]
        fn mul(self, o: $t) -> $t {
            self.wrapping_mul(o)
        }
        #[inline(always)]
        fn div(self, o: $t) -> $t {
            if o == 0 {
                0
            } else {
                self.wrapping_div(o)
            }
        }
        #[inline(always)]
        fn is_zero(self) -> bool {
            self == 0
        }
        #[inline(always)]
        fn to_f32(self) -> f32 {
            self as f32
        }
        #[inline(always)]
        fn from_f32(v: f32) -> $t {
            Self::from_f64_trunc(v as f64)
        }
        #[inline(always)]
        fn powf(self, e: f64) -> $t {
            Self::from_f64_trunc((self as f64).powf(e))
        }
    };
}

macro_rules! signed_int {
    ($($t:ty => $conv:expr),*) => {$(
        impl Num for $t {
            int_common!($t);

            #[inline(always)]
            fn rem(self, o: $t, fmod: bool) -> $t {
                if o == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(o);
                if !fmod && r != 0 && ((r < 0) != (o < 0)) {
                    r.wrapping_add(o)
                } else {
                    r
                }
            }
            #[inline(always)]
            fn powi(self, e: i64) -> $t {
                if e >= 0 {
                    wrapping_pow!($t, self, e as u64)
                } else {
                    match self {
                        1 => 1,
                        -1 => if e % 2 == 0 { 1 } else { -1 },
                        _ => 0,
                    }
                }
            }
            #[inline(always)]
            fn from_f64_trunc(v: f64) -> $t {
                let conv: fn(f64) -> $t = $conv;
                conv(v)
            }
        }
    )*};
}

macro_rules! unsigned_int {
    ($($t:ty => $conv:expr),*) => {$(
        impl Num for $t {
            int_common!($t);

            #[inline(always)]
            fn rem(self, o: $t, _fmod: bool) -> $t {
                if o == 0 {
                    0
                } else {
                    self % o
                }
            }
            #[inline(always)]
            fn powi(self, e: i64) -> $t {
                if e >= 0 {
                    wrapping_pow!($t, self, e as u64)
                } else if self == 1 {
                    1
                } else {
                    0
                }
            }
            #[inline(always)]
            fn from_f64_trunc(v: f64) -> $t {
                let conv: fn(f64) -> $t = $conv;
                conv(v)
            }
        }
    )*};
}

// Narrow targets go through a 32-bit conversion and keep the low bits; u32 and u64
// are converted the way compilers lower unsigned conversions (subtracting 2^31 or
// 2^63 first for large values). These match onnxruntime on x86-64 bit for bit.
signed_int!(
    i8 => |v| cvtt_i32(v) as i8,
    i16 => |v| cvtt_i32(v) as i16,
    i32 => cvtt_i32,
    i64 => cvtt_i64
);
unsigned_int!(
    u8 => |v| cvtt_i32(v) as u8,
    u16 => |v| cvtt_i32(v) as u16,
    u32 => |v| if v >= 2_147_483_648.0 { (cvtt_i32(v - 2_147_483_648.0) as u32) ^ 0x8000_0000 } else { cvtt_i32(v) as u32 },
    u64 => |v| if v >= 9_223_372_036_854_775_808.0 {
        (cvtt_i64(v - 9_223_372_036_854_775_808.0) as u64) ^ (1 << 63)
    } else {
        cvtt_i64(v) as u64
    }
);

#[inline(always)]
fn float_rem<T: num_traits::Float>(a: T, b: T, fmod: bool) -> T {
    let r = a % b;
    if !fmod && r != T::zero() && ((r < T::zero()) != (b < T::zero())) {
        r + b
    } else {
        r
    }
}

macro_rules! native_float {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const LOWEST: $t = <$t>::NEG_INFINITY;
            const HIGHEST: $t = <$t>::INFINITY;
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const IS_FLOAT: bool = true;

            #[inline(always)]
            fn add(self, o: $t) -> $t {
                self + o
            }
            #[inline(always)]
            fn sub(self, o: $t) -> $t {
                self - o
            }
            #[inline(always)]
            fn mul(self, o: $t) -> $t {
                self * o
            }
            #[inline(always)]
            fn div(self, o: $t) -> $t {
                self / o
            }
            #[inline(always)]
            fn rem(self, o: $t, fmod: bool) -> $t {
                float_rem(self, o, fmod)
            }
            #[inline(always)]
            fn powi(self, e: i64) -> $t {
                (self as f64).powf(e as f64) as $t
            }
            #[inline(always)]
            fn powf(self, e: f64) -> $t {
                (self as f64).powf(e) as $t
            }
            #[inline(always)]
            fn is_zero(self) -> bool {
                self == 0.0
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn from_f32(v: f32) -> $t {
                v as $t
            }
            #[inline(always)]
            fn from_f64_trunc(v: f64) -> $t {
                v as $t
            }
        }
    )*};
}
native_float!(f32, f64);

macro_rules! half_float {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const LOWEST: $t = <$t>::NEG_INFINITY;
            const HIGHEST: $t = <$t>::INFINITY;
            const ZERO: $t = <$t>::ZERO;
            const ONE: $t = <$t>::ONE;
            const IS_FLOAT: bool = true;

            #[inline(always)]
            fn add(self, o: $t) -> $t {
                <$t>::from_f32(self.to_f32() + o.to_f32())
            }
            #[inline(always)]
            fn sub(self, o: $t) -> $t {
                <$t>::from_f32(self.to_f32() - o.to_f32())
            }
            #[inline(always)]
            fn mul(self, o: $t) -> $t {
                <$t>::from_f32(self.to_f32() * o.to_f32())
            }
            #[inline(always)]
            fn div(self, o: $t) -> $t {
                <$t>::from_f32(self.to_f32() / o.to_f32())
            }
            #[inline(always)]
            fn rem(self, o: $t, fmod: bool) -> $t {
                <$t>::from_f32(float_rem(self.to_f32(), o.to_f32(), fmod))
            }
            #[inline(always)]
            fn powi(self, e: i64) -> $t {
                <$t>::from_f32(self.to_f32().powf(e as f32))
            }
            #[inline(always)]
            fn powf(self, e: f64) -> $t {
                <$t>::from_f32(self.to_f32().powf(e as f32))
            }
            #[inline(always)]
            fn is_zero(self) -> bool {
                self.to_f32() == 0.0
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                <$t>::to_f32(self)
            }
            #[inline(always)]
            fn from_f32(v: f32) -> $t {
                <$t>::from_f32(v)
            }
            #[inline(always)]
            fn from_f64_trunc(v: f64) -> $t {
                <$t>::from_f64(v)
            }
        }
    )*};
}
half_float!(f16, bf16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_division_and_remainder() {
        assert_eq!([7i32.div(2), (-7i32).div(2), 7i32.div(-2), (-7i32).div(-2)], [3, -3, -3, 3]);
        assert_eq!(i32::MIN.div(-1), i32::MIN);
        // Python semantics: the sign of the divisor.
        assert_eq!(
            [5i32.rem(3, false), (-5i32).rem(3, false), 5i32.rem(-3, false), (-5i32).rem(-3, false)],
            [2, 1, -1, -2]
        );
        // fmod semantics: the sign of the dividend.
        assert_eq!([5i32.rem(3, true), (-5i32).rem(3, true), 5i32.rem(-3, true)], [2, -2, 2]);
        assert_eq!((-128i8).rem(-1, false), 0);
        assert_eq!(7u8.rem(0, false), 0);
    }

    #[test]
    fn float_remainder() {
        assert_eq!([5.5f32.rem(3.0, true), (-5.5f32).rem(3.0, true), 5.5f32.rem(-3.0, true)], [2.5, -2.5, 2.5]);
        assert_eq!([(-5.5f32).rem(3.0, false), 5.5f32.rem(-3.0, false)], [0.5, -0.5]);
        assert!(1f32.rem(0.0, true).is_nan());
        assert_eq!(f16::from_f32(-5.5).rem(f16::from_f32(3.0), false), f16::from_f32(0.5));
    }

    #[test]
    fn powers() {
        assert_eq!([2i32.powi(-1), (-2i32).powi(-1), 1i32.powi(-3), (-1i32).powi(-3), 3i32.powi(3)], [0, 0, 1, -1, 27]);
        assert_eq!(2i64.powf(0.5), 1);
        assert_eq!((-2i64).powf(0.5), i64::MIN);
        assert_eq!(3i64.powf(2.9), 24);
        assert_eq!(2u8.powi(9), 0);
        assert_eq!(2f32.powi(-1), 0.5);
    }

    #[test]
    fn float_to_int_matches_x86() {
        let v = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.5, 300.7, 3e9, -3e9, 1e20, 70000.5, -2.7];
        let conv = |f: fn(f64) -> i128| v.map(f);
        assert_eq!(conv(|x| i8::from_f64_trunc(x) as i128), [0, 0, 0, -1, 44, 0, 0, 0, 112, -2]);
        assert_eq!(conv(|x| u8::from_f64_trunc(x) as i128), [0, 0, 0, 255, 44, 0, 0, 0, 112, 254]);
        assert_eq!(conv(|x| u16::from_f64_trunc(x) as i128), [0, 0, 0, 65535, 300, 0, 0, 0, 4464, 65534]);
        let m32 = i32::MIN as i128;
        assert_eq!(conv(|x| i32::from_f64_trunc(x) as i128), [m32, m32, m32, -1, 300, m32, m32, m32, 70000, -2]);
        assert_eq!(
            conv(|x| u32::from_f64_trunc(x) as i128),
            [1 << 31, 0, 1 << 31, 4294967295, 300, 3_000_000_000, 1 << 31, 0, 70000, 4294967294]
        );
        let m64 = i64::MIN as i128;
        assert_eq!(
            conv(|x| i64::from_f64_trunc(x) as i128),
            [m64, m64, m64, -1, 300, 3_000_000_000, -3_000_000_000, m64, 70000, -2]
        );
        assert_eq!(
            conv(|x| u64::from_f64_trunc(x) as i128),
            [
                1 << 63,
                0,
                1 << 63,
                u64::MAX as i128,
                300,
                3_000_000_000,
                (u64::MAX - 3_000_000_000 + 1) as i128,
                0,
                70000,
                (u64::MAX - 1) as i128
            ]
        );
    }

    #[test]
    fn nan_detection() {
        assert!(f32::NAN.is_nan() && Num::is_nan(f16::NAN) && !Num::is_nan(3i32));
    }
}
