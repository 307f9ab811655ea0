//! f32 GEMM for x86-64 CPUs with AVX-512F.
//!
//! The `gemm` crate only uses AVX-512 behind its nightly feature, so on a stable
//! toolchain it runs 256-bit FMAs: half of what these cores can do. This is a
//! blocked GEMM in the classic (Goto/BLIS) shape:
//!
//! - A is read in panels `MR` = 12 rows tall, `KC` deep: packed per call, or
//!   once ahead of time for constant weights ([`PackedA`]);
//! - B is read in panels `NR` = 32 columns wide: packed per call, packed once
//!   ([`PackedB`]), or, when it has unit column stride and is small (an im2col
//!   tile), read in place;
//! - a 12×32 micro-kernel keeps its 24 accumulators in registers for the whole
//!   `KC` loop: one B row (two vectors) feeds 24 FMAs, A values are broadcast
//!   from memory. Edge tiles use smaller instances of the same kernel with
//!   masked loads and stores, so nothing is computed twice or copied.
//!
//! Threads split C into column or row bands; each packs what its band needs into
//! buffers kept per thread, so steady-state calls allocate nothing.

#![cfg(target_arch = "x86_64")]

use super::gemm::Layout;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Rows of C per micro-tile.
pub const MR: usize = 12;
/// Columns of C per micro-tile: two 16-lane vectors.
pub const NR: usize = 32;
/// Depth of one block: an A micro-panel (12·256·4 = 12 KiB) and a B micro-panel
/// (256·32·4 = 32 KiB) share the 48 KiB L1 of these cores.
const KC: usize = 256;
/// Rows of A per block: 144·256·4 = 144 KiB, well inside L2.
const MC: usize = 144;
/// Columns of B per block: 256·1024·4 = 1 MiB, half a core's L2.
const NC: usize = 1024;
/// B with unit column stride is read in place, unpacked, up to this many
/// elements (2 MiB: it then stays in L2, where packing would only copy it).
const DIRECT_B_MAX: usize = 512 * 1024;

/// Whether this CPU runs AVX-512F (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

