pub mod bench;
pub mod conformance;
pub mod devices;
pub mod inspect;
pub mod run;
pub mod serve;

use anyhow::{bail, Context, Result};

/// Parses `NAME=VALUE` command-line pairs.
pub fn split_pair<'a>(arg: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k, v)),
        _ => bail!("expected {what} as NAME=VALUE, got '{arg}'"),
    }
}

/// Parses `d0,d1,...` into dimensions.
pub fn parse_dims(text: &str) -> Result<Vec<usize>> {
    text.split(',')
        .map(|d| d.trim().parse::<usize>().with_context(|| format!("bad dimension '{d}' in '{text}'")))
        .collect()
}
