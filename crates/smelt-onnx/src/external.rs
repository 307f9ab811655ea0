//! Tensor data stored outside the model file (`data_location = EXTERNAL`).
//!
//! The tensor names a file relative to the model's directory plus an optional
//! byte range. Paths are confined to that directory by their spelling: absolute
//! paths and `..` components are refused, so a model cannot read arbitrary files.
//! Symbolic links inside the directory are followed on purpose (model caches such
//! as Hugging Face's link weight files into a blob store elsewhere).

use crate::proto::TensorProto;
use crate::OnnxError;
use smelt_ir::{DType, Tensor};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Where a tensor's bytes live, as its `external_data` entries say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ExternalLocation {
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
}

impl ExternalLocation {
    pub fn parse(name: &str, tensor: &TensorProto) -> Result<ExternalLocation, OnnxError> {
        let mut location = None;
        let mut offset = 0;
        let mut length = None;
        for entry in &tensor.external_data {
            match entry.key.as_str() {
                "location" => location = Some(entry.value.clone()),
                "offset" => offset = parse_u64(name, "offset", &entry.value)?,
                "length" => length = Some(parse_u64(name, "length", &entry.value)?),
                // Integrity checksums and unknown keys do not change where the bytes are.
                _ => {}
            }
        }
        let location = location.ok_or_else(|| OnnxError::external(name, "no 'location' entry"))?;
        Ok(ExternalLocation { location, offset, length })
    }
}

fn parse_u64(name: &str, key: &str, value: &str) -> Result<u64, OnnxError> {
    value
        .trim()
        .parse()
        .map_err(|_| OnnxError::external(name, format!("'{key}' is '{value}', not a non-negative integer")))
}

/// Joins `location` to `base_dir`, refusing locations that could leave it.
pub(crate) fn resolve(name: &str, base_dir: &Path, location: &str) -> Result<PathBuf, OnnxError> {
    if location.is_empty() {
        return Err(OnnxError::external(name, "the location is empty"));
    }
    let relative = Path::new(location);
    let mut saw_file = false;
    for component in relative.components() {
        match component {
            Component::Normal(_) => saw_file = true,
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(OnnxError::external(
                    name,
                    format!("location '{location}' contains '..'; external files must be inside the model's directory"),
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(OnnxError::external(
                    name,
                    format!("location '{location}' is absolute; external files must be relative to the model"),
                ))
            }
        }
    }
    if !saw_file {
        return Err(OnnxError::external(name, format!("location '{location}' names no file")));
    }
    Ok(base_dir.join(relative))
}

/// Reads a tensor of `dtype`/`shape` (`byte_len` bytes) from its external file.
/// The file's size is checked before anything is allocated, so a lying length
/// cannot make the importer reserve memory the file does not back.
pub(crate) fn read(
    name: &str,
    tensor: &TensorProto,
    base_dir: Option<&Path>,
    dtype: DType,
    shape: &[usize],
    byte_len: usize,
) -> Result<Tensor, OnnxError> {
    let loc = ExternalLocation::parse(name, tensor)?;
    let base_dir = base_dir.ok_or_else(|| {
        OnnxError::external(
            name,
            format!("the data is in '{}', but the model was loaded from bytes without its directory", loc.location),
        )
    })?;
    let path = resolve(name, base_dir, &loc.location)?;
    let want = byte_len as u64;
    if let Some(length) = loc.length {
        if length != want {
            return Err(OnnxError::external(
                name,
                format!("'length' is {length} bytes, but a {dtype} tensor of shape {shape:?} needs {want}"),
            ));
        }
    }
    let io_err = |what: &str, e: std::io::Error| OnnxError::external(name, format!("{what} '{}': {e}", path.display()));
    let mut file = File::open(&path).map_err(|e| io_err("cannot open", e))?;
    let file_len = file.metadata().map_err(|e| io_err("cannot stat", e))?.len();
    let end = loc.offset.checked_add(want).ok_or_else(|| OnnxError::external(name, "offset + length overflows"))?;
    if end > file_len {
        return Err(OnnxError::external(
            name,
            format!("'{}' is {file_len} bytes, too short for {want} bytes at offset {}", path.display(), loc.offset),
        ));
    }
    let mut out = Tensor::zeros(dtype, shape);
    file.seek(SeekFrom::Start(loc.offset)).map_err(|e| io_err("cannot seek in", e))?;
    file.read_exact(out.bytes_mut()).map_err(|e| io_err("cannot read", e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::StringStringEntryProto;

    fn entry(k: &str, v: &str) -> StringStringEntryProto {
        StringStringEntryProto { key: k.into(), value: v.into() }
    }

    #[test]
    fn parses_location_offset_and_length() {
        let t = TensorProto {
            external_data: vec![entry("location", "w.bin"), entry("offset", "128"), entry("length", "16")],
            ..Default::default()
        };
        let loc = ExternalLocation::parse("w", &t).unwrap();
        assert_eq!(loc, ExternalLocation { location: "w.bin".into(), offset: 128, length: Some(16) });
    }

    #[test]
    fn bad_numbers_and_missing_location_are_errors() {
        let t =
            TensorProto { external_data: vec![entry("location", "w"), entry("offset", "-1")], ..Default::default() };
        assert!(ExternalLocation::parse("w", &t).unwrap_err().to_string().contains("offset"));
        let t = TensorProto { external_data: vec![entry("offset", "1")], ..Default::default() };
        assert!(ExternalLocation::parse("w", &t).unwrap_err().to_string().contains("location"));
    }

    #[test]
    fn paths_cannot_escape_the_model_directory() {
        let base = Path::new("/models/a");
        assert_eq!(resolve("t", base, "w.bin").unwrap(), PathBuf::from("/models/a/w.bin"));
        assert_eq!(resolve("t", base, "./sub/w.bin").unwrap(), PathBuf::from("/models/a/./sub/w.bin"));
        assert!(resolve("t", base, "/etc/passwd").unwrap_err().to_string().contains("absolute"));
        assert!(resolve("t", base, "../b/w.bin").unwrap_err().to_string().contains(".."));
        assert!(resolve("t", base, "sub/../../w.bin").is_err());
        assert!(resolve("t", base, "").is_err());
        assert!(resolve("t", base, ".").is_err());
    }
}