thread_local! {
    /// Packing buffers for A blocks and B blocks, kept per thread between calls.
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// An `m`×`k` left operand packed once: `MR`-row panels over the full depth,
/// each `k` steps of `MR` values (zero past the last row).
#[derive(Debug)]
pub struct PackedA {
    data: Vec<f32>,
    m: usize,
    k: usize,
}

impl PackedA {
    /// Packs `a` (`m`×`k` with `layout`), or `None` on CPUs without AVX-512F.
    pub fn new(m: usize, k: usize, a: &[f32], layout: Layout) -> Option<PackedA> {
        if !available() || layout.span(m, k) > a.len() {
            return None;
        }
        let mut data = vec![0f32; m.next_multiple_of(MR) * k];
        for (panel, out) in data.chunks_exact_mut(MR * k.max(1)).enumerate().take(m.div_ceil(MR)) {
            let i0 = panel * MR;
            for i in 0..MR.min(m - i0) {
                for q in 0..k {
                    out[q * MR + i] = a[(i0 + i) * layout.row + q * layout.col];
                }
            }
        }
        Some(PackedA { data, m, k })
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    pub fn depth(&self) -> usize {
        self.k
    }
}

/// A `k`×`n` right operand packed once: `NR`-column panels over the full depth,
/// each `k` steps of `NR` values (zero past the last column).
#[derive(Debug)]
pub struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedB {
    /// Packs `b` (`k`×`n` with `layout`), or `None` on CPUs without AVX-512F.
    pub fn new(k: usize, n: usize, b: &[f32], layout: Layout) -> Option<PackedB> {
        if !available() || layout.span(k, n) > b.len() {
            return None;
        }
        let mut data = vec![0f32; n.next_multiple_of(NR) * k];
        for (panel, out) in data.chunks_exact_mut(NR * k.max(1)).enumerate().take(n.div_ceil(NR)) {
            let j0 = panel * NR;
            for q in 0..k {
                for j in 0..NR.min(n - j0) {
                    out[q * NR + j] = b[q * layout.row + (j0 + j) * layout.col];
                }
            }
        }
        Some(PackedB { data, k, n })
    }

    pub fn depth(&self) -> usize {
        self.k
    }

    pub fn cols(&self) -> usize {
        self.n
    }
}

/// How the kernel reaches A.
#[derive(Clone, Copy)]
pub enum Lhs<'a> {
    Strided(&'a [f32], Layout),
    Packed(&'a PackedA),
}

/// How the kernel reaches B.
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    Strided(&'a [f32], Layout),
    Packed(&'a PackedB),
}

#[derive(Clone, Copy)]
enum A {
    Strided(*const f32, Layout),
    /// Full-depth panels: panel `i / MR` starts at `i / MR · k · MR`.
    Packed(*const f32),
}

#[derive(Clone, Copy)]
enum B {
    Strided(*const f32, Layout),
    /// Unit column stride, read in place with row stride `ld`.
    Direct(*const f32, usize),
    /// Full-depth panels: panel `j / NR` starts at `j / NR · k · NR`.
    Packed(*const f32),
}

/// One product's operands, as raw parts so bands can go to other threads.
#[derive(Clone, Copy)]
struct Problem {
    k: usize,
    a: A,
    b: B,
    c: *mut f32,
    /// Row stride of C; its column stride is 1.
    ldc: usize,
    alpha: f32,
    beta: f32,
}

// SAFETY: a Problem is only shared between the threads of one call, which write
// disjoint bands of C and only read A and B.
unsafe impl Send for Problem {}
unsafe impl Sync for Problem {}

/// `c ← alpha·a·b + beta·c` on strided operands (c unread when beta is 0).
/// Returns false, having done nothing, when the CPU lacks AVX-512F or C has no
/// unit stride.
///
/// # Safety
/// As [`super::gemm::gemm_raw`]; additionally `m`, `n` and `k` are non-zero.
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
    threads: usize,
) -> bool {
    if !available() {
        return false;
    }
    // The kernel writes rows of C; a column-major C is the transposed product.
    let (m, n, a, a_layout, b, b_layout, ldc) = if c_layout.col == 1 || n == 1 {
        (m, n, a, a_layout, b, b_layout, c_layout.row)
    } else if c_layout.row == 1 || m == 1 {
        (n, m, b, b_layout.transposed(), a, a_layout.transposed(), c_layout.col)
    } else {
        return false;
    };
    let b = if b_layout.col == 1 && k * b_layout.row <= DIRECT_B_MAX {
        B::Direct(b, b_layout.row)
    } else {
        B::Strided(b, b_layout)
    };
    run(m, n, Problem { k, a: A::Strided(a, a_layout), b, c, ldc, alpha, beta }, threads);
    true
}

/// `c ← alpha·a·b + beta·c` with either operand possibly pre-packed; C is
/// row-major with row stride `ldc`. Returns false when the CPU lacks AVX-512F
/// (only possible without packed operands, which need it to exist).
///
/// # Safety
/// Strided operands and `c` must be valid for the spans their layouts give an
/// `m`×`k`, `k`×`n`, `m`×`n` product (`c` with layout row `ldc`, column 1), `c`
/// must not alias them, and nothing else may touch those elements of `c`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_with(
    m: usize,
    n: usize,
    k: usize,
    a: Lhs,
    b: Rhs,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    threads: usize,
) -> bool {
    if !available() {
        return false;
    }
    let a = match a {
        Lhs::Strided(s, l) => A::Strided(s.as_ptr(), l),
        Lhs::Packed(p) => {
            assert!(p.m == m && p.k == k, "packed A is {}x{}, the product needs {m}x{k}", p.m, p.k);
            A::Packed(p.data.as_ptr())
        }
    };
    let b = match b {
        Rhs::Strided(s, l) if l.col == 1 && k * l.row <= DIRECT_B_MAX => B::Direct(s.as_ptr(), l.row),
        Rhs::Strided(s, l) => B::Strided(s.as_ptr(), l),
        Rhs::Packed(p) => {
            assert!(p.k == k && p.n == n, "packed B is {}x{}, the product needs {k}x{n}", p.k, p.n);
            B::Packed(p.data.as_ptr())
        }
    };
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        // An empty sum: only the beta term is left.
        for i in 0..m {
            let row = std::slice::from_raw_parts_mut(c.add(i * ldc), n);
            row.iter_mut().for_each(|v| *v = if beta == 0.0 { 0.0 } else { beta * *v });
        }
        return true;
    }
    run(m, n, Problem { k, a, b, c, ldc, alpha, beta }, threads);
    true
}

fn run(m: usize, n: usize, p: Problem, threads: usize) {
    let threads = threads.max(1);
    if threads == 1 {
        band(&p, 0, m, 0, n);
        return;
    }
    // Bands along n keep every thread's tiles full width; short wide products
    // (few rows) split along n, tall narrow ones along m.
    if n >= threads * NR * 2 || n >= m {
        let cols = n.div_ceil(threads).next_multiple_of(NR);
        rayon::scope(|s| {
            for j0 in (0..n).step_by(cols) {
                let p = &p;
                s.spawn(move |_| band(p, 0, m, j0, (j0 + cols).min(n)));
            }
        });
    } else {
        let rows = m.div_ceil(threads).next_multiple_of(MR);
        rayon::scope(|s| {
            for i0 in (0..m).step_by(rows) {
                let p = &p;
                s.spawn(move |_| band(p, i0, (i0 + rows).min(m), 0, n));
            }
        });
    }
}

/// Computes rows `i0..i1`, columns `j0..j1` of C on the calling thread.
fn band(p: &Problem, i0: usize, i1: usize, j0: usize, j1: usize) {
    PACK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let (pa, pb) = &mut *bufs;
            // SAFETY: the caller of `sgemm*` vouches for the operands; bands are disjoint.
            unsafe { band_with(p, i0, i1, j0, j1, pa, pb) }
        }
        // Only reachable if a band ever ran inside another on one thread.
        Err(_) => unsafe { band_with(p, i0, i1, j0, j1, &mut Vec::new(), &mut Vec::new()) },
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn band_with(p: &Problem, i0: usize, i1: usize, j0: usize, j1: usize, pa: &mut Vec<f32>, pb: &mut Vec<f32>) {
    let kc_max = KC.min(p.k);
    if matches!(p.b, B::Strided(..)) {
        let len = kc_max * NC.min((j1 - j0).next_multiple_of(NR));
        if pb.len() < len {
            pb.resize(len, 0.0);
        }
    }
    if matches!(p.a, A::Strided(..)) {
        let len = kc_max * MC.min((i1 - i0).next_multiple_of(MR));
        if pa.len() < len {
            pa.resize(len, 0.0);
        }
    }
    for jc in (j0..j1).step_by(NC) {
        let nc = NC.min(j1 - jc);
        for pc in (0..p.k).step_by(KC) {
            let kc = KC.min(p.k - pc);
            // (start of the block's first panel, distance between panels, step per k)
            let (b0, b_panel, b_step) = match p.b {
                B::Packed(ptr) => (ptr.add(jc * p.k + pc * NR), p.k * NR, NR),
                B::Direct(ptr, ld) => (ptr.add(pc * ld + jc), NR, ld),
                B::Strided(ptr, layout) => {
                    pack_b(ptr, layout, pc, kc, jc, nc, pb);
                    (pb.as_ptr(), kc * NR, NR)
                }
            };
            // The first block of k applies beta; later ones add to what it wrote.
            let (beta, accumulate) = if pc == 0 { (p.beta, false) } else { (1.0, true) };
            for ic in (i0..i1).step_by(MC) {
                let mc = MC.min(i1 - ic);
                let (a0, a_panel) = match p.a {
                    A::Packed(ptr) => (ptr.add(ic * p.k + pc * MR), p.k * MR),
                    A::Strided(ptr, layout) => {
                        pack_a(ptr, layout, ic, mc, pc, kc, pa);
                        (pa.as_ptr(), kc * MR)
                    }
                };
                for jr in (0..nc).step_by(NR) {
                    let cols = NR.min(nc - jr);
                    let b = b0.add(jr / NR * b_panel);
                    for ir in (0..mc).step_by(MR) {
                        let rows = MR.min(mc - ir);
                        let a = a0.add(ir / MR * a_panel);
                        let c = p.c.add((ic + ir) * p.ldc + jc + jr);
                        tile(rows, cols, kc, a, b, b_step, c, p.ldc, p.alpha, beta, accumulate);
                    }
                }
            }
        }
    }
}

/// Packs rows `pc..pc+kc`, columns `jc..jc+nc` of B into `NR`-wide panels, each
/// `kc` rows of `NR` values (zero past the last column).
unsafe fn pack_b(b: *const f32, layout: Layout, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]) {
    let Layout { row: rs, col: cs } = layout;
    for jr in (0..nc).step_by(NR) {
        let cols = NR.min(nc - jr);
        let panel = &mut out[jr * kc..(jr + NR) * kc];
        for r in 0..kc {
            let dst = &mut panel[r * NR..(r + 1) * NR];
            let src = b.add((pc + r) * rs + (jc + jr) * cs);
            if cs == 1 {
                std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), cols);
            } else {
                for (j, d) in dst[..cols].iter_mut().enumerate() {
                    *d = *src.add(j * cs);
                }
            }
            dst[cols..].fill(0.0);
        }
    }
}

