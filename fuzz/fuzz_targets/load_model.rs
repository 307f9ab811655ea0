//! Feeds arbitrary bytes to every entry point of the ONNX importer. Any panic,
//! abort (an allocation it could not make) or hang is a bug: hostile files must
//! come back as `Err`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // A directory that does not exist: external-data paths are validated and
    // looked up, but no real file can be read.
    let _ = smelt_onnx::load_model_from_bytes(data, Some(Path::new("smelt-fuzz-no-such-dir")));
    let _ = smelt_onnx::load_model_from_bytes(data, None);
    let _ = smelt_onnx::summarize(data);
    let _ = smelt_onnx::read_tensor_proto(data);
});
