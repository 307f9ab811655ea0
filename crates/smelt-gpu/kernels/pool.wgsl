// 2-D max and average pooling (and global pooling, as one window covering the
// plane), one thread per output element.
//
// Parameters (u32): planes (N*C), H, W, OH, OW, KH, KW, stride h, stride w, pad
// top, pad left, pad bottom, pad right, dilation h, dilation w, count_include_pad.

override WG: u32 = 256u;
// 0 = max, 1 = average.
override MODE: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn pool2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let H = p[1];
    let W = p[2];
    let OH = p[3];
    let OW = p[4];
    if (i >= p[0] * OH * OW) {
        return;
    }
    let ow = i % OW;
    let oh = (i / OW) % OH;
    let plane = i / (OW * OH);
    let h0 = i32(oh * p[7]) - i32(p[9]);
    let w0 = i32(ow * p[8]) - i32(p[10]);
    var best = bitcast<f32>(0xff800000u); // -inf
    var sum = 0.0;
    var count = 0u;
    var padded = 0u;
    for (var kh = 0u; kh < p[5]; kh += 1u) {
        let ih = h0 + i32(kh * p[13]);
        for (var kw = 0u; kw < p[6]; kw += 1u) {
            let iw = w0 + i32(kw * p[14]);
            if (ih >= 0 && ih < i32(H) && iw >= 0 && iw < i32(W)) {
                let v = x[(plane * H + u32(ih)) * W + u32(iw)];
                best = max(best, v);
                sum += v;
                count += 1u;
            } else if (ih >= -i32(p[9]) && ih < i32(H + p[11]) && iw >= -i32(p[10]) && iw < i32(W + p[12])) {
                padded += 1u;
            }
        }
    }
    if (MODE == 0u) {
        y[i] = best;
    } else {
        var divisor = count;
        if (p[15] != 0u) {
            divisor = count + padded;
        }
        y[i] = sum / f32(max(divisor, 1u));
    }
}
