// ScatterND with no reduction in three passes over a scratch array `last` (one
// word per slice position of the output), linear in the work instead of the
// output x tuples scan of indexed_scatter.wgsl:
//   clear: last[pos] = 0 for every slice position;
//   mark:  one thread per index tuple t checks its indices (an index out of range
//          is reported through the status words, status.wgsl appended) and does
//          atomicMax(last[pos], t + 1): the LAST tuple naming a position wins,
//          whatever order the threads run in, which is the CPU's result for
//          duplicate indices (it overwrites in tuple order);
//   write: one thread per output word copies X, or the winning tuple's update.
// Dispatches of one pass run in order, so each sees the previous one's writes.
// Every entry names every binding (phony `_ =` uses where it needs none) so that
// all three share one bind group layout.
//
// Indices are i32, or i64 (IDX64 = 1) with |index| < 2^31. WORDS: u32 words per
// element (1 or 2): with no reduction the dtype does not matter.
//
// Parameters (u32), as indexed_scatter.wgsl's scatter_nd: n (output elements),
// slice (elements), k, tuples, sizes[8] and strides in slices[8] of the first k
// data axes, failure codes[8].

override WG: u32 = 256u;
override IDX64: u32 = 1u;
override WORDS: u32 = 1u;

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> indices: array<i32>;
@group(0) @binding(2) var<storage, read_write> updates: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<u32>;
@group(0) @binding(4) var<storage, read_write> status: array<atomic<u32>, 2>;
@group(0) @binding(5) var<storage, read_write> last: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read> p: array<u32>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Every binding used once, so that each entry's layout is the same.
fn touch_all() {
    _ = x[0];
    _ = indices[0];
    _ = updates[0];
    _ = y[0];
    _ = atomicLoad(&status[0]);
    _ = atomicLoad(&last[0]);
}

@compute @workgroup_size(WG)
fn scatter_nd_clear(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pos = linear_id(gid, nwg);
    if (pos == 0xffffffffu) {
        touch_all();
    }
    if (pos >= p[0] / p[1]) {
        return;
    }
    atomicStore(&last[pos], 0u);
}

@compute @workgroup_size(WG)
fn scatter_nd_mark(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t == 0xffffffffu) {
        touch_all();
    }
    let k = p[2];
    if (t >= p[3]) {
        return;
    }
    var pos = 0u;
    for (var j = 0u; j < k; j += 1u) {
        let at = t * k + j;
        let given = indices[at * (1u + IDX64)];
        let size = p[4u + j];
        var idx = given;
        if (idx < 0) {
            idx += i32(size);
        }
        var fits = true;
        if (IDX64 == 1u) {
            fits = indices[at * 2u + 1u] == select(0, -1, given < 0);
        }
        if (idx < 0 || idx >= i32(size) || !fits) {
            report_failure(p[20u + j], given);
            return;
        }
        pos += u32(idx) * p[12u + j];
    }
    atomicMax(&last[pos], t + 1u);
}

@compute @workgroup_size(WG)
fn scatter_nd_write(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i == 0xffffffffu) {
        touch_all();
    }
    if (i >= p[0] * WORDS) {
        return;
    }
    let slice = p[1];
    let e = i / WORDS;
    let winner = atomicLoad(&last[e / slice]);
    if (winner == 0u) {
        y[i] = x[i];
    } else {
        y[i] = updates[((winner - 1u) * slice + e % slice) * WORDS + i % WORDS];
    }
}
