//! `smelt`: run, inspect and (soon) serve ONNX models.

mod commands;
mod npy;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "smelt", version, about = "Smelt: ONNX inference that speaks Triton's protocol")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model: opset, inputs/outputs, op histogram, parameters, FLOPs,
    /// planned memory and any op Smelt cannot run.
    Inspect(commands::inspect::Args),
    /// Run a model on .npy inputs and write one .npy per output.
    Run(commands::run::Args),
    /// Run ONNX backend test cases from disk and compare with their expected outputs.
    Conformance(commands::conformance::Args),
    /// List the GPU adapters Smelt can use (`--device gpu:N`) and what each offers.
    Devices(commands::devices::Args),
    /// Serve a model repository over Triton's HTTP protocol (KServe v2).
    Serve(commands::serve::Args),
    /// Measure a model's throughput, latency and memory on random inputs.
    Bench(commands::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::main(args),
        Command::Run(args) => commands::run::main(args),
        Command::Conformance(args) => commands::conformance::main(args),
        Command::Devices(args) => commands::devices::main(args),
        Command::Serve(args) => commands::serve::main(args),
        Command::Bench(args) => commands::bench::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
