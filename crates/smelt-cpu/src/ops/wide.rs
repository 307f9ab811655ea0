//! Wide vectors for plain loops. The crate is compiled for the baseline x86-64
//! (SSE2), so a loop the compiler vectorises gets 4-lane vectors and no FMA.
//! [`run`] calls a closure from a function compiled for AVX-512: the closure is
//! inlined there, so its loops are vectorised 16 lanes wide, on CPUs that have
//! it. Results are the same either way: the compiler never contracts a·b + c
//! into an FMA on its own, so only the width changes, not the arithmetic.
//! [`run_either`] is for code that fuses its multiply-adds where it can: it
//! takes the wide form and the narrow one separately.
//!
//! The inlining is LLVM's choice, not a guarantee: a closure it finds too large
//! stays a function of its own, compiled for the baseline, and its loops run 4
//! lanes wide with no error anywhere. BERT-base's LayerNorm rows did, and so
//! did a longer attention softmax loop (`perf annotate` showed `xmm` loops in a
//! `{{closure}}` symbol). A hot loop of any size belongs in an `#[inline(always)]` function
//! called from an explicit `#[target_feature(enable = "avx512f,avx2,fma")]`
//! function, as `norm::normalize_rows` does; `perf report` then names the wide
//! function, not a closure.

/// Runs `f`, with AVX-512 code where the CPU has it.
#[inline(always)]
pub fn run<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has every feature `run_avx512` is compiled for.
        return unsafe { run_avx512(f) };
    }
    f()
}

/// Runs `wide(arg)` with AVX-512 code where the CPU has it (FMA included, so
/// `wide` may use `mul_add`, which is one instruction there), `narrow(arg)`
/// elsewhere.
#[inline(always)]
pub fn run_either<A, R>(arg: A, wide: impl FnOnce(A) -> R, narrow: impl FnOnce(A) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has every feature `run_avx512` is compiled for.
        return unsafe { run_avx512(|| wide(arg)) };
    }
    let _ = wide;
    narrow(arg)
}

/// Whether this CPU runs the AVX-512 code: [`run`]'s closures 16 lanes wide,
/// [`run_either`]'s wide form, with FMA.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return available();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether this CPU runs `run_avx512`'s code (checked once).
#[cfg(target_arch = "x86_64")]
fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}
