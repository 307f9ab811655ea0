// Resize, one thread per output element. The host turns the op's attributes,
// scales/sizes and roi into a table per resized dim (src/ops/resize.rs): for
// every output position of that dim, `taps` pairs (input offset already times
// the dim's stride, weight as f32 bits), or the marker 0xffffffff in the first
// offset where the position extrapolates (tf_crop_and_resize). Interpolation is
// separable, so an output element is the sum over every combination of taps of
// the product of their weights times the input element they address. A dim the
// resize leaves alone has taps = 0 and reads its own coordinate.
//
// Parameters (u32): n (output elements), rank, fill word 0, fill word 1, then per
// dim (4 words): output size, input stride, taps, table offset (in words of p);
// then the tables. `T` is declared before this file.

override WG: u32 = 256u;
// Words per element for `nearest` (1, or 2 for 8-byte types through T = u32).
override WORDS: u32 = 1u;
// 1: the fill is an f32 (bits in word 0) converted to T; 0: raw element words.
override FLOAT_FILL: u32 = 1u;
// Bytes per element for `nearest_packed` (1 or 2; T = u32 words hold 4 / BYTES).
override BYTES: u32 = 4u;

const MAX_RANK: u32 = 8u;
const OUTSIDE: u32 = 0xffffffffu;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

// Per dim, this output coordinate's first table entry (0 for an untouched dim)
// and tap count; `src` collects the offset of the untouched dims. Returns false
// where some dim extrapolates.
struct Taps {
    base: array<u32, 8>,
    taps: array<u32, 8>,
    src: u32,
    combos: u32,
    inside: bool,
}

fn locate(i: u32) -> Taps {
    var t: Taps;
    t.src = 0u;
    t.combos = 1u;
    t.inside = true;
    let rank = min(p[1], MAX_RANK);
    var rem = i;
    for (var d = rank; d > 0u; d -= 1u) {
        let h = 4u + (d - 1u) * 4u;
        let o = rem % p[h];
        rem = rem / p[h];
        let taps = p[h + 2u];
        t.taps[d - 1u] = taps;
        t.base[d - 1u] = 0u;
        if (taps == 0u) {
            t.src += o * p[h + 1u];
        } else {
            let b = p[h + 3u] + o * 2u * taps;
            if (p[b] == OUTSIDE) {
                t.inside = false;
            }
            t.base[d - 1u] = b;
            t.combos *= taps;
        }
    }
    return t;
}

@compute @workgroup_size(WG)
fn interpolate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let t = locate(i);
    if (!t.inside) {
        y[i] = T(bitcast<f32>(p[2]));
        return;
    }
    let rank = min(p[1], MAX_RANK);
    var acc = 0.0;
    for (var c = 0u; c < t.combos; c += 1u) {
        var r = c;
        var off = t.src;
        var w = 1.0;
        for (var d = 0u; d < rank; d += 1u) {
            let taps = t.taps[d];
            if (taps != 0u) {
                let e = t.base[d] + 2u * (r % taps);
                r = r / taps;
                off += p[e];
                w *= bitcast<f32>(p[e + 1u]);
            }
        }
        acc += w * f32(x[off]);
    }
    y[i] = T(acc);
}

// Nearest: every resized dim has one tap of weight 1, so this is a gather that
// copies elements (WORDS words each) unchanged.
@compute @workgroup_size(WG)
fn nearest(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let t = locate(i);
    if (!t.inside) {
        for (var k = 0u; k < WORDS; k += 1u) {
            if (FLOAT_FILL == 1u) {
                y[i * WORDS + k] = T(bitcast<f32>(p[2]));
            } else {
                y[i * WORDS + k] = T(p[2u + k]);
            }
        }
        return;
    }
    let rank = min(p[1], MAX_RANK);
    var off = t.src;
    for (var d = 0u; d < rank; d += 1u) {
        if (t.taps[d] != 0u) {
            off += p[t.base[d]];
        }
    }
    for (var k = 0u; k < WORDS; k += 1u) {
        y[i * WORDS + k] = x[off * WORDS + k];
    }
}

// Nearest for 1- and 2-byte elements packed in the u32 words of x and y: one
// thread per output word, so no two threads write the same word. The fill is
// the element's bits in the low bytes of word 0.
@compute @workgroup_size(WG)
fn nearest_packed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * WG;
    let per = 4u / BYTES;
    if (w * per >= p[0]) {
        return;
    }
    // A right shift, as 1 << 32 would not be defined for BYTES = 4.
    let mask = 0xffffffffu >> (32u - 8u * BYTES);
    let rank = min(p[1], MAX_RANK);
    var word = 0u;
    for (var e = 0u; e < per; e += 1u) {
        let i = w * per + e;
        if (i >= p[0]) {
            break;
        }
        let t = locate(i);
        var v = u32(p[2]) & mask;
        if (t.inside) {
            var off = t.src;
            for (var d = 0u; d < rank; d += 1u) {
                if (t.taps[d] != 0u) {
                    off += p[t.base[d]];
                }
            }
            let byte = off * BYTES;
            v = (u32(x[byte / 4u]) >> (8u * (byte % 4u))) & mask;
        }
        word |= v << (8u * BYTES * e);
    }
    y[w] = T(word);
}
