// GroupNormalization, and InstanceNormalization as its case of one channel per
// group: one workgroup of WG threads per (batch, group) row of `len` contiguous
// elements (the group's channels times the spatial size). Mean and variance are
// two passes over the row, as on the CPU, which keeps the variance accurate when
// the mean is large. `T` (f32 or f16) is declared before this file; arithmetic
// is in f32. The workgroup sum comes from workgroup_reduce.wgsl.
//
// Parameters (u32 words): rows, len, spatial, channels per group, groups,
// per-channel scale/bias (1) or per-group (0), epsilon (f32 bits).

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> scale: array<T>;
@group(0) @binding(2) var<storage, read_write> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn group_norm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p[0]) {
        return;
    }
    let lane = lid.x;
    let len = p[1];
    let spatial = p[2];
    let per_group = p[3];
    let g = row % p[4];
    let base = row * len;
    var s = 0.0;
    for (var j = lane; j < len; j += WG) {
        s += f32(x[base + j]);
    }
    let mean = reduce_sum(lane, s) / f32(len);
    var q = 0.0;
    for (var j = lane; j < len; j += WG) {
        let d = f32(x[base + j]) - mean;
        q += d * d;
    }
    let inv = 1.0 / sqrt(reduce_sum(lane, q) / f32(len) + bitcast<f32>(p[6]));
    for (var j = lane; j < len; j += WG) {
        let k = select(g, g * per_group + j / spatial, p[5] == 1u);
        y[base + j] = T((f32(x[base + j]) - mean) * (f32(scale[k]) * inv) + f32(bias[k]));
    }
}
