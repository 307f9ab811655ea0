//! config.pbtxt: parsing Triton's text format against Smelt's copy of the schema,
//! and Triton's JSON form of a `ModelConfig` (the `/config` endpoint and the
//! `config` override of a repository load).

use crate::proto::descriptor_pool;
use crate::proto::inference::ModelConfig;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use std::fmt;

/// A problem with a model's configuration, naming the model, the file and, where
/// one is at fault, the field (`input[1].dims`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub model: String,
    pub file: String,
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(model: &str, file: &str, field: Option<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { model: model.to_string(), file: file.to_string(), field, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model '{}', {}", self.model, self.file)?;
        if let Some(field) = &self.field {
            write!(f, ", field '{field}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

fn model_config_descriptor() -> MessageDescriptor {
    descriptor_pool().get_message_by_name("inference.ModelConfig").expect("ModelConfig is in the schema")
}

/// Parses config.pbtxt text. `model` and `file` only name things in errors.
pub fn parse_text(model: &str, file: &str, text: &str) -> Result<ModelConfig, ConfigError> {
    let (normalized, inserted) = add_list_colons(text);
    let message = DynamicMessage::parse_text_format(model_config_descriptor(), &normalized).map_err(|e| {
        let position = {
            use miette::Diagnostic;
            e.labels().and_then(|mut labels| labels.next()).map(|label| {
                // Back to an offset in the text as written.
                let shift = inserted.iter().filter(|&&at| at < label.offset()).count();
                line_and_column(text, label.offset() - shift)
            })
        };
        let message = match position {
            Some((line, column)) => format!("line {line}, column {column}: {e}"),
            None => e.to_string(),
        };
        ConfigError::new(model, file, None, format!("not a valid ModelConfig in protobuf text format: {message}"))
    })?;
    message
        .transcode_to::<ModelConfig>()
        .map_err(|e| ConfigError::new(model, file, None, format!("cannot convert the parsed configuration: {e}")))
}

/// Protobuf's text format lets a repeated message field be written as a list
/// without a colon (`input [ { ... } ]`), as nearly every config.pbtxt does;
/// prost-reflect only reads `input: [ ... ]`. This inserts the colon after a field
/// name directly followed by `[`, skipping strings and comments, and returns the
/// offsets (in the new text) where it did.
fn add_list_colons(text: &str) -> (String, Vec<usize>) {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut inserted = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    // Skips whitespace and comments from `j`; returns the next significant index.
    let skip_blank = |mut j: usize| {
        while j < bytes.len() {
            match bytes[j] {
                b'#' => {
                    while j < bytes.len() && bytes[j] != b'\n' {
                        j += 1;
                    }
                }
                c if c.is_ascii_whitespace() => j += 1,
                _ => break,
            }
        }
        j
    };
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let next = skip_blank(i);
                if next < bytes.len() && bytes[next] == b'[' {
                    out.push_str(&text[copied..i]);
                    inserted.push(out.len());
                    out.push(':');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    (out, inserted)
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses Triton's JSON form of a ModelConfig (snake_case or camelCase field names,
/// enums as names or numbers, 64-bit integers as numbers or strings).
pub fn parse_json(model: &str, origin: &str, json: &str) -> Result<ModelConfig, ConfigError> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let message = DynamicMessage::deserialize_with_options(model_config_descriptor(), &mut deserializer, &options)
        .and_then(|m| deserializer.end().map(|()| m))
        .map_err(|e| ConfigError::new(model, origin, None, format!("not a valid ModelConfig in JSON: {e}")))?;
    message
        .transcode_to::<ModelConfig>()
        .map_err(|e| ConfigError::new(model, origin, None, format!("cannot convert the parsed configuration: {e}")))
}

/// Triton's JSON for a ModelConfig: proto field names, enums by name, 64-bit
/// integers as JSON numbers, every scalar and list present even when default,
/// unset sub-messages left out.
pub fn to_json(config: &ModelConfig) -> serde_json::Value {
    let mut message = DynamicMessage::new(model_config_descriptor());
    message.transcode_from(config).expect("a ModelConfig encodes into its own descriptor");
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .use_enum_numbers(false)
        .skip_default_fields(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .expect("a protobuf message always serialises to a JSON value")
}

/// Text format, for logs.
pub fn to_text(config: &ModelConfig) -> String {
    let mut message = DynamicMessage::new(model_config_descriptor());
    message.transcode_from(config).expect("a ModelConfig encodes into its own descriptor");
    message.to_text_format()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inference::{model_config, model_instance_group, model_version_policy, DataType};

    const SIMPLE: &str = r#"
        name: "simple"
        platform: "onnxruntime_onnx"
        max_batch_size: 8
        version_policy: { specific: { versions: [1, 3] } }
        input [
          { name: "x", data_type: TYPE_FP32, dims: [ 3, -1 ], reshape: { shape: [ 3, 1, -1 ] } },
          { name: "mask", data_type: TYPE_BOOL, format: FORMAT_NONE, dims: [ 2 ], optional: true }
        ]
        output [ { name: "y", data_type: TYPE_FP16, dims: [ 10 ], label_filename: "labels.txt" } ]
        instance_group [ { name: "cpus", kind: KIND_CPU, count: 2 } ]
        dynamic_batching {
          preferred_batch_size: [ 4, 8 ]
          max_queue_delay_microseconds: 100
          preserve_ordering: true
          priority_levels: 2
          default_priority_level: 1
          default_queue_policy { timeout_action: DELAY, default_timeout_microseconds: 5000, allow_timeout_override: true, max_queue_size: 16 }
          priority_queue_policy { key: 2 value: { timeout_action: REJECT, max_queue_size: 4 } }
        }
        parameters { key: "threads" value: { string_value: "2" } }
        model_warmup [ { name: "w", batch_size: 1, inputs { key: "x" value: { data_type: TYPE_FP32, dims: [3, 4], zero_data: true } } } ]
        default_model_filename: "net.onnx"
    "#;

    #[test]
    fn parses_the_text_format() {
        let c = parse_text("simple", "config.pbtxt", SIMPLE).unwrap();
        assert_eq!(c.name, "simple");
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.input.len(), 2);
        assert_eq!(c.input[0].dims, vec![3, -1]);
        assert_eq!(c.input[0].reshape.as_ref().unwrap().shape, vec![3, 1, -1]);
        assert_eq!(c.input[0].data_type, DataType::TypeFp32 as i32);
        assert!(c.input[1].optional);
        assert_eq!(c.output[0].data_type, DataType::TypeFp16 as i32);
        assert_eq!(c.instance_group[0].kind, model_instance_group::Kind::Cpu as i32);
        assert_eq!(c.instance_group[0].count, 2);
        match c.version_policy.unwrap().policy_choice.unwrap() {
            model_version_policy::PolicyChoice::Specific(s) => assert_eq!(s.versions, vec![1, 3]),
            other => panic!("wrong policy {other:?}"),
        }
        let Some(model_config::SchedulingChoice::DynamicBatching(db)) = c.scheduling_choice else {
            panic!("no dynamic batching")
        };
        assert_eq!(db.preferred_batch_size, vec![4, 8]);
        assert_eq!(db.max_queue_delay_microseconds, 100);
        let policy = db.default_queue_policy.unwrap();
        assert_eq!(policy.max_queue_size, 16);
        assert_eq!(policy.timeout_action, 1);
        assert_eq!(db.priority_queue_policy[&2].max_queue_size, 4);
        assert_eq!(c.parameters["threads"].string_value, "2");
        assert_eq!(c.model_warmup[0].inputs["x"].dims, vec![3, 4]);
        assert_eq!(c.default_model_filename, "net.onnx");
    }

    #[test]
    fn syntax_errors_name_model_file_and_position() {
        let err = parse_text("m", "/repo/m/config.pbtxt", "name: \"m\"\nmax_batch_size: 4\ninput [ { nme: \"x\" } ]\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("model 'm', /repo/m/config.pbtxt: "), "{text}");
        assert!(text.contains("line 3, column 11"), "{text}");
        assert!(text.contains("nme"), "{text}");

        let err = parse_text("m", "config.pbtxt", "input [ { data_type: TYPE_FLOAT } ]").unwrap_err();
        assert!(err.to_string().contains("TYPE_FLOAT"), "{err}");
        let err = parse_text("m", "config.pbtxt", "max_batch_size: 99999999999").unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn list_colons_are_added_outside_strings_and_comments() {
        let (t, at) = add_list_colons("input [ { name: \"a [b\" } ] # x [\ndims: [1] output\n  [ ]");
        assert_eq!(t, "input: [ { name: \"a [b\" } ] # x [\ndims: [1] output:\n  [ ]");
        assert_eq!(at, vec![5, 50]);
        assert_eq!(add_list_colons("max_queue_delay_microseconds: 1e5").0, "max_queue_delay_microseconds: 1e5");
    }

    #[test]
    fn json_uses_proto_names_enum_names_and_numbers() {
        let c = parse_text("simple", "config.pbtxt", SIMPLE).unwrap();
        let json = to_json(&c);
        assert_eq!(json["name"], "simple");
        assert_eq!(json["max_batch_size"], 8);
        assert_eq!(json["input"][0]["data_type"], "TYPE_FP32");
        assert_eq!(json["input"][0]["dims"], serde_json::json!([3, -1]));
        assert_eq!(json["input"][0]["format"], "FORMAT_NONE");
        assert_eq!(json["instance_group"][0]["kind"], "KIND_CPU");
        assert_eq!(json["dynamic_batching"]["max_queue_delay_microseconds"], 100);
        assert_eq!(json["dynamic_batching"]["default_queue_policy"]["timeout_action"], "DELAY");
        assert_eq!(json["version_policy"]["specific"]["versions"], serde_json::json!([1, 3]));
        // Defaults are present; unset messages are not.
        assert_eq!(json["backend"], "");
        assert_eq!(json["batch_input"], serde_json::json!([]));
        assert!(json.get("optimization").is_none());
        assert!(json.get("sequence_batching").is_none());

        let back = parse_json("simple", "override", &json.to_string()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn json_errors_are_config_errors() {
        let err = parse_json("m", "load request", r#"{"max_batch_size": "many"}"#).unwrap_err();
        assert_eq!(err.model, "m");
        assert!(err.to_string().contains("load request"), "{err}");
        let err = parse_json("m", "load request", r#"{"no_such_field": 1}"#).unwrap_err();
        assert!(err.to_string().contains("no_such_field"), "{err}");
    }
}
