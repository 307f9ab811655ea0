//! numpy `.npy` files (format versions 1.0–3.0), little-endian, C order.

use anyhow::{bail, Context, Result};
use smelt_ir::{DType, Tensor};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

fn dtype_from_descr(descr: &str) -> Result<DType> {
    let (endian, code) = descr.split_at(1);
    if endian == ">" && !matches!(code, "i1" | "u1" | "b1") {
        bail!("big-endian data ('{descr}') is not supported; save the array with a little-endian dtype");
    }
    Ok(match code {
        "f4" => DType::F32,
        "f2" => DType::F16,
        "f8" => DType::F64,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "i2" => DType::I16,
        "u2" => DType::U16,
        "i4" => DType::I32,
        "u4" => DType::U32,
        "i8" => DType::I64,
        "u8" => DType::U64,
        "b1" => DType::Bool,
        // ml_dtypes' bfloat16 is saved as 2-byte opaque data.
        "V2" => DType::BF16,
        _ => bail!("unsupported numpy dtype '{descr}'"),
    })
}

/// Pulls the value text of `'key':` out of the header dict.
fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let start = header.find(&pat).with_context(|| format!("the .npy header has no '{key}'"))? + pat.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') { rest.find(')').map(|i| i + 1) } else { rest.find([',', '}']) }
        .with_context(|| format!("the .npy header's '{key}' is malformed"))?;
    Ok(rest[..end].trim())
}

pub fn parse(bytes: &[u8]) -> Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        bail!("not a .npy file (bad magic)");
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                bail!("truncated .npy header");
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => bail!("unsupported .npy format version {v}"),
    };
    let data_start = header_start + header_len;
    let header = std::str::from_utf8(bytes.get(header_start..data_start).context("truncated .npy header")?)
        .context(".npy header is not text")?;
    let descr = header_field(header, "descr")?.trim_matches(|c| c == '\'' || c == '"');
    let dtype = dtype_from_descr(descr)?;
    if header_field(header, "fortran_order")? != "False" {
        bail!("Fortran-order arrays are not supported; save with numpy.ascontiguousarray");
    }
    let shape_text = header_field(header, "shape")?.trim_matches(|c| c == '(' || c == ')');
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().with_context(|| format!("bad dimension '{s}' in .npy shape")))
        .collect::<Result<_>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).context(".npy shape is too large")?;
    let want = count.checked_mul(dtype.size()).context(".npy shape is too large")?;
    let data = &bytes[data_start..];
    if data.len() != want {
        bail!("the .npy data holds {} bytes, its header says {want} ({} {:?})", data.len(), dtype, shape);
    }
    Ok(Tensor::from_bytes(dtype, &shape, data)?)
}

pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{}", path.display()))
}

pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let shape = match t.shape() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", t.dtype().numpy_descr());
    // Pad so the data starts on a 64-byte boundary, ending the header with '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.bytes().len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(t.bytes());
    out
}

pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, to_bytes(t)).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_dtype_and_rank() {
        for dtype in DType::ALL {
            for shape in [vec![], vec![3], vec![2, 3, 4]] {
                let n: usize = shape.iter().product();
                let bytes: Vec<u8> = (0..n * dtype.size())
                    .map(|i| if dtype == DType::Bool { (i % 2) as u8 } else { (i * 7 + 1) as u8 })
                    .collect();
                let t = Tensor::from_bytes(dtype, &shape, &bytes).unwrap();
                let back = parse(&to_bytes(&t)).unwrap();
                assert_eq!(back, t, "{dtype} {shape:?}");
            }
        }
    }

    #[test]
    fn header_is_64_byte_aligned() {
        let t = Tensor::from_vec(&[5], vec![1.5f32; 5]).unwrap();
        let b = to_bytes(&t);
        assert_eq!((b.len() - 20) % 64, 0);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(parse(b"hello").is_err());
        let mut b = to_bytes(&Tensor::from_vec(&[4], vec![1.0f32; 4]).unwrap());
        b.truncate(b.len() - 3);
        let err = parse(&b).unwrap_err().to_string();
        assert!(err.contains("header says"), "{err}");
    }
}
