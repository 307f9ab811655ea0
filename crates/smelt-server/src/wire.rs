//! Pieces of the inference protocol that do not depend on how a request arrived
//! (JSON over HTTP or protobuf over gRPC): request and tensor parameters with
//! Triton's meanings, shapes as clients send them, and small facts about a model
//! that every endpoint reports the same way.
//!
//! An endpoint turns its own parameter values into [`ParamValue`]s and asks the
//! functions here what they mean, so both endpoints accept and refuse the same
//! things with the same messages.

use crate::error::{Result, ServerError};
use crate::proto::inference::ModelConfig;
use std::fmt;
use std::time::Duration;

/// One parameter value, whatever encoding carried it.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(String),
}

impl ParamValue {
    /// The value as a non-negative integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            ParamValue::Int(v) => u64::try_from(v).ok(),
            ParamValue::Uint(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            ParamValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Uint(v) => write!(f, "{v}"),
            ParamValue::Double(v) => write!(f, "{v}"),
            ParamValue::Str(v) => write!(f, "'{}'", v.escape_debug()),
        }
    }
}

/// A window of a registered shared-memory region that holds a tensor's bytes
/// (`shared_memory_region`, `shared_memory_offset`, `shared_memory_byte_size`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedMemoryWindow {
    pub region: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// The shared-memory window a tensor's parameters name, if any. `param` looks a
/// parameter up by key; `what` names the tensor for messages ("input 'x'").
pub fn shared_memory_window(
    param: impl Fn(&str) -> Option<ParamValue>,
    what: &str,
) -> Result<Option<SharedMemoryWindow>> {
    let number = |key: &str| -> Result<Option<u64>> {
        match param(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                ServerError::invalid(format!("{what}: '{key}' must be a non-negative integer, not {v}"))
            }),
        }
    };
    let region = match param("shared_memory_region") {
        None => {
            if let Some(key) =
                ["shared_memory_byte_size", "shared_memory_offset"].into_iter().find(|k| param(k).is_some())
            {
                return Err(ServerError::invalid(format!("{what} has '{key}' but no 'shared_memory_region'")));
            }
            return Ok(None);
        }
        Some(ParamValue::Str(region)) => region,
        Some(other) => {
            return Err(ServerError::invalid(format!(
                "{what}: 'shared_memory_region' must be a region name (a string), not {other}"
            )))
        }
    };
    let byte_size = number("shared_memory_byte_size")?.ok_or_else(|| {
        ServerError::invalid(format!("{what} names shared_memory_region '{region}' without shared_memory_byte_size"))
    })?;
    let offset = number("shared_memory_offset")?.unwrap_or(0);
    Ok(Some(SharedMemoryWindow { region, offset, byte_size }))
}

/// The request's `timeout` parameter: how long it may wait to be run, in
/// microseconds; 0 or absent means no limit.
pub fn request_timeout(value: Option<&ParamValue>) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(None),
            Some(us) => Ok(Some(Duration::from_micros(us))),
            None => Err(ServerError::invalid(format!(
                "parameter 'timeout' must be a non-negative number of microseconds, not {v}"
            ))),
        },
    }
}

/// The request's `priority` parameter: its priority level, 1 the highest; 0 or
/// absent means the model's default level.
pub fn request_priority(value: Option<&ParamValue>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| {
            ServerError::invalid(format!("parameter 'priority' must be a non-negative integer, not {v}"))
        }),
    }
}

/// A tensor shape as the client sent it, each dimension checked to be a size.
pub fn shape_from_dims(name: &str, dims: &[i64]) -> Result<Vec<usize>> {
    dims.iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| ServerError::invalid(format!("input '{name}' has shape {dims:?}: every dimension must be >= 0")))
}

/// The number of elements of `shape`, refusing shapes whose count overflows.
pub fn element_count(name: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ServerError::invalid(format!("input '{name}': shape {shape:?} holds too many elements")))
}

