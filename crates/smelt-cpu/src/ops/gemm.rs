//! Dense matrix products. Every kernel that reduces to GEMM (MatMul, Gemm, Einsum,
//! Conv, ConvTranspose) goes through [`sgemm`] / [`gemm`] here, so the choice of
//! backend (the `gemm` crate, or Accelerate's `cblas_sgemm` on macOS with the
//! `accelerate` feature) and of threading lives in one place.

use crate::team;
pub use gemm::Parallelism;
use num_traits::{WrappingAdd, WrappingMul, Zero};
use smelt_ir::UnaryOp;

/// Where a matrix's elements sit in its buffer: element (i, j) is at
/// `i * row + j * col`. Transposes are layouts, never copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub row: usize,
    pub col: usize,
}

impl Layout {
    /// Consecutive rows of `cols` elements.
    pub const fn row_major(cols: usize) -> Layout {
        Layout { row: cols, col: 1 }
    }

    /// The same buffer read as the transposed matrix.
    pub const fn transposed(self) -> Layout {
        Layout { row: self.col, col: self.row }
    }

    /// Elements a `rows`×`cols` matrix with this layout spans from its first element.
    pub fn span(self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * self.row + (cols - 1) * self.col + 1
        }
    }
}

/// What a product applies to its result once it is final, block by block while
/// the block is in cache: `finish(row, col, values)` for the elements of row
/// `row` from column `col` on. Every element of C goes through it exactly once;
/// calls may come from several threads, on disjoint elements.
pub type Finish<'a, T> = &'a (dyn Fn(usize, usize, &mut [T]) + Sync);

/// What a product does to its result once it is final, in this order: add a
/// bias per row or per column and a residual laid out as C (same row stride),
/// apply an activation, then `finish`. The AVX-512 kernel adds the biases and
/// the residual, and clamps a Relu or Clip, in registers as it stores C, so C is
/// written once; other activations and `finish` run per block of C while it is
/// in cache. Other paths apply it row by row after the product
/// ([`GemmEpilogue::apply_row`]).
#[derive(Clone, Copy)]
pub struct GemmEpilogue<'a, T> {
    pub row_bias: Option<&'a [T]>,
    pub col_bias: Option<&'a [T]>,
    pub residual: Option<&'a [T]>,
    pub activation: Option<&'a UnaryOp>,
    pub finish: Option<Finish<'a, T>>,
}

impl<'a, T: Float> GemmEpilogue<'a, T> {
    /// Nothing to do.
    pub const NONE: GemmEpilogue<'static, T> =
        GemmEpilogue { row_bias: None, col_bias: None, residual: None, activation: None, finish: None };

    pub fn is_empty(&self) -> bool {
        self.row_bias.is_none()
            && self.col_bias.is_none()
            && self.residual.is_none()
            && self.activation.is_none()
            && self.finish.is_none()
    }

    /// Applies the epilogue to row `i` of C, whose first element is C's element
    /// (i, 0); `ldc` is C's row stride (where the residual's row starts).
    pub fn apply_row(&self, i: usize, ldc: usize, row: &mut [T]) {
        let n = row.len();
        let residual = self.residual.map(|z| &z[i * ldc..][..n]);
        let col_bias = self.col_bias.map(|b| &b[..n]);
        let row_bias = self.row_bias.map(|b| b[i]);
        match (col_bias, residual) {
            (Some(b), Some(z)) => {
                T::add_then_activate(row, row_bias, Some(b), None);
                T::add_then_activate(row, None, Some(z), self.activation);
            }
            (b, z) => T::add_then_activate(row, row_bias, b.or(z), self.activation),
        }
        if let Some(f) = self.finish {
            f(i, 0, row);
        }
    }

