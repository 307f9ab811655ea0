//! ConvTranspose geometry on concrete dims: per spatial dim, the output size and
//! the output positions cut from its start, from `strides`, `dilations`, `pads`,
//! `output_padding`, `output_shape` and `auto_pad`.

use crate::{AutoPad, ConvTransposeAttrs};

/// The window of one ConvTranspose call, one entry per spatial dim.
#[derive(Clone, Debug, PartialEq)]
pub struct SpatialGeometry {
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub output: Vec<usize>,
    /// Output positions cut from the start of each dim; negative when an explicit
    /// `output_shape` is larger than the full result.
    pub pads: Vec<isize>,
}

/// One value per spatial dim: empty means `default` everywhere.
fn per_dim(name: &str, values: &[usize], rank: usize, default: usize) -> Result<Vec<usize>, String> {
    match values.len() {
        0 => Ok(vec![default; rank]),
        n if n == rank => Ok(values.to_vec()),
        n => Err(format!("{name} has {n} values for {rank} spatial dims")),
    }
}

/// The geometry for input dims `x` and weight dims `w`, which the caller has
/// checked are both `[N, C, spatial..]` of one rank (at least 3).
pub fn spatial_geometry(attrs: &ConvTransposeAttrs, x: &[usize], w: &[usize]) -> Result<SpatialGeometry, String> {
    let c = &attrs.conv;
    let rank = x.len() - 2;
    let kernel = &w[2..];
    if let Some(ks) = &c.kernel_shape {
        if ks != kernel {
            return Err(format!("kernel_shape {ks:?} differs from W's spatial dims {kernel:?}"));
        }
    }
    let strides = per_dim("strides", &c.strides, rank, 1)?;
    let dilations = per_dim("dilations", &c.dilations, rank, 1)?;
    let output_padding = per_dim("output_padding", &attrs.output_padding, rank, 0)?;
    // Begin and end pads from `pads` (`[b1, .., bn, e1, .., en]`).
    let (begin, end) = match c.pads.len() {
        0 => (vec![0; rank], vec![0; rank]),
        n if n == 2 * rank => (c.pads[..rank].to_vec(), c.pads[rank..].to_vec()),
        n => return Err(format!("pads has {n} values for {rank} spatial dims")),
    };
    if strides.contains(&0) || dilations.contains(&0) {
        return Err("strides and dilations must be positive".into());
    }
    let requested = match &attrs.output_shape {
        // Some exporters write the full [N, C, spatial..] shape.
        Some(s) if s.len() == rank + 2 => Some(&s[2..]),
        Some(s) if s.len() == rank => Some(&s[..]),
        Some(s) => return Err(format!("output_shape {s:?} does not have {rank} spatial dims")),
        None => None,
    };
    let same = matches!(c.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
    let mut output = Vec::with_capacity(rank);
    let mut pads = Vec::with_capacity(rank);
    for d in 0..rank {
        let full = (strides[d] * (x[d + 2].max(1) - 1) + output_padding[d] + (kernel[d].max(1) - 1) * dilations[d] + 1)
            as isize;
        // With a target size (given, or the input times the stride for SAME),
        // the padding is whatever makes the full result that size: split evenly,
        // the odd one at the end for SAME_UPPER and at the start for SAME_LOWER
        // (as ONNX's reference does); otherwise the explicit pads apply.
        let target = requested.map(|s| s[d]).or_else(|| same.then(|| x[d + 2] * strides[d]));
        let (out, pad) = match target {
            Some(out) => {
                let total = full - out as isize;
                let pad = match c.auto_pad {
                    AutoPad::SameUpper => total.div_euclid(2),
                    AutoPad::SameLower => total - total.div_euclid(2),
                    _ => begin[d] as isize,
                };
                (out, pad)
            }
            None => {
                let (b, e) = if c.auto_pad == AutoPad::Valid { (0, 0) } else { (begin[d], end[d]) };
                let out = full - (b + e) as isize;
                if out < 0 {
                    return Err(format!("pads {:?} remove more than the full output", c.pads));
                }
                (out as usize, b as isize)
            }
        };
        output.push(out);
        pads.push(pad);
    }
    Ok(SpatialGeometry { strides, dilations, output, pads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConvAttrs;

    fn attrs(
        strides: &[usize],
        pads: &[usize],
        auto_pad: AutoPad,
        output_shape: Option<Vec<usize>>,
    ) -> ConvTransposeAttrs {
        ConvTransposeAttrs {
            conv: ConvAttrs {
                kernel_shape: None,
                strides: strides.to_vec(),
                pads: pads.to_vec(),
                dilations: vec![],
                group: 1,
                auto_pad,
                activation: None,
            },
            output_padding: vec![],
            output_shape,
        }
    }

    #[test]
    fn output_size_from_pads_auto_pad_and_output_shape() {
        let (x, w) = ([1, 1, 3, 3], [1, 2, 3, 3]);
        // Full sizes (3 - 1) × stride + 3 = 9 and 7, less the explicit pads.
        let g = spatial_geometry(&attrs(&[3, 2], &[1, 2, 1, 2], AutoPad::NotSet, None), &x, &w).unwrap();
        assert_eq!((g.output, g.pads), (vec![7, 3], vec![1, 2]));
        // SAME_UPPER: input × stride, the odd pad at the end.
        let g = spatial_geometry(&attrs(&[2, 2], &[], AutoPad::SameUpper, None), &x, &w).unwrap();
        assert_eq!((g.output, g.pads), (vec![6, 6], vec![0, 0]));
        // A requested output larger than the full result cuts a negative pad.
        let g = spatial_geometry(&attrs(&[1, 1], &[], AutoPad::NotSet, Some(vec![1, 2, 6, 5])), &x, &w).unwrap();
        assert_eq!(g.output, vec![6, 5]);
        let e = spatial_geometry(&attrs(&[1, 1, 1], &[], AutoPad::NotSet, None), &x, &w).unwrap_err();
        assert!(e.contains("strides has 3 values for 2 spatial dims"), "{e}");
    }
}
