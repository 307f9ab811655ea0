// GatherElements and GatherND for 4- and 8-byte elements (WORDS u32 words each),
// one thread per output element. Indices are i32, or i64 read as their low word
// (IDX64 = 1) after checking the high word is its sign extension (|index| < 2^31;
// larger ones are reported as out of range, with the low word as the value).
// Negative indices count from the end of their axis; one out of range is reported
// through the status words (status.wgsl, appended), the thread writes nothing and
// the run fails at this node with the CPU's message.

override WG: u32 = 256u;
override IDX64: u32 = 1u;
// u32 words per element: 1 or 2.
override WORDS: u32 = 1u;

const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> indices: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<storage, read_write> status: array<atomic<u32>, 2>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

// Index element j resolved against an axis of `size`, or -1 after reporting
// `code` when it is out of range.
fn resolve(j: u32, size: u32, code: u32) -> i32 {
    let given = indices[j * (1u + IDX64)];
    var idx = given;
    if (idx < 0) {
        idx += i32(size);
    }
    var fits = true;
    if (IDX64 == 1u) {
        fits = indices[j * 2u + 1u] == select(0, -1, given < 0);
    }
    if (idx < 0 || idx >= i32(size) || !fits) {
        report_failure(code, given);
        return -1;
    }
    return idx;
}

fn copy_element(dst: u32, src: u32) {
    for (var w = 0u; w < WORDS; w += 1u) {
        y[dst * WORDS + w] = x[src * WORDS + w];
    }
}

// GatherElements: Y[c] = X[c with c[axis] = idx[c]]; Y has the indices' shape.
// Parameters: n, indices dims[8] (right-aligned, padded with 1), data strides[8]
// (0 at the axis), axis size, axis stride, failure code.
@compute @workgroup_size(WG)
fn gather_elements(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    var rest = i;
    var base = 0u;
    for (var d = MAX_RANK; d > 0u; d -= 1u) {
        let dim = p[d];
        base += (rest % dim) * p[8u + d];
        rest = rest / dim;
    }
    let idx = resolve(i, p[17], p[19]);
    if (idx < 0) {
        return;
    }
    copy_element(i, base + u32(idx) * p[18]);
}

// GatherND: indices [batch..., tuples..., k]; each k-tuple picks a slice of X
// (within its batch) and Y is the slices in tuple order. Parameters: n (output
// elements), slice (elements), k, tuples per batch, data elements per batch,
// sizes[8], strides[8] and failure codes[8] of the k indexed data axes.
@compute @workgroup_size(WG)
fn gather_nd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p[0]) {
        return;
    }
    let slice = p[1];
    let k = p[2];
    let t = i / slice;
    var offset = (t / p[3]) * p[4];
    for (var j = 0u; j < k; j += 1u) {
        let idx = resolve(t * k + j, p[5u + j], p[21u + j]);
        if (idx < 0) {
            return;
        }
        offset += u32(idx) * p[13u + j];
    }
    copy_element(i, offset + i % slice);
}

