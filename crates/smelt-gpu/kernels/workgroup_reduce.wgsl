// Workgroup-wide sum and max through workgroup memory, for kernels that give
// one row to a workgroup of WG (<= 256, a power of two) threads. Prepended to a
// kernel's source by the Rust side; the kernel declares `override WG`.

var<workgroup> partial: array<f32, 256>;

fn reduce_sum(lane: u32, v: f32) -> f32 {
    partial[lane] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            partial[lane] += partial[lane + s];
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

fn reduce_max(lane: u32, v: f32) -> f32 {
    partial[lane] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            partial[lane] = max(partial[lane], partial[lane + s]);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

