// Integer binary ops with numpy broadcasting on i32 and i64: Add, Sub, Mul
// (wrapping), BitwiseAnd/Or/Xor, Max and Min. WGSL has no 64-bit integers without an extension,
// so i64 is a (low, high) pair of u32 words with explicit carries.
//
// Parameters (u32 words): n (output elements), out dims[8], a strides[8],
// b strides[8]; shapes right-aligned into 8 dims, a broadcast dim has stride 0.

override WG: u32 = 256u;
// 0 i32, 1 i64.
override ELEM: u32 = 0u;
// 0 Add, 1 Sub, 2 Mul, 3 BitwiseAnd, 4 BitwiseOr, 5 BitwiseXor, 6 Max, 7 Min.
override OP: u32 = 0u;

const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<storage, read> p: array<u32>;

fn op_i32(x: i32, z: i32) -> i32 {
    switch OP {
        case 0u: { return x + z; }
        case 1u: { return x - z; }
        case 2u: { return x * z; }
        case 3u: { return x & z; }
        case 4u: { return x | z; }
        case 5u: { return x ^ z; }
        case 6u: { return max(x, z); }
        default: { return min(x, z); }
    }
}

// The full 64-bit product of two u32 as (low, high), through 16-bit halves.
fn mul_wide(x: u32, z: u32) -> vec2<u32> {
    let x0 = x & 0xffffu;
    let x1 = x >> 16u;
    let z0 = z & 0xffffu;
    let z1 = z >> 16u;
    let p00 = x0 * z0;
    let p01 = x0 * z1;
    let p10 = x1 * z0;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (mid << 16u);
    let hi = x1 * z1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(lo, hi);
}

// x < z for (low, high) pairs of signed 64-bit values.
fn less_i64(x: vec2<u32>, z: vec2<u32>) -> bool {
    let xh = bitcast<i32>(x.y);
    let zh = bitcast<i32>(z.y);
    return xh < zh || (xh == zh && x.x < z.x);
}

fn op_i64(x: vec2<u32>, z: vec2<u32>) -> vec2<u32> {
    switch OP {
        case 0u: {
            let lo = x.x + z.x;
            return vec2<u32>(lo, x.y + z.y + select(0u, 1u, lo < x.x));
        }
        case 1u: {
            return vec2<u32>(x.x - z.x, x.y - z.y - select(0u, 1u, x.x < z.x));
        }
        case 2u: {
            let w = mul_wide(x.x, z.x);
            return vec2<u32>(w.x, w.y + x.x * z.y + x.y * z.x);
        }
        case 3u: { return x & z; }
        case 4u: { return x | z; }
        case 5u: { return x ^ z; }
        case 6u: { return select(x, z, less_i64(x, z)); }
        default: { return select(x, z, less_i64(z, x)); }
    }
}

@compute @workgroup_size(WG)
fn int_binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    var rest = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = MAX_RANK; d > 0u; d -= 1u) {
        let dim = p[d];
        let coord = rest % dim;
        rest = rest / dim;
        ia += coord * p[8u + d];
        ib += coord * p[16u + d];
    }
    if (ELEM == 0u) {
        y[i] = bitcast<u32>(op_i32(bitcast<i32>(a[ia]), bitcast<i32>(b[ib])));
    } else {
        let r = op_i64(vec2<u32>(a[2u * ia], a[2u * ia + 1u]), vec2<u32>(b[2u * ib], b[2u * ib + 1u]));
        y[2u * i] = r.x;
        y[2u * i + 1u] = r.y;
    }
}