/// Packs rows `ic..ic+mc`, columns `pc..pc+kc` of A into `MR`-tall panels, each
/// `kc` columns of `MR` values (zero past the last row).
unsafe fn pack_a(a: *const f32, layout: Layout, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [f32]) {
    let Layout { row: rs, col: cs } = layout;
    for ir in (0..mc).step_by(MR) {
        let rows = MR.min(mc - ir);
        let panel = &mut out[ir * kc..(ir + MR) * kc];
        if rows < MR {
            panel.fill(0.0);
        }
        if rs == 1 {
            // Column-major A: each column of the panel is contiguous.
            for q in 0..kc {
                let src = a.add((ic + ir) + (pc + q) * cs);
                std::ptr::copy_nonoverlapping(src, panel.as_mut_ptr().add(q * MR), rows);
            }
        } else {
            for i in 0..rows {
                let src = a.add((ic + ir + i) * rs + pc * cs);
                for q in 0..kc {
                    *panel.get_unchecked_mut(q * MR + i) = *src.add(q * cs);
                }
            }
        }
    }
}

/// Dispatches one `rows`×`cols` tile to the kernel instance of its size.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    rows: usize,
    cols: usize,
    kc: usize,
    a: *const f32,
    b: *const f32,
    b_step: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    accumulate: bool,
) {
    // Lanes of the last vector that are real columns.
    let tail = cols - (cols - 1) / 16 * 16;
    let mask: __mmask16 = if tail == 16 { 0xFFFF } else { (1u16 << tail) - 1 };
    let s = Store { c, ldc, alpha, beta, accumulate, mask };
    macro_rules! go {
        ($r:literal) => {
            if cols > 16 {
                kernel::<$r, 2>(kc, a, b, b_step, s)
            } else {
                kernel::<$r, 1>(kc, a, b, b_step, s)
            }
        };
    }
    match rows {
        12 => go!(12),
        11 => go!(11),
        10 => go!(10),
        9 => go!(9),
        8 => go!(8),
        7 => go!(7),
        6 => go!(6),
        5 => go!(5),
        4 => go!(4),
        3 => go!(3),
        2 => go!(2),
        _ => go!(1),
    }
}

