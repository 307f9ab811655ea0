// Clip(x, min?, max?) with the bounds read from the device (they may be computed
// by earlier nodes), so one pipeline serves every bound. Applied as
// min(max(x, lo), hi) in two steps: lo > hi gives hi everywhere (the ONNX rule)
// and NaN passes through. `T` (f32 or f16) is declared before this file.
//
// Parameters (u32 words): n, has lo (0/1), has hi (0/1).

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> lo: array<T>;
@group(0) @binding(2) var<storage, read_write> hi: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn clip(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    var v = x[i];
    // Comparisons with NaN are false, so a NaN is kept by both steps.
    if (p[1] == 1u && v < lo[0]) {
        v = lo[0];
    }
    if (p[2] == 1u && v > hi[0]) {
        v = hi[0];
    }
    y[i] = v;
}
