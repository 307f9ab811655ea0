//! f32 GEMM for x86-64 CPUs with AVX-512F.
//!
//! The `gemm` crate only uses AVX-512 behind its nightly feature, so on a stable
//! toolchain it runs 256-bit FMAs: half of what these cores can do. This is a
//! blocked GEMM in the classic (Goto/BLIS) shape:
//!
//! - A is read in panels `MR` = 12 rows tall, `KC` deep: in place when its rows
//!   are contiguous (the kernel broadcasts from 12 row streams, so packing
//!   would only copy it), packed once ahead of time for constant weights
//!   ([`PackedA`]), or packed per call otherwise;
//! - B is read in panels `NR` = 32 columns wide: packed per call, packed once
//!   ([`PackedB`]), or, when it has unit column stride and is small (an im2col
//!   tile), read in place;
//! - a 12×32 micro-kernel keeps its 24 accumulators in registers for the whole
//!   `KC` loop: one B row (two vectors) feeds 24 FMAs, A values are broadcast
//!   from memory. Edge tiles use smaller instances of the same kernel with
//!   masked loads and stores, so nothing is computed twice or copied.
//!
//! A caller's [`GemmEpilogue`] is applied as C is written: biases, a residual
//! and a Relu or Clip in registers as the last block of k is stored, so C is
//! written once; other activations and the caller's finish on each block of C
//! as soon as it is final, on the thread that computed it, while it is still in
//! that core's L2 (one more pass over C after the product would run on one
//! thread and from memory).
//!
//! Threads split C into column or row bands (handed out through rayon's
//! fork-join, which keeps its jobs on the stack); each packs what its band needs
//! into buffers kept per thread, so steady-state calls allocate nothing.

#![cfg(target_arch = "x86_64")]

use super::gemm::{Finish, GemmEpilogue, Layout};
use smelt_ir::UnaryOp;
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

/// Whether a `k`×`n` B with unit column stride and row stride `ld` is read in
/// place for `m` rows of A: when it stays in L2, or when A has no more than one
/// block of rows, so each element of B is read once anyway and packing would
/// copy it for nothing. (ResNet-50's 256→64 1×1 convolutions on 56×56 packed a
/// 1 MiB block of B for each 64-row pass.)
fn b_in_place(m: usize, k: usize, ld: usize) -> bool {
    k * ld <= DIRECT_B_MAX || m <= MC
}

/// Bands of C per thread in a parallel product (see [`run`]).
const BANDS_PER_THREAD: usize = 4;

/// Every band of rows reads all of B. A B read in place of more elements than
/// this (512 KiB, half of a 1 MiB L2) comes from L3 again for each band, so a
/// product split by rows then makes one band per thread. ResNet-50's 1024→256
/// 1×1 layers on 14×14 maps at batch 1 (B 784 KiB, one 196-column product
/// since `conv::TilePlan` stopped cutting it in two) took 0.25–0.26 ms each
/// against 0.32–0.33 with four bands per thread on two 98-column tiles, its
/// 1024→512 one 0.48–0.49 against 0.59–0.60 (`SMELT_CPU_PROFILE=all`,
/// alternated twice).
const BANDED_B_MAX: usize = 128 * 1024;

/// Whether this CPU runs AVX-512F (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

thread_local! {
    /// Packing buffers for A blocks and B blocks, kept per thread between calls.
    /// Each is sized for the largest block the first time it is needed, so it
    /// grows once per thread, whatever bands later calls deal to that thread.
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
    /// Unit column stride, read in place with row stride `ld`.
    Direct(*const f32, usize),
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
struct Problem<'f> {
    k: usize,
    a: A,
    b: B,
    c: *mut f32,
    /// Row stride of C; its column stride is 1.
    ldc: usize,
    alpha: f32,
    beta: f32,
    epilogue: Fused<'f>,
}

