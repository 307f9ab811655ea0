//! Op semantics on concrete host values that more than one backend needs.
//!
//! smelt-cpu evaluates these ops and smelt-gpu computes the same things on the
//! host when it records a kernel (tables, pads, output sizes); both must agree to
//! the bit, and smelt-gpu does not depend on smelt-cpu, so the one implementation
//! lives here, beside the shape inference both already use. One module per op
//! concept. Errors are messages for the user; the backend adds its op name.

pub mod conv_transpose;
pub mod einsum;
pub mod resize;
