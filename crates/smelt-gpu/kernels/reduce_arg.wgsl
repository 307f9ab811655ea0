// ArgMax/ArgMin along one axis, one workgroup of WG threads per output: each
// thread scans a strided share of the axis for its best (value, index), then the
// workgroup merges the candidates in workgroup memory. `T` (f32 or f16) is
// declared before this file. The output is i64, written as two u32 words.
//
// Parameters (u32 words): outputs, n (axis length), inner (elements after the axis).

override WG: u32 = 64u;
// 0 ArgMax, 1 ArgMin.
override PICK: u32 = 0u;
// 1 picks the last of equal values (select_last_index), 0 the first.
override LAST: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> indices: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

var<workgroup> shared_val: array<f32, 256>;
var<workgroup> shared_idx: array<u32, 256>;

// NaN by its bits (compilers may assume `v != v` is false).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether (v, i) should be picked over (w, k), both real candidates: a NaN wins,
// then the larger (ArgMax) or smaller (ArgMin) value, then the first index (the
// last with LAST = 1).
fn arg_better(v: f32, i: u32, w: f32, k: u32) -> bool {
    let index_wins = select((i < k), (i > k), LAST == 1u);
    if (is_nan(v) || is_nan(w)) {
        if (is_nan(v) && is_nan(w)) {
            return index_wins;
        }
        return is_nan(v);
    }
    if (v == w) {
        return index_wins;
    }
    return select((v < w), (v > w), PICK == 0u);
}

// No candidate yet (a lane past the end of the axis).
const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(WG)
fn arg_pick(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = wid.x + wid.y * nwg.x;
    if (o >= p[0]) {
        return;
    }
    let lane = lid.x;
    let n = p[1];
    let inner = p[2];
    let base = (o / inner) * n * inner + o % inner;
    var best = 0.0;
    var at = NONE;
    for (var j = lane; j < n; j += WG) {
        let v = f32(x[base + j * inner]);
        if (at == NONE || arg_better(v, j, best, at)) {
            best = v;
            at = j;
        }
    }
    shared_val[lane] = best;
    shared_idx[lane] = at;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            let k = shared_idx[lane + s];
            if (k != NONE && (shared_idx[lane] == NONE
                || arg_better(shared_val[lane + s], k, shared_val[lane], shared_idx[lane]))) {
                shared_val[lane] = shared_val[lane + s];
                shared_idx[lane] = k;
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        // i64 output: low word the index, high word zero.
        indices[2u * o] = shared_idx[0];
        indices[2u * o + 1u] = 0u;
    }
}