/// A [`GemmEpilogue`] as the kernel applies it.
#[derive(Clone, Copy)]
struct Fused<'f> {
    /// Added in registers as the last block of k is stored (null: none): a
    /// value per row of C, a value per column, an array laid out as C.
    row_bias: *const f32,
    col_bias: *const f32,
    residual: *const f32,
    /// Then clamped to `[min, max]` in registers (a Relu or Clip; ±∞ otherwise).
    min: f32,
    max: f32,
    /// Per finished block of C, after the above: an activation other than a
    /// clamp, then the caller's finish.
    activation: Option<&'f UnaryOp>,
    finish: Option<Finish<'f, f32>>,
}

impl<'f> Fused<'f> {
    const NONE: Fused<'static> = Fused {
        row_bias: std::ptr::null(),
        col_bias: std::ptr::null(),
        residual: std::ptr::null(),
        min: f32::NEG_INFINITY,
        max: f32::INFINITY,
        activation: None,
        finish: None,
    };

    /// Checks `e`'s operands against an `m`×`n` C with row stride `ldc`.
    fn new(e: &GemmEpilogue<'f, f32>, m: usize, n: usize, ldc: usize) -> Fused<'f> {
        let ptr = |v: Option<&[f32]>, len: usize, what: &str| match v {
            Some(v) => {
                assert!(v.len() >= len, "GEMM epilogue: {what} has {} elements, C needs {len}", v.len());
                v.as_ptr()
            }
            None => std::ptr::null(),
        };
        let (row_bias, col_bias) = (ptr(e.row_bias, m, "row bias"), ptr(e.col_bias, n, "column bias"));
        let residual = ptr(e.residual, (m - 1) * ldc + n, "residual");
        let clamp = e.activation.and_then(super::activation::clamp_bounds);
        let activation = e.activation.filter(|_| clamp.is_none());
        let (min, max) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        Fused { row_bias, col_bias, residual, min, max, activation, finish: e.finish }
    }

    /// Whether the kernel has anything to apply in registers.
    fn in_registers(&self) -> bool {
        let clamps = self.min != f32::NEG_INFINITY || self.max != f32::INFINITY;
        !self.row_bias.is_null() || !self.col_bias.is_null() || !self.residual.is_null() || clamps
    }

    /// The in-register part for the tile whose first element is C's (i, j).
    unsafe fn at(&self, i: usize, j: usize, ldc: usize) -> TileFused {
        let shift = |p: *const f32, by: usize| if p.is_null() { p } else { p.add(by) };
        TileFused {
            row_bias: shift(self.row_bias, i),
            col_bias: shift(self.col_bias, j),
            residual: shift(self.residual, i * ldc + j),
            min: self.min,
            max: self.max,
        }
    }
}

// SAFETY: a Problem is only shared between the threads of one call, which write
// disjoint bands of C and only read A and B.
unsafe impl Send for Problem<'_> {}
unsafe impl Sync for Problem<'_> {}

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
    let b = if b_layout.col == 1 && b_in_place(m, k, b_layout.row) {
        B::Direct(b, b_layout.row)
    } else {
        B::Strided(b, b_layout)
    };
    run(m, n, Problem { k, a: lhs(a, a_layout), b, c, ldc, alpha, beta, epilogue: Fused::NONE }, threads);
    true
}

/// `c ← alpha·a·b + beta·c` with either operand possibly pre-packed, then
/// `epilogue` on C; C is row-major with row stride `ldc`. Returns false, having
/// done nothing, when the CPU lacks AVX-512F (only possible without packed
/// operands, which need it to exist).
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
    epilogue: &GemmEpilogue<f32>,
    threads: usize,
) -> bool {
    if !available() {
        return false;
    }
    let a = match a {
        Lhs::Strided(s, l) => lhs(s.as_ptr(), l),
        Lhs::Packed(p) => {
            assert!(p.m == m && p.k == k, "packed A is {}x{}, the product needs {m}x{k}", p.m, p.k);
            A::Packed(p.data.as_ptr())
        }
    };
    let b = match b {
        Rhs::Strided(s, l) if l.col == 1 && b_in_place(m, k, l.row) => B::Direct(s.as_ptr(), l.row),
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
            epilogue.apply_row(i, ldc, row);
        }
        return true;
    }
    let epilogue = Fused::new(epilogue, m, n, ldc);
    run(m, n, Problem { k, a, b, c, ldc, alpha, beta, epilogue }, threads);
    true
}

