// Hardmax along one axis: 1 at the first largest element of each row, 0
// elsewhere. One workgroup of WG threads per row of `n` elements at stride
// `inner`. As on the CPU, the row's first element starts as the pick and only a
// strictly larger value replaces it, so a NaN is never picked unless it comes
// first (then it stays). `T` (f32 or f16) is declared before this file.
//
// Parameters (u32 words): rows, n, inner.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

var<workgroup> shared_val: array<f32, 256>;
var<workgroup> shared_idx: array<u32, 256>;

// No candidate (a lane past the row's end, or only NaNs seen).
const NONE: u32 = 0xffffffffu;

// NaN by its bits (compilers may assume `v != v` is false).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(WG)
fn hardmax(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p[0]) {
        return;
    }
    let lane = lid.x;
    let n = p[1];
    let inner = p[2];
    let base = (row / inner) * n * inner + row % inner;
    var best = 0.0;
    var at = NONE;
    for (var j = lane; j < n; j += WG) {
        let v = f32(x[base + j * inner]);
        if (!is_nan(v) && (at == NONE || v > best)) {
            best = v;
            at = j;
        }
    }
    shared_val[lane] = best;
    shared_idx[lane] = at;
    workgroupBarrier();
    // Merge: the larger value, or the smaller index of equal values.
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            let k = shared_idx[lane + s];
            let v = shared_val[lane + s];
            let mine = shared_idx[lane];
            if (k != NONE && (mine == NONE || v > shared_val[lane] || (v == shared_val[lane] && k < mine))) {
                shared_val[lane] = v;
                shared_idx[lane] = k;
            }
        }
        workgroupBarrier();
    }
    var pick = shared_idx[0];
    if (pick == NONE || is_nan(f32(x[base]))) {
        pick = 0u;
    }
    for (var j = lane; j < n; j += WG) {
        y[base + j * inner] = T(select(0.0, 1.0, j == pick));
    }
}
