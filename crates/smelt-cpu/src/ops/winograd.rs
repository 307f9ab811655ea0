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

use super::gemm::{gemm_raw, Float, GemmEpilogue, Layout, PackedLhs, Parallelism};
use crate::team;
use lanes::{Input, Output, OutputFinish};
use smelt_ir::UnaryOp;
use tile_map::{TileMap, MAX_BLOCK_TILES};

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

    /// `U = G g Gᵀ` for the 3×3 kernels `w` ([n, 3, 3], row-major), 16 kernels
    /// to a lane group: element ξ of kernel i goes to `u[ξ·u_stride + i]`.
    fn kernel_transform(self, w: &[f32], u: &mut [f32], u_stride: usize) {
        fn all<const A: usize>(l: &[[f32; 3]; A], w: &[f32], u: &mut [f32], u_stride: usize) {
            for (group, kernels) in w.chunks(9 * LANES).enumerate() {
                let mut x = [[[0f32; LANES]; 3]; 3];
                for (lane, g) in kernels.chunks_exact(9).enumerate() {
                    for (i, row) in x.iter_mut().enumerate() {
                        for (j, v) in row.iter_mut().enumerate() {
                            v[lane] = g[i * 3 + j];
                        }
                    }
                }
                let lanes = kernels.len() / 9;
                for (xi, v) in lanes::transform(l, &x).iter().flatten().enumerate() {
                    u[xi * u_stride + group * LANES..][..lanes].copy_from_slice(&v[..lanes]);
                }
            }
        }
        super::wide::run(|| match self {
            WinogradTile::F2 => all(&F2_G, w, u, u_stride),
            WinogradTile::F4 => all(&F4_G, w, u, u_stride),
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
        // U_ξ[k][c] lands at ξ·K·C + k·C + c.
        tile.kernel_transform(w, &mut plain, k * c);
        let packed =
            (0..a2).map(|xi| PackedLhs::new(k, c, &plain[xi * k * c..][..k * c], Layout::row_major(c))).collect();
        WinogradConv { tile, out_channels, in_channels, plain, packed }
    }

    /// Whether this CPU gathers and scatters tiles with AVX-512 (for shapes
    /// whose offsets fit i32), which makes the transforms about twice as cheap.
    pub fn simd_transforms() -> bool {
        super::wide::has_avx512()
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
        block.clamp(64, MAX_BLOCK_TILES).min(tiles)
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
        self.run_with(Gather::Best, shape, x, bias, act, y, scratch)
    }

    /// [`WinogradConv::run`] with the input gathered as `gather` says.
    #[allow(clippy::too_many_arguments)]
    fn run_with(
        &self,
        gather: Gather,
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
        // A Relu or Clip is applied as the output tiles are stored; any other
        // activation takes a pass over the output at the end.
        let bounds = act.and_then(super::activation::clamp_bounds);
        let act = act.filter(|_| bounds.is_none());
        let clamp = bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (v, rest) = scratch.split_at_mut(a2 * c_n * block);
        let mm = &mut rest[..a2 * k_n * block];
        let simd = gather == Gather::Best && simd_available(shape);
        let input = Input { x, shape, simd };
        let y_ptr = SharedMut(y.as_mut_ptr());
        let mut map = TileMap::new();
        for t0 in (0..tiles).step_by(block) {
            let nb = block.min(tiles - t0);
            map.fill(shape, m, t0, nb);
            let map = &map;
            // Phase 1: V_ξ[c][0..nb] for every channel.
            let v_ptr = SharedMut(v.as_mut_ptr());
            for_each_index(c_n, |c| {
                // SAFETY: channel c writes only V[ξ][c][0..nb] for each ξ (element
                // offsets ξ·C·block + c·block + j, j < nb ≤ block), disjoint from
                // every other channel's; the spans lie inside `v` (α²·C·block).
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(v_ptr.get().add(c * block), (a2 - 1) * c_n * block + nb) };
                lanes::input_channel(self.tile, input, c, map, dst, c_n * block);
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
                            &GemmEpilogue::NONE,
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
            // Phase 3: output tiles of every output channel.
            let m_const = &*mm;
            for_each_index(k_n, |k| {
                let finish = OutputFinish { bias: bias.map_or(0.0, |b| b[k]), min: clamp.0, max: clamp.1 };
                let src = &m_const[k * block..];
                let out = Output { y: y_ptr.get(), shape, simd };
                // SAFETY: `y` holds every output plane (asserted above) and
                // output channel k's planes are written by this task alone.
                unsafe { lanes::output_channel(self.tile, src, k_n * block, k, finish, map, out) };
            });
        }
        if let Some(act) = act {
            team::for_each_piece(&mut y[..shape.batch * k_n * out_plane], out_plane, |_, p| f32::activate(p, act));
        }
    }
}

/// Runs `f(i)` for `i` in `0..count`, spread over the rayon pool.
fn for_each_index(count: usize, f: impl Fn(usize) + Sync + Send) {
    if team::threads() > 1 && count > 1 {
        team::for_each(count, f);
    } else {
        (0..count).for_each(f);
    }
}

/// How the input patches are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gather {
    /// AVX-512 gathers where the CPU and the shape allow, else element by element.
    Best,
    /// Element by element, in and out: the code other CPUs run, for tests.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
}

/// Tiles per lane group: one AVX-512 vector of f32.
const LANES: usize = 16;

/// Whether [`WinogradConv::run`]'s AVX-512 gather and scatter can run for `shape`.
fn simd_available(shape: &WinogradShape) -> bool {
    WinogradConv::simd_transforms() && tile_map::offsets_fit_i32(shape)
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

mod lanes;
mod tile_map;

#[cfg(test)]
mod tests;
