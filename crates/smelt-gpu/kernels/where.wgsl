// Where(condition, x, y) with numpy broadcasting over 4-byte elements; the
// condition is one byte per element (bool).
//
// Parameters (u32): n, dims[8], cond strides[8], x strides[8], y strides[8].

override WG: u32 = 256u;
const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> cond: array<u32>;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn where_select(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    var rest = i;
    var ic = 0u;
    var ia = 0u;
    var ib = 0u;
    for (var k = MAX_RANK; k > 0u; k -= 1u) {
        let dim = p[k];
        let coord = rest % dim;
        rest = rest / dim;
        ic += coord * p[8u + k];
        ia += coord * p[16u + k];
        ib += coord * p[24u + k];
    }
    let c = (cond[ic / 4u] >> (8u * (ic % 4u))) & 0xffu;
    out[i] = select(b[ib], a[ia], c != 0u);
}
