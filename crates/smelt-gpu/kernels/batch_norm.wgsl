// Inference BatchNormalization: y = x * s + t per channel, with
// s = scale / sqrt(var + epsilon) and t = B - mean * s. `T` (f32 or f16) is
// declared before this file; arithmetic is in f32. One thread per element.
//
// Parameters (u32 words): n, channels, spatial (elements per channel plane),
// epsilon (f32 bits).

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> scale: array<T>;
@group(0) @binding(2) var<storage, read_write> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> mean: array<T>;
@group(0) @binding(4) var<storage, read_write> variance: array<T>;
@group(0) @binding(5) var<storage, read_write> y: array<T>;
@group(0) @binding(6) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn batch_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let c = (i / p[2]) % p[1];
    let s = f32(scale[c]) / sqrt(f32(variance[c]) + bitcast<f32>(p[3]));
    let t = f32(bias[c]) - f32(mean[c]) * s;
    y[i] = T(f32(x[i]) * s + t);
}
