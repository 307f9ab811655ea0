//! Where each tile of a Winograd block lies in the input and output planes.
//!
//! A block's tiles are gathered once per input channel and scattered once per
//! output channel, so their positions are worked out once per block, without a
//! division per tile and channel, and kept as i32 lanes the AVX-512 gather reads
//! 16 at a time.

use super::{WinogradShape, LANES};

/// The most tiles one block holds: bounds the map, which lives on the stack.
pub(super) const MAX_BLOCK_TILES: usize = 1024;
// Lane groups read 16 lanes from any group start, the last one included.
const _: () = assert!(MAX_BLOCK_TILES.is_multiple_of(LANES));

/// The positions of a block's tiles, tile `t` of the block at index `t`.
pub(super) struct TileMap {
    len: usize,
    /// Image of each tile.
    pub image: [i32; MAX_BLOCK_TILES],
    /// Input row and column of the tile's α×α patch's top-left corner; negative
    /// or past the plane where the patch covers padding.
    pub in_row: [i32; MAX_BLOCK_TILES],
    pub in_col: [i32; MAX_BLOCK_TILES],
    /// First output row and column of the tile.
    pub out_row: [i32; MAX_BLOCK_TILES],
    pub out_col: [i32; MAX_BLOCK_TILES],
}

impl TileMap {
    /// A map with no tiles; [`TileMap::fill`] sets them.
    pub fn new() -> TileMap {
        TileMap {
            len: 0,
            image: [0; MAX_BLOCK_TILES],
            in_row: [0; MAX_BLOCK_TILES],
            in_col: [0; MAX_BLOCK_TILES],
            out_row: [0; MAX_BLOCK_TILES],
            out_col: [0; MAX_BLOCK_TILES],
        }
    }

    /// Maps tiles `first..first + count` of the whole batch (row-major over
    /// image, tile row, tile column) for tiles of side `m`.
    pub fn fill(&mut self, shape: &WinogradShape, m: usize, first: usize, count: usize) {
        assert!(count <= MAX_BLOCK_TILES, "a block holds at most {MAX_BLOCK_TILES} tiles");
        let (tw, th) = (shape.out_w.div_ceil(m), shape.out_h.div_ceil(m));
        let per_image = tw * th;
        let (mut n, rest) = (first / per_image, first % per_image);
        let (mut r, mut t) = (rest / tw, rest % tw);
        for i in 0..count {
            let (oy, ox) = (r * m, t * m);
            self.image[i] = n as i32;
            self.in_row[i] = oy as i32 - shape.pad_top as i32;
            self.in_col[i] = ox as i32 - shape.pad_left as i32;
            self.out_row[i] = oy as i32;
            self.out_col[i] = ox as i32;
            t += 1;
            if t == tw {
                t = 0;
                r += 1;
                if r == th {
                    r = 0;
                    n += 1;
                }
            }
        }
        self.len = count;
    }

    /// Lane groups of the block: the first tile and the tile count of each.
    pub fn groups(&self) -> impl Iterator<Item = (usize, usize)> {
        let len = self.len;
        (0..len).step_by(LANES).map(move |j0| (j0, LANES.min(len - j0)))
    }
}

/// Whether every input and output element's offset fits the i32 lanes the
/// AVX-512 gather and scatter index with.
pub(super) fn offsets_fit_i32(shape: &WinogradShape) -> bool {
    let input = shape.batch * shape.in_channels * shape.in_h * shape.in_w;
    let output = shape.batch * shape.out_channels * shape.out_h * shape.out_w;
    input.max(output) < i32::MAX as usize
}
