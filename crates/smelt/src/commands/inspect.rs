//! `smelt inspect`: what a model is, what it costs, and whether Smelt can run it.

use anyhow::{Context, Result};
use smelt_ir::{Dim, Graph, Tensor};
use smelt_runtime::analysis::analyse;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model file.
    model: PathBuf,
    /// Show the graph after Smelt's passes (folding, fusion), node by node.
    #[arg(long)]
    optimized: bool,
    /// With gpu or gpu:N: show where each node runs on that GPU (kernel, host
    /// shape arithmetic, alias, CPU fallback) and the transfers that implies.
    #[arg(long)]
    device: Option<String>,
    /// Concrete shape for an input, as NAME=d0,d1,...; repeatable.
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    shapes: Vec<String>,
    /// Value for a symbolic dimension, as SYMBOL=N (e.g. batch=8); repeatable.
    /// Unbound symbols are taken as 1.
    #[arg(long = "dim", value_name = "SYMBOL=N")]
    dims: Vec<String>,
}

pub fn main(args: Args) -> Result<()> {
    let bytes = std::fs::read(&args.model).with_context(|| format!("cannot read {}", args.model.display()))?;
    let summary = smelt_onnx::summarize(&bytes).with_context(|| format!("{}", args.model.display()))?;
    println!("model      {}", args.model.display());
    println!("format     ONNX IR {}, producer '{}'", summary.ir_version, summary.producer);
    let opsets: Vec<String> = summary
        .opset_imports
        .iter()
        .map(|(d, v)| format!("{}:{v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    println!("opsets     {}", opsets.join(", "));
    println!("inputs");
    for io in &summary.inputs {
        println!("  {:<24} {:<6} [{}]", io.name, io.dtype, io.dims.as_ref().map_or("..".to_string(), |d| d.join(", ")));
    }
    println!("outputs");
    for io in &summary.outputs {
        println!("  {:<24} {:<6} [{}]", io.name, io.dtype, io.dims.as_ref().map_or("..".to_string(), |d| d.join(", ")));
    }
    println!("parameters {} ({})", group_digits(summary.parameter_count), human_bytes(summary.parameter_bytes));
    println!("ops        {} nodes", summary.node_count);
    for h in &summary.op_histogram {
        let domain =
            if h.domain.is_empty() || h.domain == "ai.onnx" { String::new() } else { format!("{}::", h.domain) };
        println!("  {:<28} {}", format!("{domain}{}", h.op_type), h.count);
    }
    if summary.unsupported.is_empty() {
        println!("unsupported none: Smelt can run every node");
    } else {
        println!("unsupported {} node(s) Smelt cannot run:", summary.unsupported.len());
        for u in &summary.unsupported {
            println!("  {:<28} node '{}'", u.op_type, u.node);
        }
        return Ok(());
    }

    let model = smelt_onnx::load_model(&args.model)?;
    let device = args.device.as_deref().map(str::parse::<smelt_runtime::Device>).transpose()?;
    // The passes of the backend the graph is shown for.
    let passes = match device {
        Some(smelt_runtime::Device::Gpu(_)) => smelt_passes::OptimizeOptions::default(),
        _ => smelt_runtime::CpuBackend::passes(),
    };
    let (graph, report) = smelt_runtime::prepare_graph(model.graph, Some(&passes))?;
    if let Some(r) = &report {
        println!("optimised  {} nodes after passes ({})", graph.nodes.len(), r);
    }
    if let Some(device) = device {
        match device {
            smelt_runtime::Device::Gpu(ordinal) => {
                let backend = smelt_runtime::GpuBackend::new(ordinal)?;
                println!("placement on {}", smelt_runtime::Backend::name(&backend));
                for line in backend.placement_report(&graph)? {
                    println!("{line}");
                }
            }
            smelt_runtime::Device::Cpu => println!("placement  every node on the CPU"),
        }
    }
    let inputs = example_inputs(&graph, &args)?;
    let shapes: Vec<String> =
        graph.inputs.iter().zip(&inputs).map(|(&v, t)| format!("{}={:?}", graph.name(v), t.shape())).collect();
    match analyse(&graph, &inputs) {
        Ok(a) => {
            println!("at shapes  {}", shapes.join(" "));
            println!("  FLOPs              {}", human_flops(a.total_flops));
            println!(
                "  planned peak       {} of intermediates (one buffer each: {})",
                human_bytes(a.arena_bytes as u64),
                human_bytes(a.unplanned_bytes as u64)
            );
            for (nodes, chunks) in &a.split {
                let (first, last) = (&graph.nodes[nodes.start].name, &graph.nodes[nodes.end - 1].name);
                let which = match nodes.len() {
                    1 => format!("node {} ({first})", nodes.start),
                    n => format!("{n} nodes, {}..{} ({first} to {last}),", nodes.start, nodes.end),
                };
                println!("  split batch        {which} run in {chunks} chunks of the batch");
            }
            if args.optimized {
                print_graph(&graph, Some(&a.shapes), &a.node_flops);
            }
        }
        Err(e) => {
            println!("at shapes  {}: cannot analyse: {e}", shapes.join(" "));
            if args.optimized {
                print_graph(&graph, None, &[]);
            }
        }
    }
    Ok(())
}

/// Zero tensors of each input's shape, with symbolic dims bound from `--dim`/`--shape`.
fn example_inputs(graph: &Graph, args: &Args) -> Result<Vec<Tensor>> {
    let mut symbols: HashMap<String, usize> = HashMap::new();
    for d in &args.dims {
        let (k, v) = super::split_pair(d, "--dim")?;
        symbols.insert(k.to_string(), v.parse().with_context(|| format!("bad --dim value '{v}'"))?);
    }
    let mut explicit: HashMap<String, Vec<usize>> = HashMap::new();
    for s in &args.shapes {
        let (k, v) = super::split_pair(s, "--shape")?;
        explicit.insert(k.to_string(), super::parse_dims(v)?);
    }
    let mut out = Vec::new();
    for &v in &graph.inputs {
        let fact = graph.fact(v);
        let name = graph.name(v);
        let shape = match explicit.get(name) {
            Some(s) => s.clone(),
            None => match fact.shape.dims() {
                Some(dims) => dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => *n,
                        Dim::Sym(s) => symbols.get(s).copied().unwrap_or(1),
                        Dim::Unknown => 1,
                    })
                    .collect(),
                None => anyhow::bail!("input '{name}' has no declared shape: give it with --shape {name}=d0,d1,..."),
            },
        };
        out.push(
            graph.input_defaults.get(&v).map(|t| (**t).clone()).unwrap_or_else(|| Tensor::zeros(fact.dtype, &shape)),
        );
    }
    Ok(out)
}

