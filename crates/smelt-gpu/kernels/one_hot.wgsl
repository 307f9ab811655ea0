// OneHot: output [outer, depth, inner] around the new axis; element (o, v, i) is
// `on` where index [o, i] is v (or v - depth: negative indices count from the
// end), else `off`. Indices outside [-depth, depth) give all-off rows, as the CPU
// and ONNX say: nothing to report. One thread per output element, which writes
// every element once, so there is no fill pass to order against.
//
// IDX: 0 i32, 1 i64 (an index beyond +-2^31 is out of range for any depth that
// fits i32), 2 f32 (truncated toward zero, as the CPU does). WORDS: u32 words
// per value element (1 or 2); `values` holds [off, on].
//
// Parameters (u32): n (output elements), depth, inner.

override WG: u32 = 256u;
override IDX: u32 = 0u;
override WORDS: u32 = 1u;

@group(0) @binding(0) var<storage, read_write> indices: array<u32>;
@group(0) @binding(1) var<storage, read_write> values: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn one_hot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e >= p[0]) {
        return;
    }
    let depth = p[1];
    let inner = p[2];
    let v = (e / inner) % depth;
    let n = (e / (inner * depth)) * inner + e % inner;
    var fits = true;
    var idx = 0;
    if (IDX == 0u) {
        idx = bitcast<i32>(indices[n]);
    } else if (IDX == 1u) {
        idx = bitcast<i32>(indices[2u * n]);
        fits = bitcast<i32>(indices[2u * n + 1u]) == select(0, -1, idx < 0);
    } else {
        let f = bitcast<f32>(indices[n]);
        // Past +-2^31 it cannot hit any position (i32() would clamp); NaN
        // reads as 0, as Rust's `as` makes it on the CPU.
        fits = !(abs(f) >= 2147483648.0);
        idx = select(i32(f), 0, f != f);
    }
    if (idx < 0) {
        idx += i32(depth);
    }
    let hit = fits && idx == i32(v);
    let pick = select(0u, WORDS, hit);
    for (var w = 0u; w < WORDS; w += 1u) {
        y[e * WORDS + w] = values[pick + w];
    }
}