/// A strided left operand: in place when its rows are contiguous.
fn lhs(a: *const f32, layout: Layout) -> A {
    if layout.col == 1 {
        A::Direct(a, layout.row)
    } else {
        A::Strided(a, layout)
    }
}

fn run(m: usize, n: usize, p: Problem, threads: usize) {
    let threads = threads.max(1);
    if threads == 1 {
        band(&p, 0, m, 0, n);
        return;
    }
    // More bands than threads, taken as threads come free: a thread that
    // starts late (woken from sleep, or sharing its core) then takes fewer, where
    // with one band each the whole product waits for it. BERT-base at batch 8
    // spent 7% less time in MatMul with 4 bands per thread than with 1, and 4%
    // less than with 2 or 8.
    let bands = threads * BANDS_PER_THREAD;
    let cols = n.div_ceil(bands).next_multiple_of(NR);
    let rows = m.div_ceil(bands).next_multiple_of(MR);
    // Split C the way whose largest band is the least work (bands are whole
    // panels, so one way may leave a short last band); on a tie, so
    // that the operand every band reads whole is the smaller one (column bands
    // share A, row bands share B).
    let (by_cols, by_rows) = (band_cost(m, cols.min(n)), band_cost(rows.min(m), n));
    // Bands go out as a parallel range (jobs on the stack), not as scope spawns,
    // which box every job: an allocation per band per call.
    let by_cols = by_cols < by_rows || (by_cols == by_rows && m <= n);
    let rows = match p.b {
        B::Direct(..) if !by_cols && p.k * n > BANDED_B_MAX => m.div_ceil(threads).next_multiple_of(MR),
        _ => rows,
    };
    if by_cols {
        crate::team::for_each(n.div_ceil(cols), |b| {
            let j0 = b * cols;
            band(&p, 0, m, j0, (j0 + cols).min(n));
        });
    } else {
        crate::team::for_each(m.div_ceil(rows), |b| {
            let i0 = b * rows;
            band(&p, i0, (i0 + rows).min(m), 0, n);
        });
    }
}