/// A model's platform as metadata reports it: `platform`, or else `backend`.
pub fn platform(config: &ModelConfig) -> &str {
    if config.platform.is_empty() {
        &config.backend
    } else {
        &config.platform
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(params: &[(&str, ParamValue)]) -> impl Fn(&str) -> Option<ParamValue> {
        let map: HashMap<String, ParamValue> = params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn shared_memory_windows_are_read_and_checked() {
        assert_eq!(shared_memory_window(lookup(&[]), "input 'x'").unwrap(), None);
        let window = shared_memory_window(
            lookup(&[
                ("shared_memory_region", ParamValue::Str("r".into())),
                ("shared_memory_byte_size", ParamValue::Int(16)),
                ("shared_memory_offset", ParamValue::Uint(8)),
            ]),
            "input 'x'",
        )
        .unwrap();
        assert_eq!(window, Some(SharedMemoryWindow { region: "r".into(), offset: 8, byte_size: 16 }));
        let e = shared_memory_window(lookup(&[("shared_memory_region", ParamValue::Str("r".into()))]), "input 'x'")
            .unwrap_err();
        assert!(e.message.contains("without shared_memory_byte_size"), "{e}");
        let e = shared_memory_window(
            lookup(&[
                ("shared_memory_region", ParamValue::Str("r".into())),
                ("shared_memory_byte_size", ParamValue::Int(-4)),
            ]),
            "output 'y'",
        )
        .unwrap_err();
        assert!(e.message.starts_with("output 'y'") && e.message.contains("-4"), "{e}");
        let e =
            shared_memory_window(lookup(&[("shared_memory_byte_size", ParamValue::Int(4))]), "input 'x'").unwrap_err();
        assert!(e.message.contains("no 'shared_memory_region'"), "{e}");
        let e = shared_memory_window(lookup(&[("shared_memory_region", ParamValue::Int(3))]), "input 'x'").unwrap_err();
        assert!(e.message.contains("must be a region name"), "{e}");
    }

    #[test]
    fn priorities_are_levels() {
        assert_eq!(request_priority(None).unwrap(), 0);
        assert_eq!(request_priority(Some(&ParamValue::Int(2))).unwrap(), 2);
        assert_eq!(request_priority(Some(&ParamValue::Uint(1))).unwrap(), 1);
        let e = request_priority(Some(&ParamValue::Int(-1))).unwrap_err();
        assert!(e.message.contains("'priority'"), "{}", e.message);
        assert!(request_priority(Some(&ParamValue::Str("high".into()))).is_err());
    }

    #[test]
    fn timeouts_are_microseconds() {
        assert_eq!(request_timeout(None).unwrap(), None);
        assert_eq!(request_timeout(Some(&ParamValue::Int(0))).unwrap(), None);
        assert_eq!(request_timeout(Some(&ParamValue::Int(1500))).unwrap(), Some(Duration::from_micros(1500)));
        assert_eq!(request_timeout(Some(&ParamValue::Uint(7))).unwrap(), Some(Duration::from_micros(7)));
        assert!(request_timeout(Some(&ParamValue::Int(-1))).is_err());
        assert!(request_timeout(Some(&ParamValue::Str("5".into()))).is_err());
    }

    #[test]
    fn shapes_must_be_sizes() {
        assert_eq!(shape_from_dims("x", &[2, 0, 3]).unwrap(), vec![2, 0, 3]);
        let e = shape_from_dims("x", &[2, -1]).unwrap_err();
        assert!(e.message.contains("input 'x'") && e.message.contains("[2, -1]"), "{e}");
        assert_eq!(element_count("x", &[2, 3, 4]).unwrap(), 24);
        assert_eq!(element_count("x", &[]).unwrap(), 1);
        assert!(element_count("x", &[usize::MAX, 2]).is_err());
    }

    #[test]
    fn platform_falls_back_to_backend() {
        let mut config = ModelConfig { backend: "onnxruntime".into(), ..Default::default() };
        assert_eq!(platform(&config), "onnxruntime");
        config.platform = "onnxruntime_onnx".into();
        assert_eq!(platform(&config), "onnxruntime_onnx");
    }
}
