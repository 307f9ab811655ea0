// Index-mapping copies: Tile, Pad (constant, reflect, edge, wrap), DepthToSpace,
// SpaceToDepth (as 6-D strided views) and Trilu. One thread per output word:
// each output coordinate maps to an input coordinate by MODE, or falls outside
// the input (Pad's constant). Elements are 32-bit words; 8-byte elements are
// two words, the Rust side adding an innermost dim of 2 for them.
//
// Parameters (u32 words): n (output words), constant low word, constant high
// word, wide (1 for 8-byte elements), trilu (0 none, 1 lower, 2 upper), k (i32),
// row dim, column dim (Trilu's coordinates), then out dims[8], in dims[8],
// in strides[8] (words), begin offsets[8] (i32, Pad's leading pads), base (the
// first input word read). Negative pads crop: the Rust side moves `base` past the
// cropped elements and gives the kept length as the in dim, so the pad modes
// mirror and wrap within the kept elements, as ONNX defines.
//
// ESIZE 1 or 2: elements of 1 or 2 bytes, packed four or two to a word. Then
// n counts output words (threads), dims, strides and base count elements, the
// constant is in the low bits of its word, and p[ELEMS] holds the output's
// element count. Each thread builds one whole output word from its lanes, so no
// two threads write one word; lanes past the end keep what the buffer held.

override WG: u32 = 256u;
// 0 strided view, 1 tile, 2 pad constant, 3 pad reflect, 4 pad edge, 5 pad wrap.
override MODE: u32 = 0u;
// 4: 32-bit words (4- and 8-byte elements); 1 or 2: packed elements.
override ESIZE: u32 = 4u;

const MAX_RANK: u32 = 8u;
const DIMS: u32 = 8u;
const IN_DIMS: u32 = 16u;
const STRIDES: u32 = 24u;
const BEGINS: u32 = 32u;
const BASE: u32 = 40u;
const ELEMS: u32 = 41u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

// Input coordinate of signed coordinate `c` on an axis of `n` input elements
// under a pad mode, or -1 outside the input (constant mode).
fn pad_source(c: i32, n: i32) -> i32 {
    switch MODE {
        case 2u: { return select(c, -1, c < 0 || c >= n); }
        case 3u: {
            if (n == 1) { return 0; }
            let period = 2 * (n - 1);
            var r = c % period;
            r = select(r, r + period, r < 0);
            return select(r, period - r, r >= n);
        }
        case 4u: { return clamp(c, 0, n - 1); }
        default: {
            let r = c % n;
            return select(r, r + n, r < 0);
        }
    }
}

// The value of output unit i (a word, or a packed element zero-extended).
fn unit(i: u32) -> u32 {
    var rest = i;
    var src = p[BASE];
    var outside = false;
    var row = 0;
    var col = 0;
    for (var d = MAX_RANK; d > 0u; d -= 1u) {
        let k = d - 1u;
        let dim = p[DIMS + k];
        let coord = rest % dim;
        rest = rest / dim;
        if (k == p[6]) { row = i32(coord); }
        if (k == p[7]) { col = i32(coord); }
        let n = p[IN_DIMS + k];
        let stride = p[STRIDES + k];
        switch MODE {
            case 0u: { src += coord * stride; }
            case 1u: { src += (coord % n) * stride; }
            default: {
                let c = pad_source(i32(coord) - bitcast<i32>(p[BEGINS + k]), i32(n));
                if (c < 0) {
                    outside = true;
                } else {
                    src += u32(c) * stride;
                }
            }
        }
    }
    let diagonal = col - row;
    let k = bitcast<i32>(p[5]);
    if ((p[4] == 1u && diagonal > k) || (p[4] == 2u && diagonal < k)) {
        return 0u;
    }
    if (ESIZE == 4u) {
        if (outside) {
            return select(p[1], p[2], p[3] == 1u && i % 2u == 1u);
        }
        return x[src];
    }
    let bits = lane_bits();
    let per = 32u / bits;
    if (outside) {
        return p[1];
    }
    return (x[src / per] >> (bits * (src % per))) & (0xffffffffu >> (32u - bits));
}

// Bits of a packed element (8 or 16; min keeps the shifts valid when ESIZE is 4).
fn lane_bits() -> u32 {
    return 8u * min(ESIZE, 2u);
}

@compute @workgroup_size(WG)
fn layout_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    if (ESIZE == 4u) {
        y[i] = unit(i);
        return;
    }
    let bits = lane_bits();
    let per = 32u / bits;
    let mask = 0xffffffffu >> (32u - bits);
    var word = 0u;
    for (var l = 0u; l < per; l += 1u) {
        let e = i * per + l;
        if (e < p[ELEMS]) {
            word |= unit(e) << (bits * l);
        } else {
            word |= y[i] & (mask << (bits * l));
        }
    }
    y[i] = word;
}