    /// Applies the epilogue to every row of an `m`×`n` C with row stride `ldc`.
    ///
    /// # Safety
    /// `c` is valid for that span and nothing else touches it meanwhile.
    pub unsafe fn apply_rows(&self, c: *mut T, m: usize, n: usize, ldc: usize) {
        if self.is_empty() {
            return;
        }
        for i in 0..m {
            self.apply_row(i, ldc, std::slice::from_raw_parts_mut(c.add(i * ldc), n));
        }
    }
}

/// Below this many multiply-adds a product runs on the calling thread: handing
/// work to other threads costs a few microseconds, about what a 64³ product takes.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// Threads for one `m`×`n`×`k` product when nothing around it runs in parallel:
/// the current team's when the product is large enough to pay for it.
pub fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let threads = team::threads();
    if threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_WORK {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Threads a [`Parallelism`] stands for (the x86-64 kernels split work by hand).
#[cfg(target_arch = "x86_64")]
fn threads(parallelism: Parallelism) -> usize {
    match parallelism {
        Parallelism::None => 1,
        Parallelism::Rayon(0) => team::threads(),
        Parallelism::Rayon(n) => n,
    }
}

/// A constant f32 left operand (weights) packed once for the AVX-512 kernel.
/// Exists only where that kernel runs; elsewhere callers keep the plain matrix.
#[derive(Debug)]
pub struct PackedLhs(#[cfg(target_arch = "x86_64")] super::sgemm_avx512::PackedA);

impl PackedLhs {
    /// Packs the `m`×`k` matrix `a`, or `None` where no packed kernel runs.
    #[allow(unused_variables)]
    pub fn new(m: usize, k: usize, a: &[f32], layout: Layout) -> Option<PackedLhs> {
        #[cfg(target_arch = "x86_64")]
        return super::sgemm_avx512::PackedA::new(m, k, a, layout).map(PackedLhs);
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    pub fn depth(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        return self.0.depth();
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("PackedLhs is never built on this target")
    }
}

/// A constant f32 right operand (weights) packed once for the AVX-512 kernel.
#[derive(Debug)]
pub struct PackedRhs(#[cfg(target_arch = "x86_64")] super::sgemm_avx512::PackedB);

impl PackedRhs {
    /// Packs the `k`×`n` matrix `b`, or `None` where no packed kernel runs.
    #[allow(unused_variables)]
    pub fn new(k: usize, n: usize, b: &[f32], layout: Layout) -> Option<PackedRhs> {
        #[cfg(target_arch = "x86_64")]
        return super::sgemm_avx512::PackedB::new(k, n, b, layout).map(PackedRhs);
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    pub fn cols(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        return self.0.cols();
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("PackedRhs is never built on this target")
    }
}

/// Float element types with a native product: f32, f64 and f16 (which the `gemm`
/// crate accumulates in f32).
pub trait Float: num_traits::Float + Default + Send + Sync + std::fmt::Debug + 'static {
    fn as_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;

    /// A fused activation applied in place.
    fn activate(values: &mut [Self], activation: &UnaryOp);

    /// `values[i] ← activation(values[i] + scalar + vector[i])`, each part only
    /// where given (`vector` as long as `values`), added in that order.
    fn add_then_activate(
        values: &mut [Self],
        scalar: Option<Self>,
        vector: Option<&[Self]>,
        activation: Option<&UnaryOp>,
    ) {
        if let Some(b) = scalar {
            values.iter_mut().for_each(|v| *v = *v + b);
        }
        if let Some(z) = vector {
            assert_eq!(z.len(), values.len(), "addend and values differ in length");
            values.iter_mut().zip(z).for_each(|(v, &r)| *v = *v + r);
        }
        if let Some(act) = activation {
            Self::activate(values, act);
        }
    }

    /// `c ← alpha·a·b + beta·c` (c unread when beta is 0) with a left operand
    /// packed ahead of time, then `epilogue` on C; `c` is row-major with row
    /// stride `ldc`. Returns false, having done nothing, when the element type
    /// has no packed kernel (only f32 does).
    ///
    /// # Safety
    /// As [`gemm_raw`] for the `b` and `c` spans.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_packed_lhs(
        _m: usize,
        _n: usize,
        _a: &PackedLhs,
        _b: *const Self,
        _b_layout: Layout,
        _c: *mut Self,
        _ldc: usize,
        _alpha: Self,
        _beta: Self,
        _epilogue: &GemmEpilogue<Self>,
        _parallelism: Parallelism,
    ) -> bool {
        false
    }

    /// `c ← alpha·a·b + beta·c` with a right operand packed ahead of time, like
    /// [`Float::gemm_packed_lhs`].
    ///
    /// # Safety
    /// As [`gemm_raw`] for the `a` and `c` spans.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_packed_rhs(
        _m: usize,
        _k: usize,
        _a: *const Self,
        _a_layout: Layout,
        _b: &PackedRhs,
        _c: *mut Self,
        _ldc: usize,
        _alpha: Self,
        _beta: Self,
        _epilogue: &GemmEpilogue<Self>,
        _parallelism: Parallelism,
    ) -> bool {
        false
    }

    /// The backend call behind [`gemm_raw`], for non-degenerate sizes.
    ///
    /// # Safety
    /// As [`gemm_raw`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        m: usize,
        n: usize,
        k: usize,
        a: *const Self,
        a_layout: Layout,
        b: *const Self,
        b_layout: Layout,
        c: *mut Self,
        c_layout: Layout,
        alpha: Self,
        beta: Self,
        parallelism: Parallelism,
    );
}

/// `c ← alpha·a·b + beta·c` through the `gemm` crate. Its own convention is
/// `dst ← alpha·dst + beta·lhs·rhs` with `read_dst` saying whether dst is read.
#[allow(clippy::too_many_arguments)]
unsafe fn crate_gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    a_layout: Layout,
    b: *const T,
    b_layout: Layout,
    c: *mut T,
    c_layout: Layout,
    alpha: T,
    beta: T,
    parallelism: Parallelism,
) {
    // The crate splits its work on a rayon pool, which the team lends its
    // cores to; the operands cross to that pool's threads as addresses.
    let (a, b, c) = (a as usize, b as usize, c as usize);
    let product = move || {
        gemm::gemm(
            m,
            n,
            k,
            c as *mut T,
            c_layout.col as isize,
            c_layout.row as isize,
            beta != T::zero(),
            a as *const T,
            a_layout.col as isize,
            a_layout.row as isize,
            b as *const T,
            b_layout.col as isize,
            b_layout.row as isize,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        )
    };
    match parallelism {
        Parallelism::None => product(),
        Parallelism::Rayon(_) => team::lend_cores(product),
    }
}

