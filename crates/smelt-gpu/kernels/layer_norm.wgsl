// LayerNormalization over the last `cols` elements of each row, one workgroup of
// WG threads per row; scale and bias have `cols` elements.
// Parameters (u32): rows, cols, epsilon (f32 bits), has_bias. Grid: rows folded
// into (x, y).

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> scale: array<f32>;
@group(0) @binding(2) var<storage, read_write> shift: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn layer_norm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p[0]) {
        return;
    }
    let cols = p[1];
    let base = row * cols;
    let lane = lid.x;
    var s = 0.0;
    for (var j = lane; j < cols; j += WG) {
        s += x[base + j];
    }
    let mean = reduce_sum(lane, s) / f32(cols);
    var q = 0.0;
    for (var j = lane; j < cols; j += WG) {
        let d = x[base + j] - mean;
        q += d * d;
    }
    let inv = inverseSqrt(reduce_sum(lane, q) / f32(cols) + bitcast<f32>(p[2]));
    for (var j = lane; j < cols; j += WG) {
        var v = (x[base + j] - mean) * inv * scale[j];
        if (p[3] != 0u) {
            v += shift[j];
        }
        y[base + j] = v;
    }
}
