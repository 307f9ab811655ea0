//! Einsum: parses the equation (explicit `->` or implicit output, `...`
//! broadcasting, repeated labels) and takes each output dim from the operands.

use super::all_present;
use super::dims::{broadcast_dims, unify};
use crate::{Dim, Fact, Shape};
use std::collections::BTreeMap;

/// One term of the equation: its labels in order and where `...` stands.
#[derive(Debug, PartialEq)]
pub(crate) struct Term {
    pub(crate) letters: Vec<char>,
    /// Position of the ellipsis among the letters (0 = before the first).
    pub(crate) ellipsis: Option<usize>,
}

/// A parsed equation. Implicit outputs are made explicit: the ellipsis (when any
/// operand has one) first, then the letters used once, in character order.
#[derive(Debug, PartialEq)]
pub(crate) struct Equation {
    pub(crate) inputs: Vec<Term>,
    pub(crate) output: Term,
}

fn parse_term(t: &str, equation: &str) -> Result<Term, String> {
    let mut letters = Vec::new();
    let mut ellipsis = None;
    let mut rest = t;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("...") {
            if ellipsis.is_some() {
                return Err(format!("term '{t}' of equation '{equation}' has more than one '...'"));
            }
            ellipsis = Some(letters.len());
            rest = after;
        } else if c.is_ascii_alphabetic() {
            letters.push(c);
            rest = &rest[1..];
        } else {
            return Err(format!("equation '{equation}' has '{c}' where a letter or '...' is expected"));
        }
    }
    Ok(Term { letters, ellipsis })
}

pub(crate) fn parse(equation: &str) -> Result<Equation, String> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let inputs = lhs.split(',').map(|t| parse_term(t, equation)).collect::<Result<Vec<_>, _>>()?;
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for t in &inputs {
        for &c in &t.letters {
            *counts.entry(c).or_default() += 1;
        }
    }
    let any_ellipsis = inputs.iter().any(|t| t.ellipsis.is_some());
    let output = match rhs {
        Some(r) => {
            let out = parse_term(r, equation)?;
            for (i, c) in out.letters.iter().enumerate() {
                if !counts.contains_key(c) {
                    return Err(format!("output label '{c}' of equation '{equation}' appears in no input"));
                }
                if out.letters[..i].contains(c) {
                    return Err(format!("output label '{c}' of equation '{equation}' appears twice"));
                }
            }
            if out.ellipsis.is_some() && !any_ellipsis {
                return Err(format!("equation '{equation}' has '...' in the output but in no input"));
            }
            out
        }
        None => Term {
            letters: counts.iter().filter(|(_, &n)| n == 1).map(|(&c, _)| c).collect(),
            ellipsis: any_ellipsis.then_some(0),
        },
    };
    Ok(Equation { inputs, output })
}

