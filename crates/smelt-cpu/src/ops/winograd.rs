//! Winograd convolution F(m×m, 3×3) for 2-D, 3×3, stride-1, dilation-1,
//! ungrouped f32 Conv, in two variants: F(2×2, 3×3) (4×4 input tiles) and
//! F(4×4, 3×3) (6×6 input tiles).
//!
//! With α = m + 2, each m×m output tile of each output channel is
//! `Aᵀ [Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)] A`, where `d_c` is the α×α input patch of
//! channel `c` and `g_c` the 3×3 kernel. For every transform position ξ (α² of
//! them) the sum over channels is a matrix product
//! `M_ξ[K, tiles] = U_ξ[K, C] · V_ξ[C, tiles]`, so the work is α² GEMMs of the
//! whole layer through the packed micro-kernel, with `U_ξ` (the transformed
//! weights) packed once at prepare time. Multiplications per output fall from 9
//! per channel pair to α²/m² (4 for F(2,3), 2.25 for F(4,3)); in exchange the
//! input and output transforms cost work proportional to C and K, and larger
//! tiles amplify rounding (F(4,3)'s transforms hold 1/24 and 8): see the tests for
//! the errors measured against direct convolution.
//!
//! Tiles of all images are processed in blocks of [`WinogradConv::block_tiles`];
//! each block goes through three phases, each spread over the threads: input
//! transform (by channel), the α² GEMMs (by ξ), output transform (by output
//! channel, adding the bias). The transforms run along the block's tiles, which
//! are contiguous in V and M, so they vectorise; the activation is applied to the
//! finished output planes.

use super::gemm::{gemm_raw, Float, Layout, PackedLhs, Parallelism};
use rayon::prelude::*;
use smelt_ir::UnaryOp;

/// Output tile size: which of the two transforms a layer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WinogradTile {
    /// F(2×2, 3×3): α = 4, the smaller rounding error.
    F2,
    /// F(4×4, 3×3): α = 6, fewer multiplications, larger error.
    F4,
}

/// The sizes of one variant. Its transforms are the `*_G` (α×3: kernel →
/// transformed kernel, `G g Gᵀ`), `*_BT` (α×α: input tile → transformed tile,
/// `Bᵀ d B`) and `*_AT` (m×α: transformed product → output tile, `Aᵀ M A`)
/// constants. These are the standard Toom-Cook matrices with interpolation
/// points 0, ±1 (F2) and 0, ±1, ±2 (F4) plus the point at infinity.
struct Transforms {
    m: usize,
    alpha: usize,
}

