//! Rust types for ONNX's protobuf messages, generated at build time from
//! `proto/onnx.proto` (Smelt's own schema with ONNX's field numbers).

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
