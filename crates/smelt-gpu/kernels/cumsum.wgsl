// CumSum along one axis (exclusive and reverse variants): one thread per line of
// `n` elements at stride `inner`, summing in order as the CPU does, so float
// results round the same way. Elements are read as raw words: f32 adds in f32,
// i32 wraps, i64 is a (low, high) pair of u32 words with a carry.
//
// Parameters (u32 words): lines, n, inner, exclusive (0/1), reverse (0/1).

override WG: u32 = 256u;
// 0 f32, 1 i32, 2 i64.
override ELEM: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

fn add(acc: vec2<u32>, e: u32) -> vec2<u32> {
    switch ELEM {
        case 0u: { return vec2<u32>(bitcast<u32>(bitcast<f32>(acc.x) + bitcast<f32>(x[e])), 0u); }
        case 1u: { return vec2<u32>(acc.x + x[e], 0u); }
        default: {
            let lo = acc.x + x[2u * e];
            return vec2<u32>(lo, acc.y + x[2u * e + 1u] + select(0u, 1u, lo < acc.x));
        }
    }
}

fn store(e: u32, v: vec2<u32>) {
    if (ELEM == 2u) {
        y[2u * e] = v.x;
        y[2u * e + 1u] = v.y;
    } else {
        y[e] = v.x;
    }
}

@compute @workgroup_size(WG)
fn cumsum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let line = gid.x + gid.y * nwg.x * WG;
    if (line >= p[0]) {
        return;
    }
    let n = p[1];
    let inner = p[2];
    let base = (line / inner) * n * inner + line % inner;
    // Zero in every type is all-zero bits.
    var acc = vec2<u32>(0u, 0u);
    for (var j = 0u; j < n; j++) {
        let k = select(j, n - 1u - j, p[4] == 1u);
        let e = base + k * inner;
        if (p[3] == 1u) {
            store(e, acc);
            acc = add(acc, e);
        } else {
            acc = add(acc, e);
            store(e, acc);
        }
    }
}