pub(super) fn einsum(equation: &str, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let facts = all_present(inputs, 1)?;
    let dtype = facts[0].dtype;
    if let Some(f) = facts.iter().find(|f| f.dtype != dtype) {
        return Err(format!("operands must share one dtype, got {dtype} and {}", f.dtype));
    }
    let eq = parse(equation)?;
    if eq.inputs.len() != facts.len() {
        return Err(format!(
            "equation '{equation}' names {} operand(s), but the node has {} input(s)",
            eq.inputs.len(),
            facts.len()
        ));
    }
    let mut sizes: BTreeMap<char, Dim> = BTreeMap::new();
    // `None` once some operand with an ellipsis has an unknown rank.
    let mut ellipsis_dims: Option<Vec<Dim>> = Some(Vec::new());
    for (i, (term, fact)) in eq.inputs.iter().zip(&facts).enumerate() {
        let Some(d) = fact.shape.dims() else {
            if term.ellipsis.is_some() {
                ellipsis_dims = None;
            }
            continue;
        };
        let n = term.letters.len();
        let ell_rank = match term.ellipsis {
            Some(_) if d.len() >= n => d.len() - n,
            None if d.len() == n => 0,
            _ => {
                return Err(format!(
                    "operand {i} {} has rank {}, but its term in '{equation}' has {n} label(s){}",
                    fact.shape,
                    d.len(),
                    if term.ellipsis.is_some() { " and '...'" } else { "" }
                ))
            }
        };
        let at = term.ellipsis.unwrap_or(n);
        for (j, &c) in term.letters.iter().enumerate() {
            let dim = &d[if j < at { j } else { j + ell_rank }];
            let merged = match sizes.get(&c) {
                Some(prev) => unify(prev, dim).ok_or_else(|| {
                    format!(
                        "label '{c}' of '{equation}' is {prev} in one place and {dim} in operand {i} {}",
                        fact.shape
                    )
                })?,
                None => dim.clone(),
            };
            sizes.insert(c, merged);
        }
        if let (Some(acc), Some(_)) = (&ellipsis_dims, term.ellipsis) {
            let own = &d[at..at + ell_rank];
            ellipsis_dims = Some(broadcast_dims(acc, own).ok_or_else(|| {
                format!("the '...' dims of operand {i} {} do not broadcast with the others", fact.shape)
            })?);
        }
    }
    let mut out = Vec::new();
    let at = eq.output.ellipsis.unwrap_or(eq.output.letters.len());
    for (j, c) in eq.output.letters.iter().enumerate() {
        if j == at {
            match &ellipsis_dims {
                Some(e) => out.extend(e.iter().cloned()),
                None => return Ok(vec![Fact::new(dtype, Shape::unknown())]),
            }
        }
        out.push(sizes.get(c).cloned().unwrap_or(Dim::Unknown));
    }
    if at == eq.output.letters.len() && eq.output.ellipsis.is_some() {
        match &ellipsis_dims {
            Some(e) => out.extend(e.iter().cloned()),
            None => return Ok(vec![Fact::new(dtype, Shape::unknown())]),
        }
    }
    Ok(vec![Fact::new(dtype, Shape::new(out))])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::parse;
    use crate::{Op, Shape};

    fn einsum(eq: &str) -> Op {
        Op::Einsum { equation: eq.to_string() }
    }

    #[test]
    fn explicit_and_implicit_outputs() {
        let a = f32(shape!["b", 3, 4]);
        let b = f32(shape!["b", 4, 5]);
        assert_eq!(one(&einsum("bij,bjk->bik"), &[&a, &b]).shape, shape!["b", 3, 5]);
        assert_eq!(one(&einsum("bij, bjk"), &[&a, &b]).shape, shape![3, 5]);
        assert_eq!(one(&einsum("ij->ji"), &[&f32(shape![2, 3])]).shape, shape![3, 2]);
        assert_eq!(one(&einsum("ba"), &[&f32(shape![2, 3])]).shape, shape![3, 2]);
        assert_eq!(one(&einsum("ii->i"), &[&f32(shape![4, 4])]).shape, shape![4]);
        assert_eq!(one(&einsum("ii"), &[&f32(shape![4, 4])]).shape, shape![]);
        assert_eq!(one(&einsum("i,j->ij"), &[&f32(shape![2]), &f32(shape![3])]).shape, shape![2, 3]);
    }

    #[test]
    fn ellipsis_broadcasts() {
        let q = f32(shape!["b", 12, "s", 64]);
        let k = f32(shape!["b", 12, "t", 64]);
        assert_eq!(one(&einsum("...qd,...kd->...qk"), &[&q, &k]).shape, shape!["b", 12, "s", "t"]);
        let bcast = one(&einsum("...ij,...jk"), &[&f32(shape![5, 1, 2, 3]), &f32(shape![4, 3, 6])]);
        assert_eq!(bcast.shape, shape![5, 4, 2, 6]);
        let mid = one(&einsum("a...c->ca..."), &[&f32(shape![2, 7, 8, 3])]);
        assert_eq!(mid.shape, shape![3, 2, 7, 8]);
        let open = one(&einsum("...ij->...ji"), &[&f32(Shape::unknown())]);
        assert_eq!(open.shape, Shape::unknown());
    }

    #[test]
    fn einsum_errors() {
        let e = err(&einsum("ij,jk->ik"), &[&f32(shape![2, 3]), &f32(shape![4, 5])]);
        assert!(e.contains("'j'") && e.contains("3") && e.contains("4"), "{e}");
        assert!(err(&einsum("ij->ik"), &[&f32(shape![2, 3])]).contains("'k'"));
        assert!(err(&einsum("ijk"), &[&f32(shape![2, 3])]).contains("rank 2"));
        assert!(err(&einsum("ij,jk"), &[&f32(shape![2, 3])]).contains("2 operand"));
        assert!(err(&einsum("i1"), &[&f32(shape![2, 3])]).contains("'1'"));
        assert!(err(&einsum("ii"), &[&f32(shape![2, 3])]).contains("'i'"));
    }

    #[test]
    fn implicit_output_sorts_letters() {
        let eq = parse("Ba,aC").unwrap();
        assert_eq!(eq.output.letters, vec!['B', 'C']);
    }
}
