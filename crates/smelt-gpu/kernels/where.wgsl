// Where(condition, x, y) with numpy broadcasting; the condition is one byte per
// element (bool). x and y are ESIZE bytes per element:
// - 4: one thread per element (word).
// - 8: one thread per output word, each element's two words by two threads.
// - 1, 2: elements packed four or two to a word; one thread per output word picks
//   each of its lanes, so no two threads write the same word. Lanes past the
//   output's end keep what the buffer held.
//
// Parameters (u32): threads, elements, dims[8], cond strides[8], x strides[8],
// y strides[8] (elements; broadcast dims have stride 0).

override WG: u32 = 256u;
override ESIZE: u32 = 4u;
const MAX_RANK: u32 = 8u;

@group(0) @binding(0) var<storage, read_write> cond: array<u32>;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(4) var<storage, read> p: array<u32>;

// Element indices (cond, x, y) that output element i reads.
fn sources(i: u32) -> vec3<u32> {
    var rest = i;
    var s = vec3<u32>(0u);
    for (var k = MAX_RANK; k > 0u; k -= 1u) {
        let dim = p[1u + k];
        let coord = rest % dim;
        rest = rest / dim;
        s += coord * vec3<u32>(p[9u + k], p[17u + k], p[25u + k]);
    }
    return s;
}

fn byte_of(words_index: u32) -> u32 {
    return (cond[words_index / 4u] >> (8u * (words_index % 4u))) & 0xffu;
}

// Lane bits for a packed element type (ESIZE 1 or 2; 4 keeps the shifts valid).
fn lane_bits() -> u32 {
    return 8u * min(ESIZE, 2u);
}

fn lane(word: u32, e: u32) -> u32 {
    let bits = lane_bits();
    let per = 32u / bits;
    return (word >> (bits * (e % per))) & (0xffffffffu >> (32u - bits));
}

@compute @workgroup_size(WG)
fn where_select(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p[0]) {
        return;
    }
    if (ESIZE == 4u) {
        let s = sources(t);
        out[t] = select(b[s.z], a[s.y], byte_of(s.x) != 0u);
        return;
    }
    if (ESIZE == 8u) {
        let s = sources(t / 2u);
        let h = t % 2u;
        out[t] = select(b[2u * s.z + h], a[2u * s.y + h], byte_of(s.x) != 0u);
        return;
    }
    let bits = lane_bits();
    let per = 32u / bits;
    let mask = 0xffffffffu >> (32u - bits);
    var word = 0u;
    for (var l = 0u; l < per; l += 1u) {
        let e = t * per + l;
        if (e < p[1]) {
            let s = sources(e);
            let v = select(lane(b[s.z / per], s.z), lane(a[s.y / per], s.y), byte_of(s.x) != 0u);
            word |= v << (bits * l);
        } else {
            word |= out[t] & (mask << (bits * l));
        }
    }
    out[t] = word;
}
