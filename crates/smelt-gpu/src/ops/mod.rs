//! The kernel registry: one module per kernel family, each exporting a
//! [`Family`]. Adding a family is one `mod` line and one entry in [`FAMILIES`]
//! (see RECIPE.md); the families are tried in order and the first that takes a node
//! builds its kernel. A node no family takes runs on the CPU.

pub mod activation;
pub mod broadcast;
mod cast;
mod channel_norm;
mod clip;
mod compare;
mod conv;
mod conv_transpose;
mod cumsum;
mod einsum;
mod elementwise;
mod gather;
mod hardmax;
mod indexed;
mod int_binary;
mod int_bits;
mod layout;
mod lp_pool;
mod matmul;
mod movement;
mod norm;
mod one_hot;
mod pool;
mod reduce;
mod resize;
mod topk;
mod variadic;
mod where_op;

use crate::kernel::{GpuKernel, KernelRequest, KernelSource};
use crate::Result;

/// A family's builder (see [`Family::build`]).
pub type BuildFn = fn(&KernelRequest) -> Option<Result<Box<dyn GpuKernel>>>;

/// A kernel family: its WGSL sources and the builder that decides whether it runs
/// a node.
pub struct Family {
    pub name: &'static str,
    pub sources: &'static [&'static KernelSource],
    /// `None`: not this family's op, or a dtype/attribute it does not handle (the
    /// node then goes to the next family, or to the CPU). `Some(Err)`: it is this
    /// family's node but building failed (an upload, say).
    pub build: BuildFn,
}

/// Every family, in the order they are asked.
pub static FAMILIES: &[&Family] = &[
    &elementwise::FAMILY,
    &matmul::FAMILY,
    &conv::FAMILY,
    &pool::FAMILY,
    &norm::FAMILY,
    &movement::FAMILY,
    &gather::FAMILY,
    &cast::FAMILY,
    &where_op::FAMILY,
    &reduce::FAMILY,
    &compare::FAMILY,
    &clip::FAMILY,
    &channel_norm::FAMILY,
    &layout::FAMILY,
    &variadic::FAMILY,
    &int_binary::FAMILY,
    &cumsum::FAMILY,
    &hardmax::FAMILY,
    &indexed::FAMILY,
    &one_hot::FAMILY,
    &topk::FAMILY,
    &int_bits::FAMILY,
    &resize::FAMILY,
    &conv_transpose::FAMILY,
    &lp_pool::FAMILY,
    &einsum::FAMILY,
];

/// The kernel for a node, from the first family that takes it.
pub fn build_kernel(request: &KernelRequest) -> Option<Result<Box<dyn GpuKernel>>> {
    FAMILIES.iter().find_map(|f| (f.build)(request))
}

/// Every WGSL source of every family (for the translation test).
pub fn all_sources() -> impl Iterator<Item = &'static KernelSource> {
    FAMILIES.iter().flat_map(|f| f.sources.iter().copied())
}
