// LpNormalization (p = 1 or 2) along one axis: one workgroup of WG threads per
// row of `n` elements at stride `inner`. y = x / norm, and 0 where the norm is 0
// (as on the CPU). `T` (f32 or f16) is declared before this file; arithmetic is
// in f32. The workgroup sum comes from workgroup_reduce.wgsl.
//
// Parameters (u32 words): rows, n, inner, p.

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn lp_norm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p[0]) {
        return;
    }
    let lane = lid.x;
    let n = p[1];
    let inner = p[2];
    let base = (row / inner) * n * inner + row % inner;
    var s = 0.0;
    for (var j = lane; j < n; j += WG) {
        let v = f32(x[base + j * inner]);
        s += select(v * v, abs(v), p[3] == 1u);
    }
    let total = reduce_sum(lane, s);
    let norm = select(sqrt(total), total, p[3] == 1u);
    let k = select(1.0 / norm, 0.0, norm == 0.0);
    for (var j = lane; j < n; j += WG) {
        y[base + j * inner] = T(f32(x[base + j * inner]) * k);
    }
}
