// ScatterElements and ScatterND: Y = X, then each update folded into Y at the
// place its index says, with no reduction (overwrite) or add, mul, max, min.
//
// One thread per OUTPUT element, which copies X there and then walks, in the
// CPU's order, every update that could land on it, folding in those that do.
// No atomics and no races: the result is deterministic and equal to the CPU's,
// bit for bit, also for duplicate indices (the last one wins with no reduction,
// floats are added in the CPU's order). The price is work: ScatterElements reads
// the indices along the axis line of its element (indices.shape[axis] each),
// ScatterND every index tuple (output elements x tuples x k reads), which suits
// small index sets; a large ScatterND with a reduction is slow. ScatterND with no
// reduction, the common case (cache updates), takes the linear three-pass path
// of scatter_nd_last.wgsl instead, with the same result.
//
// Every thread also checks every index it reads, so an index out of range is
// reported (status.wgsl, appended; the value is the index, its low word for i64)
// however many threads read it, and the run fails at this node with the CPU's
// message. Indices are i32, or i64 (IDX64 = 1) with |index| < 2^31.
//
// ELEM: 0 f32, 1 i32 (or any 4-byte element with RED 0), 2 i64 as (low, high)
// u32 words (or any 8-byte element with RED 0). RED: 0 none, 1 add, 2 mul,
// 3 max, 4 min; integers wrap.

override WG: u32 = 256u;
override IDX64: u32 = 1u;
override ELEM: u32 = 0u;
override RED: u32 = 0u;

const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> indices: array<i32>;
@group(0) @binding(2) var<storage, read_write> updates: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<u32>;
@group(0) @binding(4) var<storage, read_write> status: array<atomic<u32>, 2>;
@group(0) @binding(5) var<storage, read> p: array<u32>;

// Index element j resolved against an axis of `size`, or -1 after reporting
// `code` when it is out of range.
fn resolve(j: u32, size: u32, code: u32) -> i32 {
    let given = indices[j * (1u + IDX64)];
    var idx = given;
    if (idx < 0) {
        idx += i32(size);
    }
    var fits = true;
    if (IDX64 == 1u) {
        fits = indices[j * 2u + 1u] == select(0, -1, given < 0);
    }
    if (idx < 0 || idx >= i32(size) || !fits) {
        report_failure(code, given);
        return -1;
    }
    return idx;
}

// The full 64-bit product of two u32 as (low, high), through 16-bit halves.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return vec2<u32>((p00 & 0xffffu) | (mid << 16u), a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

// a < b for (low, high) pairs of signed 64-bit values.
fn less_i64(a: vec2<u32>, b: vec2<u32>) -> bool {
    let ah = bitcast<i32>(a.y);
    let bh = bitcast<i32>(b.y);
    return ah < bh || (ah == bh && a.x < b.x);
}

// How update u folds into the value a already there, as the CPU's `combine`:
// max keeps a unless u > a, min unless u < a (so a NaN update never wins).
fn fold(a: vec2<u32>, u: vec2<u32>) -> vec2<u32> {
    if (RED == 0u) {
        return u;
    }
    if (ELEM == 0u) {
        let fa = bitcast<f32>(a.x);
        let fu = bitcast<f32>(u.x);
        switch RED {
            case 1u: { return vec2<u32>(bitcast<u32>(fa + fu), 0u); }
            case 2u: { return vec2<u32>(bitcast<u32>(fa * fu), 0u); }
            case 3u: { return select(a, u, fu > fa); }
            default: { return select(a, u, fu < fa); }
        }
    }
    if (ELEM == 1u) {
        let ia = bitcast<i32>(a.x);
        let iu = bitcast<i32>(u.x);
        switch RED {
            case 1u: { return vec2<u32>(bitcast<u32>(ia + iu), 0u); }
            case 2u: { return vec2<u32>(bitcast<u32>(ia * iu), 0u); }
            case 3u: { return select(a, u, iu > ia); }
            default: { return select(a, u, iu < ia); }
        }
    }
    switch RED {
        case 1u: {
            let lo = a.x + u.x;
            return vec2<u32>(lo, a.y + u.y + select(0u, 1u, lo < a.x));
        }
        case 2u: {
            let w = mul_wide(a.x, u.x);
            return vec2<u32>(w.x, w.y + a.x * u.y + a.y * u.x);
        }
        case 3u: { return select(a, u, less_i64(a, u)); }
        default: { return select(a, u, less_i64(u, a)); }
    }
}

fn load_x(e: u32) -> vec2<u32> {
    if (ELEM == 2u) {
        return vec2<u32>(x[2u * e], x[2u * e + 1u]);
    }
    return vec2<u32>(x[e], 0u);
}

fn load_update(e: u32) -> vec2<u32> {
    if (ELEM == 2u) {
        return vec2<u32>(updates[2u * e], updates[2u * e + 1u]);
    }
    return vec2<u32>(updates[e], 0u);
}

fn store_y(e: u32, v: vec2<u32>) {
    if (ELEM == 2u) {
        y[2u * e] = v.x;
        y[2u * e + 1u] = v.y;
    } else {
        y[e] = v.x;
    }
}

// ScatterElements: update at index position c goes to Y[c with c[axis] = idx[c]].
// The updates that can land on output element o are those whose coordinates off
// the axis equal o's, i.e. one line along the axis of the indices, walked in
// order. Parameters: n (output elements), data dims[8], indices dims[8],
// indices strides[8] (all right-aligned), axis slot (1..8), failure code.
@compute @workgroup_size(WG)
fn scatter_elements(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let axis = p[25];
    var v = load_x(i);
    var rest = i;
    var line = 0u;
    var here = 0u;
    var inside = true;
    for (var d = MAX_RANK; d > 0u; d -= 1u) {
        let dim = p[d];
        let coord = rest % dim;
        rest = rest / dim;
        if (d == axis) {
            here = coord;
        } else {
            inside = inside && coord < p[8u + d];
            line += coord * p[16u + d];
        }
    }
    if (inside) {
        let size = p[axis];
        let count = p[8u + axis];
        let stride = p[16u + axis];
        for (var j = 0u; j < count; j += 1u) {
            let at = line + j * stride;
            let idx = resolve(at, size, p[26]);
            if (idx < 0) {
                return;
            }
            if (u32(idx) == here) {
                v = fold(v, load_update(at));
            }
        }
    }
    store_y(i, v);
}

// ScatterND: indices [tuples..., k]; update slice t goes to the slice of Y the
// k-tuple t picks. Output element i lies in slice i / slice (its position among
// the slices of the first k dims) at element i % slice; every tuple is walked in
// order and folded in where it picks that slice. Parameters: n (output elements),
// slice (elements), k, tuples, sizes[8] and strides in slices[8] of the first k
// data axes, failure codes[8].
@compute @workgroup_size(WG)
fn scatter_nd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let slice = p[1];
    let k = p[2];
    let tuples = p[3];
    let mine = i / slice;
    let s = i % slice;
    var v = load_x(i);
    for (var t = 0u; t < tuples; t += 1u) {
        var picked = 0u;
        for (var j = 0u; j < k; j += 1u) {
            let idx = resolve(t * k + j, p[4u + j], p[20u + j]);
            if (idx < 0) {
                return;
            }
            picked += u32(idx) * p[12u + j];
        }
        if (picked == mine) {
            v = fold(v, load_update(t * slice + s));
        }
    }
    store_y(i, v);
}

