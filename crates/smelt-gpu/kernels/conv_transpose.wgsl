// ConvTranspose (1-D, 2-D and 3-D; 1-D and 2-D run as 3-D with leading spatial
// dims of size 1), one thread per output element, as the gather form of the
// scatter the op defines: input position i of a dim lands on output
// o = i*stride + k*dilation - pad, so output o sums, over kernel offsets k with
// (o + pad - k*dilation) a non-negative multiple of stride below the input size,
// and over the group's input channels c:
//   Y[n, g*Cog + m, o] = act(bias + sum W[g*Cig + c, m, k] * X[n, g*Cig + c, i])
// Accumulates in f32; `T` (f32 or f16) is declared before this file, and
// activation.wgsl before that.
//
// Parameters (u32): N, C_in, ID, IH, IW, C_out, OD, OH, OW, KD, KH, KW,
// stride d/h/w, pad d/h/w (i32 bits; negative when output_shape asks for more
// than the full result), dilation d/h/w, Cin per group, Cout per group, has_bias.

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> w: array<T>;
@group(0) @binding(2) var<storage, read_write> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

// The input index output o reads through kernel offset k along one dim, or -1.
fn source_index(o: u32, k: u32, stride: u32, pad: i32, dilation: u32, size: u32) -> i32 {
    let t = i32(o) + pad - i32(k * dilation);
    if (t < 0 || u32(t) % stride != 0u) {
        return -1;
    }
    let i = u32(t) / stride;
    if (i >= size) {
        return -1;
    }
    return i32(i);
}

@compute @workgroup_size(WG)
fn conv_transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let C = p[1];
    let ID = p[2];
    let IH = p[3];
    let IW = p[4];
    let CO = p[5];
    let OD = p[6];
    let OH = p[7];
    let OW = p[8];
    let KD = p[9];
    let KH = p[10];
    let KW = p[11];
    let cig = p[21];
    let cog = p[22];
    if (idx >= p[0] * CO * OD * OH * OW) {
        return;
    }
    let ow = idx % OW;
    var r = idx / OW;
    let oh = r % OH;
    r = r / OH;
    let od = r % OD;
    r = r / OD;
    let co = r % CO;
    let n = r / CO;
    let g = co / cog;
    let m = co % cog;
    let in_plane = ID * IH * IW;
    let ksize = KD * KH * KW;
    var acc = 0.0;
    for (var kd = 0u; kd < KD; kd += 1u) {
        let id = source_index(od, kd, p[12], bitcast<i32>(p[15]), p[18], ID);
        if (id < 0) {
            continue;
        }
        for (var kh = 0u; kh < KH; kh += 1u) {
            let ih = source_index(oh, kh, p[13], bitcast<i32>(p[16]), p[19], IH);
            if (ih < 0) {
                continue;
            }
            for (var kw = 0u; kw < KW; kw += 1u) {
                let iw = source_index(ow, kw, p[14], bitcast<i32>(p[17]), p[20], IW);
                if (iw < 0) {
                    continue;
                }
                let pos = (u32(id) * IH + u32(ih)) * IW + u32(iw);
                let koff = (kd * KH + kh) * KW + kw;
                for (var c = 0u; c < cig; c += 1u) {
                    let ci = g * cig + c;
                    acc += f32(w[(ci * cog + m) * ksize + koff]) * f32(x[(n * C + ci) * in_plane + pos]);
                }
            }
        }
    }
    if (p[23] != 0u) {
        acc += f32(bias[co]);
    }
    y[idx] = T(activate(acc));
}