/// Where and how a micro-tile lands in C.
#[derive(Clone, Copy)]
struct Store {
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    /// Add to C (a later block of k) rather than apply beta.
    accumulate: bool,
    /// Lanes of each row's last vector that are inside C.
    mask: __mmask16,
}

/// The micro-kernel: an `R`×`16·V` tile of C from `kc` steps of A (`MR` apart)
/// and B (`b_step` apart). Each row's last vector of B is loaded, and of C loaded
/// and stored, under the mask, so in-place B and the edges of C are never overrun.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize, const V: usize>(kc: usize, a: *const f32, b: *const f32, b_step: usize, s: Store) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm512_setzero_ps(); V];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = if v + 1 == V { _mm512_maskz_loadu_ps(s.mask, b.add(16 * v)) } else { _mm512_loadu_ps(b.add(16 * v)) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(i));
            for (x, &bx) in row.iter_mut().zip(&bv) {
                *x = _mm512_fmadd_ps(av, bx, *x);
            }
        }
        a = a.add(MR);
        b = b.add(b_step);
    }
    let alpha = _mm512_set1_ps(s.alpha);
    let beta = _mm512_set1_ps(s.beta);
    for (i, row) in acc.iter().enumerate() {
        let dst = s.c.add(i * s.ldc);
        for (v, &x) in row.iter().enumerate() {
            let m = if v + 1 == V { s.mask } else { 0xFFFF };
            let p = dst.add(16 * v);
            let mut r = _mm512_mul_ps(x, alpha);
            if s.accumulate {
                r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, p));
            } else if s.beta != 0.0 {
                r = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p), beta, r);
            }
            _mm512_mask_storeu_ps(p, m, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::ops::testing::Rng::new(seed);
        (0..len).map(|_| rng.signed_unit() as f32).collect()
    }

    fn naive(m: usize, n: usize, k: usize, a: &[f32], al: Layout, b: &[f32], bl: Layout) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] =
                    (0..k).map(|p| a[i * al.row + p * al.col] as f64 * b[p * bl.row + j * bl.col] as f64).sum();
            }
        }
        c
    }

    #[test]
    fn packed_and_strided_operands_agree_with_naive() {
        if !available() {
            return;
        }
        // Sizes straddling every block edge: MR, NR, KC, MC, NC.
        for &(m, n, k) in &[(1, 1, 1), (13, 33, 7), (25, 70, 300), (150, 1100, 260), (12, 32, 256), (300, 17, 513)] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            for (al, bl) in [
                (Layout::row_major(k), Layout::row_major(n)),
                (Layout::row_major(m).transposed(), Layout::row_major(k).transposed()),
            ] {
                let want = naive(m, n, k, &a, al, &b, bl);
                let pa = PackedA::new(m, k, &a, al).unwrap();
                let pb = PackedB::new(k, n, &b, bl).unwrap();
                for (lhs, rhs) in [
                    (Lhs::Strided(&a, al), Rhs::Strided(&b, bl)),
                    (Lhs::Packed(&pa), Rhs::Strided(&b, bl)),
                    (Lhs::Strided(&a, al), Rhs::Packed(&pb)),
                    (Lhs::Packed(&pa), Rhs::Packed(&pb)),
                ] {
                    for threads in [1, 3] {
                        let c0 = values(m * n, 3);
                        let mut c = c0.clone();
                        unsafe { sgemm_with(m, n, k, lhs, rhs, c.as_mut_ptr(), n, 0.5, 2.0, threads) };
                        for i in 0..m * n {
                            let w = 0.5 * want[i] + 2.0 * c0[i] as f64;
                            assert!(
                                (c[i] as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                                "{m}x{n}x{k} at {i}: {} vs {w}",
                                c[i]
                            );
                        }
                    }
                }
            }
        }
    }
}