impl Float for f32 {
    #[inline]
    fn as_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    fn activate(values: &mut [f32], activation: &UnaryOp) {
        crate::ops::activation::apply_slice_f32(activation, values)
    }
    fn add_then_activate(
        values: &mut [f32],
        scalar: Option<f32>,
        vector: Option<&[f32]>,
        activation: Option<&UnaryOp>,
    ) {
        crate::ops::activation::add_then_apply_f32(values, scalar, vector, activation)
    }
    #[allow(unused_variables)]
    unsafe fn gemm_packed_lhs(
        m: usize,
        n: usize,
        a: &PackedLhs,
        b: *const f32,
        b_layout: Layout,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
        epilogue: &GemmEpilogue<f32>,
        parallelism: Parallelism,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        let done = {
            use super::sgemm_avx512::{sgemm_with, Lhs, Rhs};
            let k = a.depth();
            let b = std::slice::from_raw_parts(b, b_layout.span(k, n));
            sgemm_with(
                m,
                n,
                k,
                Lhs::Packed(&a.0),
                Rhs::Strided(b, b_layout),
                c,
                ldc,
                alpha,
                beta,
                epilogue,
                threads(parallelism),
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = false;
        done
    }
    #[allow(unused_variables)]
    unsafe fn gemm_packed_rhs(
        m: usize,
        k: usize,
        a: *const f32,
        a_layout: Layout,
        b: &PackedRhs,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
        epilogue: &GemmEpilogue<f32>,
        parallelism: Parallelism,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        let done = {
            use super::sgemm_avx512::{sgemm_with, Lhs, Rhs};
            let n = b.cols();
            let a = std::slice::from_raw_parts(a, a_layout.span(m, k));
            sgemm_with(
                m,
                n,
                k,
                Lhs::Strided(a, a_layout),
                Rhs::Packed(&b.0),
                c,
                ldc,
                alpha,
                beta,
                epilogue,
                threads(parallelism),
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = false;
        done
    }
    unsafe fn kernel(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        a_layout: Layout,
        b: *const f32,
        b_layout: Layout,
        c: *mut f32,
        c_layout: Layout,
        alpha: f32,
        beta: f32,
        parallelism: Parallelism,
    ) {
        #[cfg(all(feature = "accelerate", target_os = "macos"))]
        if accelerate::sgemm(m, n, k, a, a_layout, b, b_layout, c, c_layout, alpha, beta) {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if super::sgemm_avx512::sgemm(m, n, k, a, a_layout, b, b_layout, c, c_layout, alpha, beta, threads(parallelism))
        {
            return;
        }
        crate_gemm(m, n, k, a, a_layout, b, b_layout, c, c_layout, alpha, beta, parallelism)
    }
}

impl Float for f64 {
    #[inline]
    fn as_f32(self) -> f32 {
        self as f32
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    fn activate(values: &mut [f64], activation: &UnaryOp) {
        values.iter_mut().for_each(|v| *v = crate::ops::activation::apply_f64(activation, *v));
    }
    unsafe fn kernel(
        m: usize,
        n: usize,
        k: usize,
        a: *const f64,
        a_layout: Layout,
        b: *const f64,
        b_layout: Layout,
        c: *mut f64,
        c_layout: Layout,
        alpha: f64,
        beta: f64,
        parallelism: Parallelism,
    ) {
        crate_gemm(m, n, k, a, a_layout, b, b_layout, c, c_layout, alpha, beta, parallelism)
    }
}

impl Float for half::f16 {
    #[inline]
    fn as_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn activate(values: &mut [half::f16], activation: &UnaryOp) {
        activate_via_f32(values, activation)
    }
    unsafe fn kernel(
        m: usize,
        n: usize,
        k: usize,
        a: *const half::f16,
        a_layout: Layout,
        b: *const half::f16,
        b_layout: Layout,
        c: *mut half::f16,
        c_layout: Layout,
        alpha: half::f16,
        beta: half::f16,
        parallelism: Parallelism,
    ) {
        crate_gemm(m, n, k, a, a_layout, b, b_layout, c, c_layout, alpha, beta, parallelism)
    }
}

/// `c ← alpha·a·b + beta·c` for an `m`×`k` `a` and a `k`×`n` `b`. When `beta` is
/// zero `c` is not read, so it may hold stale data (even NaNs).
///
/// # Safety
/// Each pointer must be valid for the span its layout gives its matrix
/// ([`Layout::span`]), `c` must not alias `a` or `b`, and no other thread may
/// touch the elements of `c` the layout reaches during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_raw<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    a_layout: Layout,
    b: *const T,
    b_layout: Layout,
    c: *mut T,
    c_layout: Layout,
    alpha: T,
    beta: T,
    parallelism: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == T::zero() {
        // An empty sum: only the beta term is left. Handled here so no backend
        // has to agree on what it does with k == 0.
        for i in 0..m {
            for j in 0..n {
                let p = c.add(i * c_layout.row + j * c_layout.col);
                *p = if beta == T::zero() { T::zero() } else { beta * *p };
            }
        }
        return;
    }
    T::kernel(m, n, k, a, a_layout, b, b_layout, c, c_layout, alpha, beta, parallelism)
}

/// `c ← alpha·a·b + beta·c` on slices; see [`gemm_raw`]. Panics if a layout
/// reaches past its slice: callers derive layouts from shapes they have checked,
/// so that is a bug in the caller, not bad input.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_layout: Layout,
    b: &[T],
    b_layout: Layout,
    c: &mut [T],
    c_layout: Layout,
    alpha: T,
    beta: T,
    parallelism: Parallelism,
) {
    assert!(a_layout.span(m, k) <= a.len(), "gemm: A {m}x{k} {a_layout:?} overruns {} elements", a.len());
    assert!(b_layout.span(k, n) <= b.len(), "gemm: B {k}x{n} {b_layout:?} overruns {} elements", b.len());
    assert!(c_layout.span(m, n) <= c.len(), "gemm: C {m}x{n} {c_layout:?} overruns {} elements", c.len());
    // SAFETY: the spans were checked above; `c` is borrowed mutably, so it aliases nothing.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            a.as_ptr(),
            a_layout,
            b.as_ptr(),
            b_layout,
            c.as_mut_ptr(),
            c_layout,
            alpha,
            beta,
            parallelism,
        )
    }
}

/// The f32 product: `c ← alpha·a·b + beta·c`, `c` unread when `beta` is zero.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_layout: Layout,
    b: &[f32],
    b_layout: Layout,
    c: &mut [f32],
    c_layout: Layout,
    alpha: f32,
    beta: f32,
    parallelism: Parallelism,
) {
    gemm(m, n, k, a, a_layout, b, b_layout, c, c_layout, alpha, beta, parallelism)
}

/// `c ← a·b` for integer types, wrapping on overflow as ONNX's integer MatMul
/// does in practice. A plain i-p-j loop: integer products are rare and small.
#[allow(clippy::too_many_arguments)]
pub fn gemm_wrapping<T: Copy + Zero + WrappingAdd + WrappingMul>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_layout: Layout,
    b: &[T],
    b_layout: Layout,
    c: &mut [T],
    c_layout: Layout,
) {
    for i in 0..m {
        for j in 0..n {
            c[i * c_layout.row + j * c_layout.col] = T::zero();
        }
        for p in 0..k {
            let av = a[i * a_layout.row + p * a_layout.col];
            for j in 0..n {
                let dst = &mut c[i * c_layout.row + j * c_layout.col];
                *dst = dst.wrapping_add(&av.wrapping_mul(&b[p * b_layout.row + j * b_layout.col]));
            }
        }
    }
}

