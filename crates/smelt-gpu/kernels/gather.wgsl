// Gather along one axis: Y[o, j, w] = X[o, idx[j], w] for data viewed as
// [outer, axis, inner]. Indices are i32, or i64 read as their low word
// (IDX64 = 1; indices beyond +-2^31 are not supported). Negative indices count
// from the end; an out-of-range one is reported through the status words
// (status.wgsl, appended) and its output is left unwritten: the run fails.
//
// ESIZE 4 (4- and 8-byte data): one thread per output word, inner counted in
// words. ESIZE 1 or 2: elements packed four or two to a word; one thread per
// output word gathers each of its lanes (inner counted in elements), so no two
// threads write the same word; lanes past the output's end keep what the buffer held.
//
// Parameters (u32): threads (output words), axis length, index count, inner,
// failure code, output elements (packed only).

override WG: u32 = 256u;
override IDX64: u32 = 1u;
override ESIZE: u32 = 4u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> indices: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>, 2>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

// The unit (word, or packed element) of x that unit i of y holds, or -1 after
// reporting an index out of range.
fn source(i: u32) -> i32 {
    let axis = p[1];
    let count = p[2];
    let inner = p[3];
    let w = i % inner;
    let j = (i / inner) % count;
    let o = i / (inner * count);
    var idx = indices[j * (1u + IDX64)];
    let given = idx;
    if (idx < 0) {
        idx += i32(axis);
    }
    if (idx < 0 || idx >= i32(axis) || (IDX64 == 1u && !fits_i32(j))) {
        report_failure(p[4], given);
        return -1;
    }
    return i32((o * axis + u32(idx)) * inner + w);
}

// Whether the i64 index j is its low word sign-extended (|index| < 2^31).
fn fits_i32(j: u32) -> bool {
    let low = indices[j * 2u];
    let high = indices[j * 2u + 1u];
    return high == select(0, -1, low < 0);
}

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    if (ESIZE == 4u) {
        let s = source(i);
        if (s >= 0) {
            y[i] = x[u32(s)];
        }
        return;
    }
    // 8 or 16 bits (min keeps the shifts valid when ESIZE is 4).
    let bits = 8u * min(ESIZE, 2u);
    let per = 32u / bits;
    let mask = 0xffffffffu >> (32u - bits);
    var word = 0u;
    for (var l = 0u; l < per; l += 1u) {
        let e = i * per + l;
        if (e < p[5]) {
            let s = source(e);
            if (s < 0) {
                return;
            }
            word |= ((x[u32(s) / per] >> (bits * (u32(s) % per))) & mask) << (bits * l);
        } else {
            word |= y[i] & (mask << (bits * l));
        }
    }
    y[i] = word;
}
