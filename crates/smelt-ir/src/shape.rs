//! Shapes whose dimensions may be symbolic (`batch`, `seq`) or unknown.

use std::fmt;

/// One dimension of a graph-level shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known size.
    Fixed(usize),
    /// A named size chosen by the caller at run time (`batch`, `seq`).
    Sym(String),
    /// A size shape inference could not determine before run time.
    Unknown,
}

impl Dim {
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether a concrete size can stand for this dimension.
    pub fn admits(&self, n: usize) -> bool {
        match self {
            Dim::Fixed(m) => *m == n,
            _ => true,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A graph-level shape. `None` rank means even the rank is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    pub dims: Option<Vec<Dim>>,
}

impl Shape {
    pub fn unknown() -> Shape {
        Shape { dims: None }
    }

    pub fn new(dims: Vec<Dim>) -> Shape {
        Shape { dims: Some(dims) }
    }

    pub fn fixed(dims: &[usize]) -> Shape {
        Shape { dims: Some(dims.iter().map(|&d| Dim::Fixed(d)).collect()) }
    }

    /// A shape of the given rank whose every dimension is unknown.
    pub fn of_rank(rank: usize) -> Shape {
        Shape { dims: Some(vec![Dim::Unknown; rank]) }
    }

    pub fn rank(&self) -> Option<usize> {
        self.dims.as_ref().map(|d| d.len())
    }

    pub fn dims(&self) -> Option<&[Dim]> {
        self.dims.as_deref()
    }

    /// The concrete sizes, if every dimension is fixed.
    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.dims.as_ref()?.iter().map(Dim::fixed).collect()
    }

    /// Whether a concrete shape fits this one.
    pub fn admits(&self, concrete: &[usize]) -> bool {
        match &self.dims {
            None => true,
            Some(d) => d.len() == concrete.len() && d.iter().zip(concrete).all(|(d, &n)| d.admits(n)),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dims {
            None => f.write_str("[..]"),
            Some(d) => {
                f.write_str("[")?;
                for (i, dim) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{dim}")?;
                }
                f.write_str("]")
            }
        }
    }
}