/// Micro-kernel work for the largest band, a `rows`×`cols` block of C, in units
/// of a full tile's k loop: a last column panel of up to 16 runs the half-width
/// kernel, at half the cost.
fn band_cost(rows: usize, cols: usize) -> usize {
    let half_panels = (cols / NR) * 2 + (cols % NR).div_ceil(16);
    rows.div_ceil(MR) * half_panels
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
    if matches!(p.b, B::Strided(..)) && pb.len() < KC * NC {
        pb.resize(KC * NC, 0.0);
    }
    if matches!(p.a, A::Strided(..)) && pa.len() < KC * MC {
        pa.resize(KC * MC, 0.0);
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
            // The first block of k applies beta; later ones add to what it wrote;
            // the last one applies the epilogue's in-register part.
            let (beta, accumulate) = if pc == 0 { (p.beta, false) } else { (1.0, true) };
            let last = pc + kc == p.k;
            let fused = last && p.epilogue.in_registers();
            for ic in (i0..i1).step_by(MC) {
                let mc = MC.min(i1 - ic);
                // (start of the block's first panel, distance between panels,
                // distance between rows within a panel)
                let (a0, a_panel, a_rows) = match p.a {
                    A::Packed(ptr) => (ptr.add(ic * p.k + pc * MR), p.k * MR, None),
                    A::Direct(ptr, ld) => (ptr.add(ic * ld + pc), MR * ld, Some(ld)),
                    A::Strided(ptr, layout) => {
                        pack_a(ptr, layout, ic, mc, pc, kc, pa);
                        (pa.as_ptr(), kc * MR, None)
                    }
                };
                for jr in (0..nc).step_by(NR) {
                    let cols = NR.min(nc - jr);
                    let b = b0.add(jr / NR * b_panel);
                    // The first two tiles of this panel each pull half of the
                    // next one toward L2, so its tiles do not start on cache
                    // misses: a packed B's next panel is contiguous (one line per
                    // step of k); an in-place B's is the next 32 columns of the
                    // same rows (a line per row and tile). In place, B is often
                    // a layer's input fresh from memory, in as many streams as
                    // rows: more than the hardware prefetcher follows.
                    let next = jr + NR < nc;
                    let direct = matches!(p.b, B::Direct(..));
                    let a_packed = matches!(p.a, A::Packed(_));
                    for ir in (0..mc).step_by(MR) {
                        let rows = MR.min(mc - ir);
                        let a = a0.add(ir / MR * a_panel);
                        let c = p.c.add((ic + ir) * p.ldc + jc + jr);
                        // A packed A (constant weights) comes from memory on the
                        // first pass over its block, and its micro-panels lie
                        // `k·MR` apart, so the hardware prefetcher starts each one
                        // cold: there the other tiles pull the next micro-panel
                        // (`kc` steps of `MR` values, under one line per step)
                        // toward L2. Elsewhere the prefetch goes to this B panel,
                        // already in L1: cheaper than a branch in the kernel's loop.
                        let (prefetch, prefetch_step) = match ir / MR {
                            t @ 0..=1 if next && direct => (b.add(NR + t * 16), b_step),
                            t @ 0..=1 if next => (b.add(b_panel + t * kc * NR / 2), 16),
                            // Past the last panel it points outside A: a prefetch of
                            // any address is harmless, and `wrapping_add` keeps the
                            // pointer arithmetic defined.
                            _ if a_packed && jr == 0 => (a.wrapping_add(a_panel), 16),
                            _ => (b, 16),
                        };
                        let b = BPanel { ptr: b, step: b_step, prefetch, prefetch_step, padded: !direct };
                        let fused = fused.then(|| p.epilogue.at(ic + ir, jc + jr, p.ldc));
                        let mask = last_vector_mask(cols);
                        let s = Store { c, ldc: p.ldc, alpha: p.alpha, beta, accumulate, mask, fused };
                        tile(rows, cols, kc, (a, a_rows), b, s);
                    }
                }
                let (activation, finish) = (p.epilogue.activation, p.epilogue.finish);
                if last && (activation.is_some() || finish.is_some()) {
                    for i in ic..ic + mc {
                        let row = std::slice::from_raw_parts_mut(p.c.add(i * p.ldc + jc), nc);
                        if let Some(act) = activation {
                            super::activation::apply_slice_f32(act, row);
                        }
                        if let Some(f) = finish {
                            f(i, jc, row);
                        }
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

/// Lanes of a `cols`-wide tile's last vector that are real columns.
fn last_vector_mask(cols: usize) -> __mmask16 {
    let tail = cols - (cols - 1) / 16 * 16;
    if tail == 16 {
        0xFFFF
    } else {
        (1u16 << tail) - 1
    }
}

/// Dispatches one `rows`×`cols` tile to the kernel instance of its size. `a` is
/// the A panel with its row stride when read in place, or `None` when packed;
/// `s` says where and how the tile is stored.
unsafe fn tile(rows: usize, cols: usize, kc: usize, (a, a_rows): (*const f32, Option<usize>), b: BPanel, s: Store) {
    // Masked loads of B cost throughput: only an in-place B's last panel needs them.
    let masked = !b.padded && s.mask != 0xFFFF;
    macro_rules! go {
        ($r:literal) => {
            match (cols > 16, masked, a_rows) {
                (true, false, None) => kernel::<$r, 2, false, _>(kc, PackedPanel(a), b, s),
                (true, true, None) => kernel::<$r, 2, true, _>(kc, PackedPanel(a), b, s),
                (false, false, None) => kernel::<$r, 1, false, _>(kc, PackedPanel(a), b, s),
                (false, true, None) => kernel::<$r, 1, true, _>(kc, PackedPanel(a), b, s),
                (true, false, Some(ld)) => kernel::<$r, 2, false, _>(kc, RowsPanel(a, ld), b, s),
                (true, true, Some(ld)) => kernel::<$r, 2, true, _>(kc, RowsPanel(a, ld), b, s),
                (false, false, Some(ld)) => kernel::<$r, 1, false, _>(kc, RowsPanel(a, ld), b, s),
                (false, true, Some(ld)) => kernel::<$r, 1, true, _>(kc, RowsPanel(a, ld), b, s),
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

/// One micro-panel of B as the kernel reads it.
#[derive(Clone, Copy)]
struct BPanel {
    ptr: *const f32,
    /// Elements between consecutive rows (steps of k).
    step: usize,
    /// Where to prefetch one 64-byte line per step of k into L2, and the
    /// elements between those lines.
    prefetch: *const f32,
    prefetch_step: usize,
    /// Rows are `NR` wide, zero past the last column: full-width loads are safe.
    padded: bool,
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
    /// The epilogue's in-register part, on the last block of k.
    fused: Option<TileFused>,
}

/// [`Fused`]'s in-register part, its pointers at one tile's first element.
#[derive(Clone, Copy)]
struct TileFused {
    row_bias: *const f32,
    col_bias: *const f32,
    residual: *const f32,
    min: f32,
    max: f32,
}

/// How the micro-kernel reads A's panel: value (row `i`, step `q`).
trait APanel: Copy {
    unsafe fn at(self, i: usize, q: usize) -> f32;
}

/// A packed panel: `MR` values per step of k.
#[derive(Clone, Copy)]
struct PackedPanel(*const f32);

impl APanel for PackedPanel {
    #[inline(always)]
    unsafe fn at(self, i: usize, q: usize) -> f32 {
        *self.0.add(q * MR + i)
    }
}

/// A panel read in place: row `i` starts at `ptr + i·ld`.
#[derive(Clone, Copy)]
struct RowsPanel(*const f32, usize);

impl APanel for RowsPanel {
    #[inline(always)]
    unsafe fn at(self, i: usize, q: usize) -> f32 {
        *self.0.add(i * self.1 + q)
    }
}

/// The micro-kernel: an `R`×`16·V` tile of C from `kc` steps of A and B. The
/// last vector of each row of C is loaded and stored under the mask, and with `M`
/// so is B's, so in-place B and the edges of C are never overrun. The k loop is
/// not unrolled: LLVM then interleaves the steps' broadcasts and spills
/// accumulators (measured 40% slower).
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize, const V: usize, const M: bool, P: APanel>(kc: usize, a: P, b: BPanel, s: Store) {
    // A residual comes from memory: ask for this tile's lines now, so they have
    // arrived when the store needs them (without this, batch-8 ResNet-50 ran
    // slower fused than with a pass over each block after).
    if let Some(f) = s.fused.filter(|f| !f.residual.is_null()) {
        for i in 0..R {
            for v in 0..V {
                _mm_prefetch::<_MM_HINT_T0>(f.residual.add(i * s.ldc + 16 * v) as *const i8);
            }
        }
    }
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for q in 0..kc {
        step::<R, V, M, P>(&mut acc, a, b, q, s.mask);
    }
    store(acc, s)
}

/// One step of k: a row of B times a column of A into the accumulators.
#[inline(always)]
unsafe fn step<const R: usize, const V: usize, const M: bool, P: APanel>(
    acc: &mut [[__m512; V]; R],
    a: P,
    b: BPanel,
    q: usize,
    mask: __mmask16,
) {
    let bv = load_b::<V, M>(b, q, mask);
    for (i, row) in acc.iter_mut().enumerate() {
        let av = _mm512_set1_ps(a.at(i, q));
        for (x, &bx) in row.iter_mut().zip(&bv) {
            *x = _mm512_fmadd_ps(av, bx, *x);
        }
    }
}

/// Row `q` of a B micro-panel (with `M`, the last vector under `mask`),
/// prefetching the `q`-th line of what comes next.
#[inline(always)]
unsafe fn load_b<const V: usize, const M: bool>(b: BPanel, q: usize, mask: __mmask16) -> [__m512; V] {
    _mm_prefetch::<_MM_HINT_T1>(b.prefetch.wrapping_add(q * b.prefetch_step) as *const i8);
    let row = b.ptr.add(q * b.step);
    let mut bv = [_mm512_setzero_ps(); V];
    for (v, x) in bv.iter_mut().enumerate() {
        *x = if M && v + 1 == V {
            _mm512_maskz_loadu_ps(mask, row.add(16 * v))
        } else {
            _mm512_loadu_ps(row.add(16 * v))
        };
    }
    bv
}

/// Writes a finished micro-tile: `alpha·acc`, plus `beta·C` or the partial sum
/// already in C, then (on the last block of k) the epilogue's biases, residual
/// and clamp. Always inlined into the kernel: as a call, its accumulators went
/// through memory (4% of BERT's time).
#[inline(always)]
unsafe fn store<const R: usize, const V: usize>(acc: [[__m512; V]; R], s: Store) {
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
            if let Some(f) = s.fused {
                r = fuse(r, f, i, 16 * v, s.ldc, m);
            }
            _mm512_mask_storeu_ps(p, m, r);
        }
    }
}

/// The epilogue's in-register part for the vector of C at (i, j) from the
/// tile's first element: the biases and the residual added in that order (as
/// [`GemmEpilogue::apply_row`] adds them), then the clamp, `max(min, r)` then
/// `min(max, r)`: each returns its second operand, r, when either is NaN, so
/// NaN passes through as in the graph's Relu and Clip.
#[inline(always)]
unsafe fn fuse(mut r: __m512, f: TileFused, i: usize, j: usize, ldc: usize, m: __mmask16) -> __m512 {
    if !f.row_bias.is_null() {
        r = _mm512_add_ps(r, _mm512_set1_ps(*f.row_bias.add(i)));
    }
    if !f.col_bias.is_null() {
        r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, f.col_bias.add(j)));
    }
    if !f.residual.is_null() {
        r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, f.residual.add(i * ldc + j)));
    }
    _mm512_min_ps(_mm512_set1_ps(f.max), _mm512_max_ps(_mm512_set1_ps(f.min), r))
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

    /// GFLOP/s at BERT-base's batch-8 shapes (activations in place, weights
    /// packed), 1 and 2 threads, best of 15: with one weight matrix reused
    /// (warm, in L3) and cycling through enough of them to leave L3 (cold, as
    /// in a model). `cargo test --release -p smelt-cpu calibrate_gemm -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn calibrate_gemm() {
        for &(m, k, n) in &[(1024, 768, 768), (1024, 768, 3072), (1024, 3072, 768)] {
            let a = values(m * k, 1);
            let copies = (64 << 20) / (4 * k * n) + 1;
            let packed: Vec<_> = (0..copies)
                .map(|i| PackedB::new(k, n, &values(k * n, 2 + i as u64), Layout::row_major(n)).unwrap())
                .collect();
            let mut c = vec![0f32; m * n];
            for threads in [1, 2] {
                let pool = crate::team::Team::new(threads, "test").unwrap();
                let mut line = format!("{m}x{k}x{n}, {threads} thread(s):");
                for (label, cycle) in [("warm", 1), ("cold", copies)] {
                    let (mut best, mut total) = (f64::MAX, 0.0);
                    pool.run(|| {
                        for rep in 0..15 {
                            let pb = &packed[rep % cycle];
                            let t = std::time::Instant::now();
                            let (lhs, rhs) = (Lhs::Strided(&a, Layout::row_major(k)), Rhs::Packed(pb));
                            unsafe {
                                sgemm_with(m, n, k, lhs, rhs, c.as_mut_ptr(), n, 1.0, 0.0, &GemmEpilogue::NONE, threads)
                            };
                            best = best.min(t.elapsed().as_secs_f64());
                            total += t.elapsed().as_secs_f64();
                        }
                    });
                    let rate = |secs: f64| 2.0 * (m * n * k) as f64 / secs / 1e9;
                    line += &format!(" {label} {:.0} (mean {:.0}) GFLOP/s", rate(best), rate(total / 15.0));
                }
                println!("{line}");
            }
        }
    }

    #[test]
    fn packed_and_strided_operands_agree_with_naive() {
        if !available() {
            return;
        }
        // Sizes straddling every block edge: MR, NR, KC, MC, NC; a B past
        // DIRECT_B_MAX read in place for a single block of rows; and one past
        // BANDED_B_MAX read in place by bands of rows, one per thread.
        let sizes = [
            (1, 1, 1),
            (13, 33, 7),
            (25, 70, 300),
            (150, 1100, 260),
            (12, 32, 256),
            (300, 17, 513),
            (20, 2100, 300),
            (260, 200, 1030),
        ];
        for &(m, n, k) in &sizes {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            for (al, bl) in [
                (Layout::row_major(k), Layout::row_major(n)),
                (Layout::row_major(m).transposed(), Layout::row_major(k).transposed()),
                // Broadcast operands: every row of A (or column of B) is the same.
                (Layout { row: 0, col: 1 }, Layout { row: n, col: 0 }),
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
                        check_epilogues(m, n, k, lhs, rhs, &want, threads);
                    }
                }
            }
        }
    }

    /// Every epilogue (none; row bias, residual and Relu; column bias and Clip;
    /// a residual, Sigmoid and a finish) against the product `want`, with beta
    /// reading a C of random values. The finish must see each element once,
    /// final, at its own row and column.
    #[allow(clippy::too_many_arguments)]
    fn check_epilogues(m: usize, n: usize, k: usize, lhs: Lhs, rhs: Rhs, want: &[f64], threads: usize) {
        let (row_bias, col_bias, residual) = (values(m, 4), values(n, 5), values(m * n, 6));
        let marks = |i: usize, j: usize| (i * 7 + j * 3) as f64 % 11.0;
        let finish = |i: usize, j0: usize, row: &mut [f32]| {
            row.iter_mut().enumerate().for_each(|(j, v)| *v = *v * 3.0 + marks(i, j0 + j) as f32)
        };
        let (relu, clip) = (UnaryOp::Relu, UnaryOp::Clip { min: -0.2, max: 0.3 });
        let none = GemmEpilogue::NONE;
        let cases = [
            none,
            GemmEpilogue { row_bias: Some(&row_bias), residual: Some(&residual), activation: Some(&relu), ..none },
            GemmEpilogue { col_bias: Some(&col_bias), activation: Some(&clip), ..none },
            GemmEpilogue {
                residual: Some(&residual),
                activation: Some(&UnaryOp::Sigmoid),
                finish: Some(&finish),
                ..none
            },
        ];
        for (case, e) in cases.iter().enumerate() {
            let c0 = values(m * n, 3);
            let mut c = c0.clone();
            unsafe { sgemm_with(m, n, k, lhs, rhs, c.as_mut_ptr(), n, 0.5, 2.0, e, threads) };
            for (idx, &got) in c.iter().enumerate() {
                let (i, j) = (idx / n, idx % n);
                let mut w = 0.5 * want[idx] + 2.0 * c0[idx] as f64;
                w += e.row_bias.map_or(0.0, |b| b[i] as f64) + e.col_bias.map_or(0.0, |b| b[j] as f64);
                w += e.residual.map_or(0.0, |z| z[idx] as f64);
                if let Some(act) = e.activation {
                    w = crate::ops::activation::apply_f64(act, w);
                }
                if e.finish.is_some() {
                    w = w * 3.0 + marks(i, j);
                }
                assert!(
                    (got as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                    "{m}x{n}x{k}, {threads} threads, epilogue {case}, at ({i}, {j}): {got} vs {w}"
                );
            }
        }
    }
}