/// Applies a fused activation to a run of outputs.
#[inline]
pub fn activate<T: Float>(values: &mut [T], activation: &UnaryOp) {
    T::activate(values, activation)
}

/// f16 activations pass through a small f32 buffer on the stack.
fn activate_via_f32<T: Float>(values: &mut [T], activation: &UnaryOp) {
    const CHUNK: usize = 256;
    let mut buf = [0f32; CHUNK];
    for chunk in values.chunks_mut(CHUNK) {
        let tmp = &mut buf[..chunk.len()];
        for (t, v) in tmp.iter_mut().zip(chunk.iter()) {
            *t = v.as_f32();
        }
        crate::ops::activation::apply_slice_f32(activation, tmp);
        for (v, t) in chunk.iter_mut().zip(tmp.iter()) {
            *v = T::from_f32(*t);
        }
    }
}

/// Adds a per-row bias (`bias[i]` to every element of row `i`), then applies
/// the activation, in one pass per row. `c` holds consecutive rows of `cols`
/// elements.
pub fn bias_rows_then_activate<T: Float>(c: &mut [T], cols: usize, bias: Option<&[T]>, activation: Option<&UnaryOp>) {
    if cols == 0 || (bias.is_none() && activation.is_none()) {
        return;
    }
    for (i, row) in c.chunks_exact_mut(cols).enumerate() {
        T::add_then_activate(row, bias.map(|b| b[i]), None, activation);
    }
}

