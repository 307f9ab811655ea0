// Softmax and LogSoftmax along one axis, one workgroup of WG threads per row.
// Rows are (outer, inner) pairs over an axis of length L at stride inner.
// Parameters (u32): rows, L, inner. Grid: rows folded into (x, y).

override WG: u32 = 256u;
override LOG: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> sx: array<f32>;
@group(0) @binding(1) var<storage, read_write> sy: array<f32>;
@group(0) @binding(2) var<storage, read> sp: array<u32>;

@compute @workgroup_size(WG)
fn softmax(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= sp[0]) {
        return;
    }
    let L = sp[1];
    let inner = sp[2];
    let base = (row / inner) * L * inner + row % inner;
    let lane = lid.x;
    var m = bitcast<f32>(0xff800000u);
    for (var j = lane; j < L; j += WG) {
        m = max(m, sx[base + j * inner]);
    }
    m = reduce_max(lane, m);
    var s = 0.0;
    for (var j = lane; j < L; j += WG) {
        s += exp(sx[base + j * inner] - m);
    }
    s = reduce_sum(lane, s);
    for (var j = lane; j < L; j += WG) {
        let v = sx[base + j * inner] - m;
        if (LOG == 1u) {
            sy[base + j * inner] = v - log(s);
        } else {
            sy[base + j * inner] = exp(v) / s;
        }
    }
}

