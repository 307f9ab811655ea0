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