#[rustfmt::skip]
const F2_G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];
#[rustfmt::skip]
const F4_G: [[f32; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

#[rustfmt::skip]
const F2_BT: [[f32; 4]; 4] = [
    [1.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 0.0],
    [0.0, 1.0, 0.0, -1.0],
];
#[rustfmt::skip]
const F2_AT: [[f32; 4]; 2] = [
    [1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, -1.0],
];
#[rustfmt::skip]
const F4_BT: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
#[rustfmt::skip]
const F4_AT: [[f32; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

const F2: Transforms = Transforms { m: 2, alpha: 4 };
const F4: Transforms = Transforms { m: 4, alpha: 6 };
/// The largest tile sides, F(4,3)'s: they size the per-group buffers on the stack.
const MAX_ALPHA: usize = F4.alpha;
const MAX_M: usize = F4.m;

impl WinogradTile {
    fn transforms(self) -> &'static Transforms {
        match self {
            WinogradTile::F2 => &F2,
            WinogradTile::F4 => &F4,
        }
    }

    /// Output tile side m.
    pub fn m(self) -> usize {
        self.transforms().m
    }

    /// Input tile side α = m + 2.
    pub fn alpha(self) -> usize {
        self.transforms().alpha
    }

    /// `dst = G g Gᵀ` for one 3×3 kernel (layouts as [`transform_fixed`]).
    fn kernel_transform(self, src: &[f32], dst: &mut [f32], dst_stride: usize) {
        match self {
            WinogradTile::F2 => transform_fixed(&F2_G, src, 1, dst, dst_stride),
            WinogradTile::F4 => transform_fixed(&F4_G, src, 1, dst, dst_stride),
        }
    }

    /// `dst = Bᵀ d B` for `lanes` input tiles (layouts as [`transform_fixed`]).
    fn input_transform(self, src: &[f32], lanes: usize, dst: &mut [f32], dst_stride: usize) {
        super::wide::run(|| match self {
            WinogradTile::F2 => transform_fixed(&F2_BT, src, lanes, dst, dst_stride),
            WinogradTile::F4 => transform_fixed(&F4_BT, src, lanes, dst, dst_stride),
        })
    }

    /// `dst = Aᵀ M A` for `lanes` transformed products.
    fn output_transform(self, src: &[f32], lanes: usize, dst: &mut [f32], dst_stride: usize) {
        super::wide::run(|| match self {
            WinogradTile::F2 => transform_fixed(&F2_AT, src, lanes, dst, dst_stride),
            WinogradTile::F4 => transform_fixed(&F4_AT, src, lanes, dst, dst_stride),
        })
    }
}

/// The shape of one Winograd Conv call: NCHW input, 3×3 kernel, stride 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WinogradShape {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    /// Padding before the first row and column (end padding only shapes the output).
    pub pad_top: usize,
    pub pad_left: usize,
}

impl WinogradShape {
    fn tiles_h(&self, tile: WinogradTile) -> usize {
        self.out_h.div_ceil(tile.m())
    }

    fn tiles_w(&self, tile: WinogradTile) -> usize {
        self.out_w.div_ceil(tile.m())
    }

    fn tiles(&self, tile: WinogradTile) -> usize {
        self.batch * self.tiles_h(tile) * self.tiles_w(tile)
    }
}

/// A 3×3 Conv's weights transformed for one variant: `U_ξ = (G g Gᵀ)_ξ` as α²
/// row-major [K, C] matrices, each packed for the GEMM kernel where it runs.
pub struct WinogradConv {
    tile: WinogradTile,
    out_channels: usize,
    in_channels: usize,
    /// [α², K, C]; kept only where the packed kernel does not run.
    plain: Vec<f32>,
    packed: Option<Vec<PackedLhs>>,
}

impl WinogradConv {
    /// Transforms `w` ([K, C, 3, 3], row-major).
    pub fn new(tile: WinogradTile, w: &[f32], out_channels: usize, in_channels: usize) -> WinogradConv {
        let t = tile.transforms();
        let a2 = t.alpha * t.alpha;
        let (k, c) = (out_channels, in_channels);
        assert_eq!(w.len(), k * c * 9, "weights are [K, C, 3, 3]");
        let mut plain = vec![0f32; a2 * k * c];
        for kc in 0..k * c {
            // U_ξ[k][c] lands at ξ·K·C + kc.
            tile.kernel_transform(&w[kc * 9..][..9], &mut plain[kc..], k * c);
        }
        let packed =
            (0..a2).map(|xi| PackedLhs::new(k, c, &plain[xi * k * c..][..k * c], Layout::row_major(c))).collect();
        WinogradConv { tile, out_channels, in_channels, plain, packed }
    }

    pub fn tile(&self) -> WinogradTile {
        self.tile
    }

    /// Tiles per block: a multiple of the GEMM's 32-column panels, as many as keep
    /// a block's V and M (α²·(C+K) floats per tile) within about 6 MiB (the
    /// blocks are visited by α² GEMMs in turn, so they are meant for the shared
    /// cache, not L2: smaller blocks made many short GEMMs, measured slower), and
    /// at least two panels' worth so the GEMMs run at speed.
    fn block_tiles(&self, tiles: usize) -> usize {
        const BUDGET: usize = 1536 * 1024;
        let a2 = self.tile.alpha() * self.tile.alpha();
        let per_tile = a2 * (self.in_channels + self.out_channels);
        let block = (BUDGET / per_tile.max(1)) / 32 * 32;
        block.max(64).min(tiles)
    }

    /// Scratch elements one [`WinogradConv::run`] needs for `shape`.
    pub fn scratch_len(&self, shape: &WinogradShape) -> usize {
        let a2 = self.tile.alpha() * self.tile.alpha();
        let block = self.block_tiles(shape.tiles(self.tile));
        a2 * (self.in_channels + self.out_channels) * block
    }

    /// `y = act(conv(x) + bias)`; `x` is [N, C, H, W], `y` [N, K, out_h, out_w],
    /// `scratch` at least [`WinogradConv::scratch_len`] long.
    pub fn run(
        &self,
        shape: &WinogradShape,
        x: &[f32],
        bias: Option<&[f32]>,
        act: Option<&UnaryOp>,
        y: &mut [f32],
        scratch: &mut [f32],
    ) {
        let t = self.tile.transforms();
        let (alpha, m) = (t.alpha, t.m);
        let a2 = alpha * alpha;
        let (c_n, k_n) = (self.in_channels, self.out_channels);
        assert_eq!((shape.in_channels, shape.out_channels), (c_n, k_n), "shape matches the weights");
        let (in_plane, out_plane) = (shape.in_h * shape.in_w, shape.out_h * shape.out_w);
        assert!(x.len() >= shape.batch * c_n * in_plane && y.len() >= shape.batch * k_n * out_plane);
        let tiles = shape.tiles(self.tile);
        if tiles == 0 || k_n == 0 {
            return;
        }
        let block = self.block_tiles(tiles);
        let (v, rest) = scratch.split_at_mut(a2 * c_n * block);
        let mm = &mut rest[..a2 * k_n * block];
        let (tw, th) = (shape.tiles_w(self.tile), shape.tiles_h(self.tile));
        // Tile index → (image, first output row, first output column).
        let locate = |tile: usize| {
            let (n, r) = (tile / (th * tw), tile % (th * tw));
            (n, (r / tw) * m, (r % tw) * m)
        };
        let y_ptr = SharedMut(y.as_mut_ptr());
        for t0 in (0..tiles).step_by(block) {
            let nb = block.min(tiles - t0);
            // Phase 1: V_ξ[c][0..nb] for every channel, one group of `LANES` tiles
            // at a time, gathered into a patch buffer on the stack.
            let v_ptr = SharedMut(v.as_mut_ptr());
            for_each_index(c_n, |c| {
                // SAFETY: channel c writes only V[ξ][c][0..nb] for each ξ (element
                // offsets ξ·C·block + c·block + j, j < nb ≤ block), disjoint from
                // every other channel's; the spans lie inside `v` (α²·C·block).
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(v_ptr.get().add(c * block), (a2 - 1) * c_n * block + nb) };
                let mut patch = [0f32; MAX_ALPHA * MAX_ALPHA * LANES];
                for j0 in (0..nb).step_by(LANES) {
                    let lanes = LANES.min(nb - j0);
                    for j in 0..lanes {
                        let (n, oy, ox) = locate(t0 + j0 + j);
                        let xc = &x[(n * c_n + c) * in_plane..][..in_plane];
                        gather_patch(xc, shape, alpha, oy, ox, &mut patch[j..], lanes);
                    }
                    self.tile.input_transform(&patch[..a2 * lanes], lanes, &mut dst[j0..], c_n * block);
                }
            });
            // Phase 2: M_ξ = U_ξ · V_ξ.
            let m_ptr = SharedMut(mm.as_mut_ptr());
            let v_const = &*v;
            for_each_index(a2, |xi| {
                let b = &v_const[xi * c_n * block..][..c_n * block];
                // SAFETY: ξ writes only M_ξ = M[ξ·K·block ..][.. K·block] (K rows of
                // `nb` columns, row stride `block`), disjoint across ξ and inside `mm`.
                unsafe {
                    let c = m_ptr.get().add(xi * k_n * block);
                    let done = self.packed.as_ref().is_some_and(|p| {
                        // Packing succeeded for every ξ or none (same CPU, same shapes).
                        f32::gemm_packed_lhs(
                            k_n,
                            nb,
                            &p[xi],
                            b.as_ptr(),
                            Layout::row_major(block),
                            c,
                            block,
                            1.0,
                            0.0,
                            Parallelism::None,
                        )
                    });
                    if !done {
                        gemm_raw(
                            k_n,
                            nb,
                            c_n,
                            self.plain[xi * k_n * c_n..].as_ptr(),
                            Layout::row_major(c_n),
                            b.as_ptr(),
                            Layout::row_major(block),
                            c,
                            Layout::row_major(block),
                            1.0,
                            0.0,
                            Parallelism::None,
                        );
                    }
                }
            });
            // Phase 3: output tiles of every output channel, one group of `LANES`
            // tiles at a time through buffers on the stack.
            let m_const = &*mm;
            for_each_index(k_n, |k| {
                let b = bias.map_or(0.0, |b| b[k]);
                let mut src = [0f32; MAX_ALPHA * MAX_ALPHA * LANES];
                let mut out = [0f32; MAX_M * MAX_M * LANES];
                for j0 in (0..nb).step_by(LANES) {
                    let lanes = LANES.min(nb - j0);
                    for xi in 0..a2 {
                        src[xi * lanes..][..lanes].copy_from_slice(&m_const[(xi * k_n + k) * block + j0..][..lanes]);
                    }
                    self.tile.output_transform(&src[..a2 * lanes], lanes, &mut out[..m * m * lanes], lanes);
                    for j in 0..lanes {
                        let (n, oy, ox) = locate(t0 + j0 + j);
                        // SAFETY: output channel k writes only plane (n, k) of `y`,
                        // which no other k touches; rows/columns are clipped to the plane.
                        let plane = unsafe {
                            std::slice::from_raw_parts_mut(y_ptr.get().add((n * k_n + k) * out_plane), out_plane)
                        };
                        for r in 0..m.min(shape.out_h - oy) {
                            let row = &mut plane[(oy + r) * shape.out_w + ox..];
                            for s in 0..m.min(shape.out_w - ox) {
                                row[s] = out[(r * m + s) * lanes + j] + b;
                            }
                        }
                    }
                }
            });
        }
        if let Some(act) = act {
            y[..shape.batch * k_n * out_plane].par_chunks_mut(out_plane.max(1)).for_each(|p| f32::activate(p, act));
        }
    }
}

/// Runs `f(i)` for `i` in `0..count`, spread over the rayon pool.
fn for_each_index(count: usize, f: impl Fn(usize) + Sync + Send) {
    if rayon::current_num_threads() > 1 && count > 1 {
        (0..count).into_par_iter().with_min_len(1).for_each(f);
    } else {
        (0..count).for_each(f);
    }
}

/// Copies the α×α input patch whose output tile starts at (oy, ox) into
/// `dst[(i·α + j)·stride]`, zero outside the plane.
fn gather_patch(
    plane: &[f32],
    shape: &WinogradShape,
    alpha: usize,
    oy: usize,
    ox: usize,
    dst: &mut [f32],
    stride: usize,
) {
    for i in 0..alpha {
        let row = (oy + i) as isize - shape.pad_top as isize;
        let inside = row >= 0 && (row as usize) < shape.in_h;
        for j in 0..alpha {
            let col = (ox + j) as isize - shape.pad_left as isize;
            let value = if inside && col >= 0 && (col as usize) < shape.in_w {
                plane[row as usize * shape.in_w + col as usize]
            } else {
                0.0
            };
            dst[(i * alpha + j) * stride] = value;
        }
    }
}

/// Tiles one step of [`transform_fixed`] carries: one AVX-512 vector of f32.
const LANES: usize = 16;
type Lanes = [f32; LANES];

/// `dst = L · src · Lᵀ` for `lanes` independent tiles, where `L` (P×Q) is a
/// compile-time constant and `src` holds the Q×Q tiles as
/// `src[(i·Q + j)·lanes + lane]`; output element (a, b) of lane `l` goes to
/// `dst[(a·P + b)·dst_stride + l]`. 16 tiles at a time are held in registers:
/// the loops unroll, zero coefficients drop out and ones need no multiply, and
/// nothing goes through memory between the two passes (a general form's passes
/// over whole rows of tiles made it 60 ns a tile and channel, more than the
/// GEMMs it feeds).
#[inline(always)]
fn transform_fixed<const P: usize, const Q: usize>(
    l: &[[f32; Q]; P],
    src: &[f32],
    lanes: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    for l0 in (0..lanes).step_by(LANES) {
        let w = LANES.min(lanes - l0);
        let mut x = [[[0f32; LANES]; Q]; Q];
        for (i, row) in x.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                v[..w].copy_from_slice(&src[(i * Q + j) * lanes + l0..][..w]);
            }
        }
        // Columns: t[a][j] = Σ_i L[a][i] · x[i][j].
        let mut t = [[[0f32; LANES]; Q]; P];
        for (a, ta) in t.iter_mut().enumerate() {
            for (j, tj) in ta.iter_mut().enumerate() {
                *tj = combine(&l[a], |i| &x[i][j]);
            }
        }
        // Rows: y[a][b] = Σ_j t[a][j] · L[b][j].
        for (a, ta) in t.iter().enumerate() {
            for (b, lb) in l.iter().enumerate() {
                let y = combine(lb, |j| &ta[j]);
                dst[(a * P + b) * dst_stride + l0..][..w].copy_from_slice(&y[..w]);
            }
        }
    }
}

/// `Σ_i coefs[i] · v(i)`, skipping zero coefficients, in order of i.
#[inline(always)]
fn combine<'a, const Q: usize>(coefs: &[f32; Q], v: impl Fn(usize) -> &'a Lanes) -> Lanes {
    let mut acc = [0f32; LANES];
    for (i, &c) in coefs.iter().enumerate() {
        if c != 0.0 {
            let x = v(i);
            for (d, &s) in acc.iter_mut().zip(x) {
                *d += c * s;
            }
        }
    }
    acc
}

/// A pointer that may cross threads; every use documents why the accesses
/// through it are disjoint.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);

impl<T> SharedMut<T> {
    fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: users only touch disjoint elements from different threads.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

#[cfg(test)]
mod tests;
