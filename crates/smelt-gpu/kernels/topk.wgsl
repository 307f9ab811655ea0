// TopK along one axis, in two passes over data viewed as [outer, n, inner].
//
// topk_rank: one thread per input element. Its rank is the number of elements of
// its row that come before it (better value, or equal value and lower index: the
// ONNX tie rule, a strict total order). Elements of rank < k write their index at
// position rank of the indices output. Every element of a row is compared with
// every other (n^2 work per row), which is right for every n and k and needs no
// shared memory; the launcher leaves very long axes to the CPU.
//
// topk_sort (rows of at most SORT_N elements): one workgroup per row sorts
// (key, index) pairs in shared memory with a bitonic network, the same strict
// order as the rank pass, and writes the first k indices. Padding past n has the
// worst key and indices >= n, so it sorts after every real element.
//
// topk_values: one thread per 32-bit word of the values output, copying the
// selected elements from the input through the indices (2-byte values two per
// word, so no two threads write the same word).
//
// Values compare through an order-preserving unsigned key (hi, lo): NaN above
// everything (all NaNs equal), -0 equal to +0, as the CPU reference orders them.
//
// Parameters (u32): rank: threads (outer * n * inner), n, inner, k.
//                   sort: rows (outer * inner), n, inner, k, sort size (a
//                   power of two >= n, <= SORT_N).
//                   values: words, n, inner, k, elements (outer * k * inner).

override WG: u32 = 256u;
// 0 f32, 1 f16, 2 i32, 3 i64.
override ELEM: u32 = 0u;
// 1 largest first, 0 smallest first.
override LARGEST: u32 = 1u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read_write> indices: array<u32>;
@group(0) @binding(3) var<storage, read> p: array<u32>;

fn f32_key(b: u32) -> u32 {
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return 0xffffffffu;
    }
    if (b == 0x80000000u) {
        return 0x80000000u;
    }
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn f16_key(h: u32) -> u32 {
    if ((h & 0x7fffu) > 0x7c00u) {
        return 0xffffu;
    }
    if (h == 0x8000u) {
        return 0x8000u;
    }
    return select(h | 0x8000u, (~h) & 0xffffu, (h & 0x8000u) != 0u);
}

// The key of element e of x.
fn key(e: u32) -> vec2<u32> {
    switch ELEM {
        case 0u: { return vec2<u32>(f32_key(x[e]), 0u); }
        case 1u: { return vec2<u32>(f16_key((x[e / 2u] >> (16u * (e % 2u))) & 0xffffu), 0u); }
        case 2u: { return vec2<u32>(x[e] ^ 0x80000000u, 0u); }
        default: { return vec2<u32>(x[2u * e + 1u] ^ 0x80000000u, x[2u * e]); }
    }
}

fn greater(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x > b.x || (a.x == b.x && a.y > b.y);
}

@compute @workgroup_size(WG)
fn topk_rank(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // Both entries share one binding layout; the values buffer is bound but not
    // written here.
    _ = &out;
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p[0]) {
        return;
    }
    let n = p[1];
    let inner = p[2];
    let k = p[3];
    let j = t % inner;
    let i = (t / inner) % n;
    let o = t / (inner * n);
    let base = o * n * inner + j;
    let mine = key(base + i * inner);
    var rank = 0u;
    for (var r = 0u; r < n && rank < k; r += 1u) {
        let other = key(base + r * inner);
        var better: bool;
        if (LARGEST == 1u) {
            better = greater(other, mine);
        } else {
            better = greater(mine, other);
        }
        if (better || (r < i && all(other == mine))) {
            rank += 1u;
        }
    }
    if (rank < k) {
        let at = (o * k + rank) * inner + j;
        indices[2u * at] = i;
        indices[2u * at + 1u] = 0u;
    }
}

const SORT_N: u32 = 1024u;
var<workgroup> sort_keys: array<vec2<u32>, SORT_N>;
var<workgroup> sort_ids: array<u32, SORT_N>;

// Whether (ka, ia) comes strictly before (kb, ib) in the output.
fn before(ka: vec2<u32>, ia: u32, kb: vec2<u32>, ib: u32) -> bool {
    var better: bool;
    if (LARGEST == 1u) {
        better = greater(ka, kb);
    } else {
        better = greater(kb, ka);
    }
    return better || (all(ka == kb) && ia < ib);
}

@compute @workgroup_size(WG)
fn topk_sort(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    _ = &out;
    let row = wid.x + wid.y * nwg.x;
    // No early return: every thread must reach every barrier.
    let live = row < p[0];
    let n = p[1];
    let inner = p[2];
    let k = p[3];
    let j = row % inner;
    let o = row / inner;
    let base = o * n * inner + j;
    let worst = select(vec2<u32>(0xffffffffu), vec2<u32>(0u), LARGEST == 1u);
    // The sort covers the next power of two at or above n (at most SORT_N).
    let size_n = p[4];
    for (var e = lid.x; e < size_n; e += WG) {
        var kv = worst;
        if (live && e < n) {
            kv = key(base + e * inner);
        }
        sort_keys[e] = kv;
        sort_ids[e] = e;
    }
    workgroupBarrier();
    for (var size = 2u; size <= size_n; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var a = lid.x; a < size_n; a += WG) {
                let b = a ^ stride;
                if (b > a) {
                    let ka = sort_keys[a];
                    let kb = sort_keys[b];
                    let ia = sort_ids[a];
                    let ib = sort_ids[b];
                    // Blocks alternate direction until the last merge.
                    let swap = select(before(ka, ia, kb, ib), before(kb, ib, ka, ia), (a & size) == 0u);
                    if (swap) {
                        sort_keys[a] = kb;
                        sort_keys[b] = ka;
                        sort_ids[a] = ib;
                        sort_ids[b] = ia;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (!live) {
        return;
    }
    for (var r = lid.x; r < k; r += WG) {
        let at = (o * k + r) * inner + j;
        indices[2u * at] = sort_ids[r];
        indices[2u * at + 1u] = 0u;
    }
}

// The input element that output element e (of [outer, k, inner]) holds.
fn source(e: u32) -> u32 {
    let n = p[1];
    let inner = p[2];
    let k = p[3];
    let j = e % inner;
    let o = e / (inner * k);
    return (o * n + indices[2u * e]) * inner + j;
}

@compute @workgroup_size(WG)
fn topk_values(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * WG;
    if (w >= p[0]) {
        return;
    }
    switch ELEM {
        case 1u: {
            let e = 2u * w;
            let s0 = source(e);
            var word = (x[s0 / 2u] >> (16u * (s0 % 2u))) & 0xffffu;
            if (e + 1u < p[4]) {
                let s1 = source(e + 1u);
                word |= ((x[s1 / 2u] >> (16u * (s1 % 2u))) & 0xffffu) << 16u;
            } else {
                // The last word of an odd count: keep the half past the end.
                word |= out[w] & 0xffff0000u;
            }
            out[w] = word;
        }
        case 3u: {
            out[w] = x[2u * source(w / 2u) + w % 2u];
        }
        default: {
            out[w] = x[source(w)];
        }
    }
}
