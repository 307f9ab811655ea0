//! Einsum's equation against concrete operand shapes: each operand's label per
//! dim, the output labels (explicit `->` or numpy's implicit order), and every
//! label's size, broadcast over operands.
//!
//! Shape inference (`infer::einsum`) parses the same grammar over symbolic dims;
//! this is the run-time form both backends contract with.

/// An index: letters are 0..52 (`a`–`z`, `A`–`Z`), the dims `...` stands for
/// are 52.. (right-aligned across operands, as numpy broadcasts them).
pub type Label = usize;
pub const LETTERS: usize = 52;

/// The label of an equation letter, `None` for anything else.
pub fn letter(c: u8) -> Option<Label> {
    match c {
        b'a'..=b'z' => Some((c - b'a') as usize),
        b'A'..=b'Z' => Some((c - b'A') as usize + 26),
        _ => None,
    }
}

/// Sort key giving numpy's implicit output order (character code: capitals first).
pub fn char_code(l: Label) -> u8 {
    if l < 26 {
        b'a' + l as u8
    } else {
        b'A' + (l - 26) as u8
    }
}

/// A term of the equation: its letters, with where `...` sits if present.
struct Term {
    letters: Vec<Label>,
    ellipsis_at: Option<usize>,
}

fn parse_term(s: &str) -> Result<Term, String> {
    let bytes = s.as_bytes();
    let (mut letters, mut ellipsis_at) = (Vec::new(), None);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'.' {
            if !s[i..].starts_with("...") || ellipsis_at.is_some() {
                return Err(format!("term '{s}' has a malformed or repeated ellipsis"));
            }
            ellipsis_at = Some(letters.len());
            i += 3;
        } else {
            letters.push(letter(bytes[i]).ok_or_else(|| format!("term '{s}' has '{}'", bytes[i] as char))?);
            i += 1;
        }
    }
    Ok(Term { letters, ellipsis_at })
}

/// The parsed equation against concrete operand shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct EinsumSpec {
    /// Each operand's label per dim (repeated labels kept: diagonals).
    pub inputs: Vec<Vec<Label>>,
    pub output: Vec<Label>,
    /// Size of every label (broadcast over operands), indexed by label.
    pub sizes: Vec<usize>,
}

impl EinsumSpec {
    pub fn new(equation: &str, shapes: &[&[usize]]) -> Result<EinsumSpec, String> {
        let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq.as_str(), None),
        };
        let terms: Vec<Term> = lhs.split(',').map(parse_term).collect::<Result<_, _>>()?;
        if terms.len() != shapes.len() {
            return Err(format!("'{equation}' names {} operands, got {}", terms.len(), shapes.len()));
        }
        // How many dims each `...` covers, and the widest.
        let mut ellipsis_dims = Vec::with_capacity(terms.len());
        for (t, shape) in terms.iter().zip(shapes) {
            let e = shape.len().checked_sub(t.letters.len()).filter(|&e| t.ellipsis_at.is_some() || e == 0);
            ellipsis_dims.push(
                e.ok_or_else(|| format!("'{equation}': a term does not match its operand's rank {}", shape.len()))?,
            );
        }
        let widest = ellipsis_dims.iter().copied().max().unwrap_or(0);
        let expand = |t: &Term, e: usize| -> Vec<Label> {
            let mut labels = t.letters.clone();
            if let Some(at) = t.ellipsis_at {
                labels.splice(at..at, (widest - e..widest).map(|j| LETTERS + j));
            }
            labels
        };
        let inputs: Vec<Vec<Label>> = terms.iter().zip(&ellipsis_dims).map(|(t, &e)| expand(t, e)).collect();
        let mut sizes = vec![1usize; LETTERS + widest];
        let mut seen = vec![0usize; LETTERS + widest];
        for (labels, shape) in inputs.iter().zip(shapes) {
            for (&l, &d) in labels.iter().zip(shape.iter()) {
                if seen[l] > 0 && sizes[l] != d && d != 1 && sizes[l] != 1 {
                    return Err(format!("'{equation}': index sizes {} and {d} disagree", sizes[l]));
                }
                if seen[l] == 0 || sizes[l] == 1 {
                    sizes[l] = d;
                }
                seen[l] += 1;
            }
        }
        let output = match rhs {
            Some(r) => {
                let t = parse_term(r)?;
                let labels = expand(&t, widest);
                for (i, &l) in labels.iter().enumerate() {
                    if labels[..i].contains(&l) {
                        return Err(format!("'{equation}': output repeats an index"));
                    }
                    if l < LETTERS && seen[l] == 0 {
                        return Err(format!("'{equation}': output index is in no input"));
                    }
                }
                labels
            }
            None => {
                let mut once: Vec<Label> = (0..LETTERS).filter(|&l| seen[l] == 1).collect();
                once.sort_by_key(|&l| char_code(l));
                (LETTERS..LETTERS + widest).chain(once).collect()
            }
        };
        Ok(EinsumSpec { inputs, output, sizes })
    }

    /// The output's dims.
    pub fn out_shape(&self) -> Vec<usize> {
        self.output.iter().map(|&l| self.sizes[l]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sizes_and_implicit_output() {
        let spec = EinsumSpec::new("...ij,jk", &[&[7, 2, 3], &[3, 4]]).unwrap();
        assert_eq!(spec.out_shape(), vec![7, 2, 4]);
        assert_eq!(spec.inputs[1], vec![letter(b'j').unwrap(), letter(b'k').unwrap()]);
        // Implicit order is by character code: capitals first.
        let spec = EinsumSpec::new("ba,Cb", &[&[2, 3], &[4, 2]]).unwrap();
        assert_eq!(spec.output, vec![letter(b'C').unwrap(), letter(b'a').unwrap()]);
        let e = EinsumSpec::new("ij,jk->ik", &[&[2, 3], &[4, 5]]).unwrap_err();
        assert!(e.contains("index sizes 3 and 4 disagree"), "{e}");
    }
}
