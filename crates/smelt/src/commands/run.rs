//! `smelt run`: one inference from .npy files to .npy files.

use crate::npy;
use anyhow::{Context, Result};
use smelt_runtime::{Device, Session, SessionOptions};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model file.
    model: PathBuf,
    /// An input as NAME=FILE.npy; repeat for each model input.
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,
    /// Folder to write OUTPUT_NAME.npy files into (created if missing).
    #[arg(long, value_name = "DIR")]
    output_dir: PathBuf,
    /// Where to run: cpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CPU threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Skip graph optimisations (for debugging).
    #[arg(long)]
    no_optimize: bool,
}

pub fn main(args: Args) -> Result<()> {
    let options =
        SessionOptions { device: args.device.parse::<Device>()?, threads: args.threads, optimize: !args.no_optimize };
    let mut inputs = Vec::new();
    for spec in &args.inputs {
        let (name, file) = super::split_pair(spec, "--input")?;
        let tensor = npy::read(file.as_ref()).with_context(|| format!("input '{name}'"))?;
        inputs.push((name.to_string(), tensor));
    }
    let load_start = Instant::now();
    let session = Session::load(&args.model, &options).with_context(|| format!("loading {}", args.model.display()))?;
    let load_time = load_start.elapsed();
    let named: Vec<(&str, &smelt_ir::Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let run_start = Instant::now();
    let outputs = session.run(&named)?;
    let run_time = run_start.elapsed();
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("cannot create {}", args.output_dir.display()))?;
    for (name, tensor) in &outputs {
        let path = args.output_dir.join(format!("{}.npy", file_name_for(name)));
        npy::write(&path, tensor)?;
        eprintln!("{name}: {} {:?} -> {}", tensor.dtype(), tensor.shape(), path.display());
    }
    eprintln!("loaded in {:.1} ms, ran in {:.1} ms on {}", ms(load_time), ms(run_time), session.backend());
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// ONNX names may hold '/' or ':' (`/encoder/layer.0/output`); keep them usable as
/// file names while leaving ordinary names exactly as they are.
fn file_name_for(name: &str) -> String {
    name.chars().map(|c| if matches!(c, '/' | '\\' | ':' | '\0') { '_' } else { c }).collect()
}
