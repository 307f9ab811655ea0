// LpPool over 1 to 3 spatial dims (fewer run as 3-D with leading dims of size 1),
// one thread per output element: (sum over the window's cells inside the input
// of |x|^p)^(1/p). Padding cells add zero, so only the begin pads matter here
// (the output size, ceil_mode included, comes from the output's shape).
// Accumulates in f32; `T` (f32 or f16) is declared before this file.
//
// Parameters (u32): planes (N*C), ID, IH, IW, OD, OH, OW, KD, KH, KW,
// stride d/h/w, pad begin d/h/w, dilation d/h/w, p.

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

// |v|^e for a whole e >= 1, by repeated multiplication as the CPU's powi.
fn abs_pow(v: f32, e: u32) -> f32 {
    let a = abs(v);
    if (e == 1u) {
        return a;
    }
    if (e == 2u) {
        return a * a;
    }
    var r = 1.0;
    var base = a;
    var k = e;
    loop {
        if ((k & 1u) != 0u) {
            r *= base;
        }
        k = k >> 1u;
        if (k == 0u) {
            break;
        }
        base *= base;
    }
    return r;
}

@compute @workgroup_size(WG)
fn lp_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let ID = p[1];
    let IH = p[2];
    let IW = p[3];
    let OD = p[4];
    let OH = p[5];
    let OW = p[6];
    let e = p[19];
    if (i >= p[0] * OD * OH * OW) {
        return;
    }
    let ow = i % OW;
    var r = i / OW;
    let oh = r % OH;
    r = r / OH;
    let od = r % OD;
    let plane = r / OD;
    let d0 = i32(od * p[10]) - i32(p[13]);
    let h0 = i32(oh * p[11]) - i32(p[14]);
    let w0 = i32(ow * p[12]) - i32(p[15]);
    var sum = 0.0;
    for (var kd = 0u; kd < p[7]; kd += 1u) {
        let id = d0 + i32(kd * p[16]);
        if (id < 0 || id >= i32(ID)) {
            continue;
        }
        for (var kh = 0u; kh < p[8]; kh += 1u) {
            let ih = h0 + i32(kh * p[17]);
            if (ih < 0 || ih >= i32(IH)) {
                continue;
            }
            for (var kw = 0u; kw < p[9]; kw += 1u) {
                let iw = w0 + i32(kw * p[18]);
                if (iw < 0 || iw >= i32(IW)) {
                    continue;
                }
                sum += abs_pow(f32(x[((plane * ID + u32(id)) * IH + u32(ih)) * IW + u32(iw)]), e);
            }
        }
    }
    var v = sum;
    if (e == 2u) {
        v = sqrt(sum);
    } else if (e > 2u && sum > 0.0) {
        v = pow(sum, 1.0 / f32(e));
    }
    y[i] = T(v);
}