fn print_graph(graph: &Graph, shapes: Option<&[Vec<usize>]>, flops: &[u64]) {
    println!("graph after passes");
    for (i, node) in graph.nodes.iter().enumerate() {
        let describe = |v: usize| match shapes {
            Some(s) => format!("{}{:?}", graph.name(v), s[v]),
            None => format!("{}{}", graph.name(v), graph.fact(v).shape),
        };
        let ins: Vec<String> = node
            .inputs
            .iter()
            .map(|v| match v {
                None => "-".to_string(),
                Some(v) if graph.constant(*v).is_some() => format!("const {}", describe(*v)),
                Some(v) => describe(*v),
            })
            .collect();
        let outs: Vec<String> = node.outputs.iter().map(|&o| describe(o)).collect();
        let fused = node.op.activation().map(|a| format!(" +{}", a.name())).unwrap_or_default();
        let cost = flops.get(i).filter(|&&f| f > 0).map(|&f| format!("  {}", human_flops(f))).unwrap_or_default();
        println!("  {:<24} {}{fused}({}) -> {}{cost}", node.name, node.op.name(), ins.join(", "), outs.join(", "));
    }
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_flops(f: u64) -> String {
    let f = f as f64;
    if f >= 1e9 {
        format!("{:.2} GFLOP", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.2} MFLOP", f / 1e6)
    } else {
        format!("{f} FLOP")
    }
}
