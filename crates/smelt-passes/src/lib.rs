//! Graph rewrites and memory planning for Smelt's IR.
//!
//! Every rewrite is built the same way: a pass looks at the graph, records the
//! edits it wants in a [`Patch`] (replace a node, remove a node, turn a value into
//! a constant, redirect readers of one value to another) and applies the patch in
//! one step. Passes never mutate the graph while walking it, so each one reads as
//! "find the pattern, describe the replacement".
//!
//! [`optimize`] runs the passes in order until none of them changes anything:
//!
//! 1. [`fold::fold_constants`]: evaluate nodes whose inputs are all constants, and
//!    shape arithmetic (`Shape → Gather → Unsqueeze → Concat`) as far as facts allow;
//! 2. [`identity::remove_identities`]: Identity and inference-mode Dropout;
//! 3. [`conv_bn::fold_conv_batchnorm`]: BatchNormalization into the Conv before it;
//! 4. [`attention::fuse_attention`] (opt-in): `MatMul → scale → mask → Softmax →
//!    MatMul` into one `Attention` node;
//! 5. [`residual::fuse_residual`] (opt-in): `Add(Conv(x), z)` into the Conv;
//! 6. [`gelu::fuse_gelu`]: GELU spelled out with Erf or Tanh into one `Gelu` node;
//! 7. [`epilogue::fuse_epilogues`]: bias Add and activations into Conv/Gemm/MatMul;
//! 8. [`dead::remove_dead_nodes`]: nodes whose outputs nobody reads.
//!
//! Graph inputs and outputs keep their ONNX names through every pass: callers ask
//! for outputs by name. A graph output may end up a constant (when everything it
//! depends on folds), so executors must be able to return constants as outputs.
//! Value ids are *not* stable across [`optimize`], which compacts the value table
//! at the end ([`cleanup::prune_values`]).
//!
//! [`memory`] plans one arena for a graph's intermediate values from their
//! lifetimes.

pub mod attention;
pub mod cleanup;
mod consts;
pub mod conv_bn;
pub mod dead;
pub mod epilogue;
pub mod fold;
pub mod gelu;
pub mod identity;
pub mod memory;
mod optimize;
mod patch;
pub mod residual;
#[cfg(test)]
mod testing;
mod uses;

pub use optimize::{optimize, OptimizeOptions, PassReport};
pub use patch::Patch;

use smelt_ir::{IrError, Op, Tensor};

/// Evaluates one op on constant inputs at compile time. The runtime implements it
/// with its CPU kernels; passes only decide *what* to fold.
pub trait ConstEval {
    /// Runs `op` on `inputs` (`None` = omitted optional input) and returns its
    /// `n_outputs` outputs. An error leaves the node in the graph.
    fn eval(&self, op: &Op, inputs: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>, String>;
}

/// A pass produced an edit that cannot be applied, or left the graph invalid.
/// Either way it is a bug in a pass (or a graph that was invalid to begin with),
/// never a property of the model the caller could fix.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("patch was built for a graph of {expected} values, but the graph now has {found}")]
    StalePatch { expected: usize, found: usize },
    #[error("patch edits node #{index}, but the graph has only {count} nodes")]
    NoSuchNode { index: usize, count: usize },
    #[error("patch edits node '{node}' more than once")]
    NodeEditedTwice { node: String },
    #[error("patch makes '{value}' a constant, but node '{node}' still produces it")]
    ConstantStillProduced { value: String, node: String },
    #[error("redirecting '{from}' forms a cycle")]
    RedirectCycle { from: String },
    #[error(
        "redirecting graph output '{output}' to '{target}' would lose the output's name \
         ('{target}' is a graph input, a constant or another output)"
    )]
    OutputWouldAlias { output: String, target: String },
    #[error("graph is invalid after {pass}: {source}")]
    InvalidGraph {
        pass: &'static str,
        #[source]
        source: IrError,
    },
}
