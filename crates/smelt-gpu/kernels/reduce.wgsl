// Reduce{Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare} over
// any set of axes (ArgMax/ArgMin are in reduce_arg.wgsl). One workgroup of WG threads
// per output element: each thread folds a strided share of the reduced
// elements, then the workgroup combines the shares in workgroup memory. This
// keeps both shapes fast enough: many short rows (one workgroup each) and one
// long row (WG threads on it). `T` (f32 or f16) is declared before this file;
// arithmetic is in f32.
//
// Reduce parameters (u32 words): outputs, reduced count, kept rank, reduced rank,
// kept dims[8], kept input strides[8], reduced dims[8], reduced input strides[8].
// Dims are listed outermost first; only the first `rank` of each are used.

override WG: u32 = 64u;
// Reduce kind: 0 Sum, 1 Mean, 2 Max, 3 Min, 4 Prod, 5 L1, 6 L2, 7 LogSum,
// 8 LogSumExp, 9 SumSquare (order of src/ops/reduce.rs).
override KIND: u32 = 0u;

const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

var<workgroup> shared_acc: array<f32, 256>;

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

fn pos_inf() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

// NaN by its bits (compilers may assume `v != v` is false); a NaN wins max and min,
// as on the CPU.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn max_nan(a: f32, b: f32) -> f32 {
    return select(a, b, b > a || is_nan(b));
}

fn min_nan(a: f32, b: f32) -> f32 {
    return select(a, b, b < a || is_nan(b));
}

// The identity and combining operation of a kind: Max, Min and Prod have their own;
// every other kind sums.
fn identity(kind: u32) -> f32 {
    switch kind {
        case 2u: { return neg_inf(); }
        case 3u: { return pos_inf(); }
        case 4u: { return 1.0; }
        default: { return 0.0; }
    }
}

fn combine(kind: u32, a: f32, b: f32) -> f32 {
    switch kind {
        case 2u: { return max_nan(a, b); }
        case 3u: { return min_nan(a, b); }
        case 4u: { return a * b; }
        default: { return a + b; }
    }
}

// What each element contributes before combining.
fn contribution(v: f32, m: f32) -> f32 {
    switch KIND {
        case 5u: { return abs(v); }
        case 6u, 9u: { return v * v; }
        case 8u: { return exp(v - m); }
        default: { return v; }
    }
}

// Input offset of the j-th reduced element relative to its output's base.
fn reduced_offset(j: u32) -> u32 {
    let rank = p[3];
    var rest = j;
    var off = 0u;
    for (var d = rank; d > 0u; d -= 1u) {
        let dim = p[20u + d - 1u];
        off += (rest % dim) * p[28u + d - 1u];
        rest = rest / dim;
    }
    return off;
}

fn kept_base(o: u32) -> u32 {
    let rank = p[2];
    var rest = o;
    var off = 0u;
    for (var d = rank; d > 0u; d -= 1u) {
        let dim = p[4u + d - 1u];
        off += (rest % dim) * p[12u + d - 1u];
        rest = rest / dim;
    }
    return off;
}

// Workgroup-wide combine of one value per lane with `kind`'s operation.
fn workgroup_combine(kind: u32, lane: u32, v: f32) -> f32 {
    shared_acc[lane] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            shared_acc[lane] = combine(kind, shared_acc[lane], shared_acc[lane + s]);
        }
        workgroupBarrier();
    }
    let r = shared_acc[0];
    workgroupBarrier();
    return r;
}

// Folds this lane's share of the reduced elements of output `o`.
fn fold_share(kind: u32, lane: u32, base: u32, count: u32, m: f32) -> f32 {
    var acc = identity(kind);
    for (var j = lane; j < count; j += WG) {
        acc = combine(kind, acc, contribution(f32(x[base + reduced_offset(j)]), m));
    }
    return acc;
}

@compute @workgroup_size(WG)
fn reduce_axes(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Uniform across the workgroup, so every lane reaches the barriers.
    let o = wid.x + wid.y * nwg.x;
    if (o >= p[0]) {
        return;
    }
    let lane = lid.x;
    let count = p[1];
    let base = kept_base(o);
    var r = 0.0;
    switch KIND {
        case 2u, 3u, 4u: {
            r = workgroup_combine(KIND, lane, fold_share(KIND, lane, base, count, 0.0));
        }
        case 8u: {
            // LogSumExp = m + log(sum(exp(x - m))) with m the maximum; a maximum of
            // -inf (all -inf or empty), +inf or NaN is the answer itself.
            let m = workgroup_combine(2u, lane, fold_share(2u, lane, base, count, 0.0));
            let s = workgroup_combine(0u, lane, fold_share(0u, lane, base, count, m));
            r = select(m, m + log(s), abs(m) < pos_inf());
        }
        default: {
            r = workgroup_combine(0u, lane, fold_share(0u, lane, base, count, 0.0));
        }
    }
    switch KIND {
        case 1u: { r = select(0.0, r / f32(count), count > 0u); }
        case 6u: { r = sqrt(r); }
        case 7u: { r = log(r); }
        default: {}
    }
    if (lane == 0u) {
        y[o] = T(r);
    }
}
