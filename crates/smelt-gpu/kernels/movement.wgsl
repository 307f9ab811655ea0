// Data movement over 32-bit words: Transpose, Slice, Expand, Concat, Split and
// every other op that copies elements from one strided view to another. 8-byte
// elements are moved as two words (an extra inner dim of 2); the launcher does that.
//
// Parameters (u32): n (words), dims[8], src strides[8] (i32), dst strides[8],
// src offset, dst offset (words). One thread per word of the iteration space.

override WG: u32 = 256u;
const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn copy_strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    var rest = i;
    var s = i32(p[25]);
    var d = p[26];
    for (var k = MAX_RANK; k > 0u; k -= 1u) {
        let dim = p[k];
        let coord = rest % dim;
        rest = rest / dim;
        s += i32(coord) * bitcast<i32>(p[8u + k]);
        d += coord * p[16u + k];
    }
    dst[d] = src[u32(s)];
}

// The same copies for 1- and 2-byte elements (ESIZE), packed four or two to a
// word. One thread per destination word: for each lane it finds the source
// element and takes its byte or half, so no two threads write one word. Lanes
// not written by this copy (past the tensor's end, or outside Concat's window)
// keep what the buffer held; Concat's inputs are separate dispatches, which run
// in order.
//
// The destination is the whole tensor, seen as [outer, Y, inner] with this copy
// writing the window [at, at + X) of Y (Y = X = inner = 1, at = 0 for a copy to
// the whole tensor). Element r of the window (in order) reads the source at
// offset + sum(coord_k * stride_k) over dims[8] of the window.
//
// Parameters (u32): threads (words), first word, tensor elements, Y, at, X,
// inner, dims[8], src strides[8] (i32, elements), src offset (elements).

override ESIZE: u32 = 1u;

fn packed_source(r: u32) -> u32 {
    var rest = r;
    var s = i32(p[23]);
    for (var k = MAX_RANK; k > 0u; k -= 1u) {
        let dim = p[6u + k];
        let coord = rest % dim;
        rest = rest / dim;
        s += i32(coord) * bitcast<i32>(p[14u + k]);
    }
    return u32(s);
}

@compute @workgroup_size(WG)
fn copy_packed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p[0]) {
        return;
    }
    let w = p[1] + t;
    let bits = 8u * ESIZE;
    let per = 32u / bits;
    let mask = 0xffffffffu >> (32u - bits);
    let big_y = p[3];
    let at = p[4];
    let big_x = p[5];
    let inner = p[6];
    let old = dst[w];
    var word = 0u;
    for (var l = 0u; l < per; l += 1u) {
        let e = w * per + l;
        let o = e / (big_y * inner);
        let a = (e / inner) % big_y;
        let j = e % inner;
        if (e < p[2] && a >= at && a < at + big_x) {
            let s = packed_source((o * big_x + a - at) * inner + j);
            word |= ((src[s / per] >> (bits * (s % per))) & mask) << (bits * l);
        } else {
            word |= old & (mask << (bits * l));
        }
    }
    dst[w] = word;
}