/// Adds a per-column bias (`bias[j]` to column `j` of every row), then applies
/// the activation, in one pass per row. `c` holds consecutive rows of
/// `bias.len()` elements (or of `cols` when there is no bias).
pub fn bias_cols_then_activate<T: Float>(c: &mut [T], cols: usize, bias: Option<&[T]>, activation: Option<&UnaryOp>) {
    if cols == 0 || (bias.is_none() && activation.is_none()) {
        return;
    }
    for row in c.chunks_exact_mut(cols) {
        T::add_then_activate(row, None, bias, activation);
    }
}

#[cfg(all(feature = "accelerate", target_os = "macos"))]
mod accelerate {
    use super::Layout;
    use std::os::raw::c_int;

    const ROW_MAJOR: c_int = 101;
    const NO_TRANS: c_int = 111;
    const TRANS: c_int = 112;

    #[link(name = "Accelerate", kind = "framework")]
    extern "C" {
        fn cblas_sgemm(
            order: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
    }

    /// A row-major BLAS operand for a `rows`×`cols` layout: (transpose flag,
    /// leading dimension), if the layout has a unit stride BLAS accepts.
    fn operand(layout: Layout, rows: usize, cols: usize) -> Option<(c_int, c_int)> {
        if layout.col == 1 && layout.row >= cols.max(1) {
            Some((NO_TRANS, c_int::try_from(layout.row).ok()?))
        } else if layout.row == 1 && layout.col >= rows.max(1) {
            Some((TRANS, c_int::try_from(layout.col).ok()?))
        } else {
            None
        }
    }

    /// Runs the product on Accelerate (the AMX units on Apple Silicon). Returns
    /// false, having done nothing, when a layout or size does not fit cblas.
    ///
    /// # Safety
    /// As [`super::gemm_raw`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn sgemm(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        a_layout: Layout,
        b: *const f32,
        b_layout: Layout,
        c: *mut f32,
        c_layout: Layout,
        alpha: f32,
        beta: f32,
    ) -> bool {
        let (Some((ta, lda)), Some((tb, ldb))) = (operand(a_layout, m, k), operand(b_layout, k, n)) else {
            return false;
        };
        let Some((NO_TRANS, ldc)) = operand(c_layout, m, n) else {
            return false;
        };
        let (Ok(mi), Ok(ni), Ok(ki)) = (c_int::try_from(m), c_int::try_from(n), c_int::try_from(k)) else {
            return false;
        };
        if beta == 0.0 {
            // BLAS reads C even when beta is zero (0·NaN = NaN); our contract says
            // stale contents must not leak through.
            for i in 0..m {
                std::ptr::write_bytes(c.add(i * c_layout.row), 0, n);
            }
        }
        cblas_sgemm(ROW_MAJOR, ta, tb, mi, ni, ki, alpha, a, lda, b, ldb, beta, c, ldc);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn naive(m: usize, n: usize, k: usize, a: &[f64], al: Layout, b: &[f64], bl: Layout) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * al.row + p * al.col] * b[p * bl.row + j * bl.col]).sum();
            }
        }
        c
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Where the AVX-512 kernel is missing, products go to the `gemm` crate on
    /// the rayon pool the team lends its cores to.
    #[test]
    fn crate_products_run_on_lent_cores() {
        let (m, n, k) = (96, 80, 128);
        let (a, b) = (values(m * k, 4), values(k * n, 5));
        let mut c = vec![0.0f32; m * n];
        let team = crate::team::Team::new(2, "test").unwrap();
        team.run(|| {
            let par = parallelism(m, n, k);
            assert!(matches!(par, Parallelism::Rayon(2)));
            let (al, bl, cl) = (Layout::row_major(k), Layout::row_major(n), Layout::row_major(n));
            unsafe { crate_gemm(m, n, k, a.as_ptr(), al, b.as_ptr(), bl, c.as_mut_ptr(), cl, 1.0, 0.0, par) };
        });
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        let want = naive(m, n, k, &a64, Layout::row_major(k), &b64, Layout::row_major(n));
        for (got, want) in c.iter().zip(&want) {
            assert!((*got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "{got} vs {want}");
        }
    }

    #[test]
    fn every_transpose_and_beta() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 48, 300), (5, 0, 3), (4, 6, 0)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    for &(alpha, beta) in &[(1.0f32, 0.0f32), (0.5, 1.0), (2.0, -0.25)] {
                        let a = values(m * k, 1);
                        let b = values(k * n, 2);
                        let al = if ta { Layout::row_major(m).transposed() } else { Layout::row_major(k) };
                        let bl = if tb { Layout::row_major(k).transposed() } else { Layout::row_major(n) };
                        let c0 = values(m * n, 3);
                        let mut c = c0.clone();
                        sgemm(m, n, k, &a, al, &b, bl, &mut c, Layout::row_major(n), alpha, beta, parallelism(m, n, k));
                        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
                        let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
                        let want = naive(m, n, k, &a64, al, &b64, bl);
                        for i in 0..m * n {
                            let w = alpha as f64 * want[i] + beta as f64 * c0[i] as f64;
                            assert!(
                                (c[i] as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                                "{m}x{n}x{k} {ta} {tb}: {} vs {w}",
                                c[i]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_stale_nans() {
        let a = values(6, 4);
        let b = values(6, 5);
        let mut c = vec![f32::NAN; 4];
        sgemm(
            2,
            2,
            3,
            &a,
            Layout::row_major(3),
            &b,
            Layout::row_major(2),
            &mut c,
            Layout::row_major(2),
            1.0,
            0.0,
            Parallelism::None,
        );
        assert!(c.iter().all(|v| v.is_finite()));
        let mut c = vec![f32::NAN; 4];
        sgemm(
            2,
            2,
            0,
            &a,
            Layout::row_major(0),
            &b,
            Layout::row_major(2),
            &mut c,
            Layout::row_major(2),
            1.0,
            0.0,
            Parallelism::None,
        );
        assert_eq!(c, vec![0.0; 4]);
    }

    #[test]
    fn f64_and_f16_products() {
        let (m, n, k) = (7, 9, 11);
        let a = values(m * k, 6);
        let b = values(k * n, 7);
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        let want = naive(m, n, k, &a64, Layout::row_major(k), &b64, Layout::row_major(n));
        let mut c = vec![0f64; m * n];
        gemm(
            m,
            n,
            k,
            &a64,
            Layout::row_major(k),
            &b64,
            Layout::row_major(n),
            &mut c,
            Layout::row_major(n),
            1.0,
            0.0,
            Parallelism::None,
        );
        assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-12));
        let ah: Vec<half::f16> = a.iter().map(|&v| half::f16::from_f32(v)).collect();
        let bh: Vec<half::f16> = b.iter().map(|&v| half::f16::from_f32(v)).collect();
        let mut ch = vec![half::f16::ZERO; m * n];
        let one = half::f16::ONE;
        gemm(
            m,
            n,
            k,
            &ah,
            Layout::row_major(k),
            &bh,
            Layout::row_major(n),
            &mut ch,
            Layout::row_major(n),
            one,
            half::f16::ZERO,
            Parallelism::None,
        );
        assert!(ch.iter().zip(&want).all(|(x, y)| (x.to_f64() - y).abs() < 2e-2));
    }

    #[test]
    fn integer_products_wrap() {
        let a = [1i32, 2, 3, 4];
        let b = [5i32, 6, 7, 8];
        let mut c = [0i32; 4];
        gemm_wrapping(2, 2, 2, &a, Layout::row_major(2), &b, Layout::row_major(2), &mut c, Layout::row_major(2));
        assert_eq!(c, [19, 22, 43, 50]);
        let mut c = [0u8; 1];
        gemm_wrapping(
            1,
            1,
            1,
            &[200u8],
            Layout::row_major(1),
            &[2u8],
            Layout::row_major(1),
            &mut c,
            Layout::row_major(1),
        );
        assert_eq!(c, [144]);
    }
}
