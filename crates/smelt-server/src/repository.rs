//! Model repositories on disk: `<repository>/<model>/config.pbtxt` plus
//! `<repository>/<model>/<version>/<default_model_filename>`; version policies; and
//! completing and checking a configuration against the model it describes.
//!
//! Fields Smelt acts on: `name`, `platform`, `backend`, `version_policy`,
//! `max_batch_size`, `input`/`output` (`name`, `data_type`, `dims`, `reshape`,
//! `optional`, `is_shape_tensor`), `instance_group` (`kind`, `count`, `gpus`; see
//! [`crate::gpu`]), `parameters` (the GPU settings) and `default_model_filename`. Every other field is parsed, kept and reported by
//! `/config`.

use crate::config::{self, ConfigError};
use crate::datatype::{config_type_name, WireType};
use crate::proto::inference::{
    model_instance_group, model_version_policy, DataType, ModelConfig, ModelInput, ModelInstanceGroup, ModelOutput,
    ModelVersionPolicy,
};
use smelt_ir::{Dim, Shape};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.pbtxt";
pub const DEFAULT_MODEL_FILENAME: &str = "model.onnx";
/// The platform name Triton's ONNX Runtime backend reports.
pub const ONNX_PLATFORM: &str = "onnxruntime_onnx";
/// Backends whose models Smelt runs: Triton's ONNX Runtime backend name, Smelt's
/// own, and the Metal backend of the reference documents.
pub const SUPPORTED_BACKENDS: [&str; 3] = ["onnxruntime", "smelt", "metal_mps"];
/// `max_batch_size` given to a model whose every input and output has a variable
/// first dimension when the configuration leaves out inputs, outputs and
/// max_batch_size (Triton's ONNX Runtime backend `default-max-batch-size`).
pub const DEFAULT_MAX_BATCH_SIZE: i32 = 4;

/// One model folder found in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSource {
    pub name: String,
    pub dir: PathBuf,
    pub repository: PathBuf,
}

impl ModelSource {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
}

/// What a scan of the repositories found.
#[derive(Debug, Default)]
pub struct Scan {
    pub models: BTreeMap<String, ModelSource>,
    /// Names found in more than one repository, with the folders: such a model is
    /// not served, since which one is meant is unknown.
    pub duplicates: BTreeMap<String, Vec<PathBuf>>,
}

/// Lists the model folders of every repository. A repository that is not a
/// readable folder is an error; hidden entries and plain files are skipped.
pub fn scan(repositories: &[PathBuf]) -> Result<Scan, String> {
    let mut scan = Scan::default();
    let mut seen: BTreeMap<String, Vec<ModelSource>> = BTreeMap::new();
    for repository in repositories {
        let entries = std::fs::read_dir(repository)
            .map_err(|e| format!("model repository {} cannot be read: {e}", repository.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("model repository {}: {e}", repository.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            seen.entry(name.clone()).or_default().push(ModelSource {
                name,
                dir: entry.path(),
                repository: repository.clone(),
            });
        }
    }
    for (name, mut sources) in seen {
        if sources.len() == 1 {
            scan.models.insert(name, sources.remove(0));
        } else {
            scan.duplicates.insert(name, sources.into_iter().map(|s| s.dir).collect());
        }
    }
    Ok(scan)
}

/// The configuration as the repository gives it, before completion: the override
/// if one is given, else config.pbtxt, else (unless `strict`) an empty one.
pub fn read_config(source: &ModelSource, strict: bool) -> Result<ModelConfig, ConfigError> {
    let path = source.config_path();
    let file = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => config::parse_text(&source.name, &file, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if strict {
                Err(ConfigError::new(
                    &source.name,
                    &file,
                    None,
                    "the file is missing, and --strict-model-config forbids completing a configuration from the model",
                ))
            } else {
                Ok(ModelConfig::default())
            }
        }
        Err(e) => Err(ConfigError::new(&source.name, &file, None, format!("cannot be read: {e}"))),
    }
}

/// Checks the fields that do not need the model: name, platform/backend, batch
/// size sign, instance groups, version policy; fills the defaults Triton fills.
pub fn complete_static(config: &mut ModelConfig, model: &str, file: &str, strict: bool) -> Result<(), ConfigError> {
    let err = |field: &str, message: String| ConfigError::new(model, file, Some(field.to_string()), message);
    if config.name.is_empty() {
        config.name = model.to_string();
    } else if config.name != model {
        return Err(err("name", format!("is '{}' but the model's folder is named '{model}'", config.name)));
    }
    match (config.platform.as_str(), config.backend.as_str()) {
        ("", "") if strict => {
            return Err(err(
                "backend",
                format!("neither platform nor backend is given (use backend: \"{}\")", SUPPORTED_BACKENDS[0]),
            ))
        }
        ("", "") => {
            config.platform = ONNX_PLATFORM.to_string();
            config.backend = SUPPORTED_BACKENDS[0].to_string();
        }
        (ONNX_PLATFORM, "") => config.backend = SUPPORTED_BACKENDS[0].to_string(),
        (ONNX_PLATFORM, "onnxruntime") => {}
        ("", "onnxruntime") => config.platform = ONNX_PLATFORM.to_string(),
        ("", backend) if SUPPORTED_BACKENDS.contains(&backend) => {}
        (ONNX_PLATFORM, backend) => {
            return Err(err(
                "backend",
                format!("'{backend}' does not go with platform '{ONNX_PLATFORM}' (whose backend is 'onnxruntime')"),
            ))
        }
        (platform, "") => {
            return Err(err(
                "platform",
                format!(
                    "'{platform}' is not supported by Smelt (it serves platform '{ONNX_PLATFORM}' and backends {})",
                    SUPPORTED_BACKENDS.join(", ")
                ),
            ))
        }
        (_, backend) => {
            return Err(err(
                "backend",
                format!(
                    "'{backend}' is not supported by Smelt (it serves backends {} and platform '{ONNX_PLATFORM}')",
                    SUPPORTED_BACKENDS.join(", ")
                ),
            ))
        }
    }
    if config.max_batch_size < 0 {
        return Err(err("max_batch_size", format!("is {}; it must be 0 (no batching) or more", config.max_batch_size)));
    }
    if config.default_model_filename.is_empty() {
        config.default_model_filename = DEFAULT_MODEL_FILENAME.to_string();
    } else if Path::new(&config.default_model_filename).components().count() != 1 {
        return Err(err(
            "default_model_filename",
            format!("'{}' must be a file name inside the version folder", config.default_model_filename),
        ));
    }
    if config.instance_group.is_empty() {
        config.instance_group.push(ModelInstanceGroup {
            name: model.to_string(),
            kind: model_instance_group::Kind::Cpu as i32,
            count: 1,
            ..Default::default()
        });
    }
    for (i, group) in config.instance_group.iter_mut().enumerate() {
        if group.name.is_empty() {
            group.name = if i == 0 { model.to_string() } else { format!("{model}_{i}") };
        }
        if group.count < 0 {
            return Err(err(
                &format!("instance_group[{i}].count"),
                format!("is {}; it must be 1 or more", group.count),
            ));
        }
        if group.count == 0 {
            group.count = 1;
        }
        // KIND_AUTO is resolved, and the groups' devices checked, by
        // crate::gpu::placement (it needs to know the adapters).
        if model_instance_group::Kind::try_from(group.kind).is_err() {
            return Err(err(&format!("instance_group[{i}].kind"), format!("unknown kind {}", group.kind)));
        }
    }
    crate::gpu::gpu_config(config, model, file, |_| None)?;
    if let Some(ModelVersionPolicy { policy_choice: None }) = config.version_policy {
        config.version_policy = None;
    }
    if config.version_policy.is_none() {
        config.version_policy = Some(ModelVersionPolicy {
            policy_choice: Some(model_version_policy::PolicyChoice::Latest(model_version_policy::Latest {
                num_versions: 1,
            })),
        });
    }
    Ok(())
}

/// How many runs of the model may be in flight at once: the sum of the instance
/// group counts (after [`complete_static`]).
pub fn instance_count(config: &ModelConfig) -> usize {
    config.instance_group.iter().map(|g| g.count.max(1) as usize).sum::<usize>().max(1)
}

/// The numeric version folders of a model folder.
pub fn version_dirs(dir: &Path) -> Result<BTreeMap<i64, PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut versions = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(v) = name.parse::<i64>() {
            if v >= 0 && entry.path().is_dir() && !name.starts_with('+') {
                versions.insert(v, entry.path());
            }
        }
    }
    Ok(versions)
}

/// The versions a policy selects from those on disk, highest first, with the
/// versions it asks for that are not there.
pub fn select_versions(policy: Option<&ModelVersionPolicy>, available: &BTreeSet<i64>) -> (Vec<i64>, Vec<i64>) {
    use model_version_policy::PolicyChoice;
    match policy.and_then(|p| p.policy_choice.as_ref()) {
        Some(PolicyChoice::All(_)) => (available.iter().rev().copied().collect(), Vec::new()),
        Some(PolicyChoice::Specific(s)) => {
            let wanted: BTreeSet<i64> = s.versions.iter().copied().collect();
            let present = wanted.iter().rev().filter(|v| available.contains(v)).copied().collect();
            let missing = wanted.iter().filter(|v| !available.contains(v)).copied().collect();
            (present, missing)
        }
        Some(PolicyChoice::Latest(l)) => {
            (available.iter().rev().take(l.num_versions.max(1) as usize).copied().collect(), Vec::new())
        }
        None => (available.iter().rev().take(1).copied().collect(), Vec::new()),
    }
}

/// A model input or output as the loaded model declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub wire: WireType,
    pub shape: Shape,
    /// Inputs only: the model has a default value (an initializer), so a request
    /// may leave it out.
    pub has_default: bool,
}

/// The inputs and outputs of a loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelIo {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl ModelIo {
    pub fn from_session(session: &smelt_runtime::Session) -> ModelIo {
        let graph = session.graph();
        let with_default: HashSet<&str> = graph.input_defaults.keys().map(|&v| graph.name(v)).collect();
        let spec = |io: smelt_runtime::IoInfo| TensorSpec {
            has_default: with_default.contains(io.name.as_str()),
            wire: WireType::from_dtype(io.dtype),
            name: io.name,
            shape: io.shape,
        };
        ModelIo {
            inputs: session.inputs().into_iter().map(spec).collect(),
            outputs: session.outputs().into_iter().map(spec).collect(),
        }
    }
}

/// A model dimension as config dims write it: the size, or -1 when it varies.
fn config_dim(d: &Dim) -> i64 {
    match d {
        Dim::Fixed(n) => *n as i64,
        Dim::Sym(_) | Dim::Unknown => -1,
    }
}

fn batchable(spec: &TensorSpec) -> bool {
    match spec.shape.dims() {
        None => true,
        Some(dims) => dims.first().is_some_and(|d| d.fixed().is_none()),
    }
}

/// Completes a configuration from the model (unless `strict`) and checks that it
/// agrees with the model: every named tensor exists with the same data type and
/// compatible dims, batching is possible where max_batch_size asks for it.
pub fn complete_from_model(
    config: &mut ModelConfig,
    io: &ModelIo,
    model: &str,
    file: &str,
    strict: bool,
) -> Result<(), ConfigError> {
    let err = |field: String, message: String| ConfigError::new(model, file, Some(field), message);

    if !strict && config.max_batch_size == 0 && config.input.is_empty() && config.output.is_empty() {
        let can_batch = io.inputs.iter().chain(&io.outputs).all(batchable) && !io.inputs.is_empty();
        if can_batch {
            config.max_batch_size = DEFAULT_MAX_BATCH_SIZE;
        }
    }
    let batching = config.max_batch_size > 0;
    if batching {
        if let Some(spec) = io.inputs.iter().chain(&io.outputs).find(|s| !batchable(s)) {
            return Err(err(
                "max_batch_size".into(),
                format!(
                    "is {} but the model cannot batch: '{}' has shape {}, without a variable first dimension; \
                     set max_batch_size: 0",
                    config.max_batch_size, spec.name, spec.shape
                ),
            ));
        }
    }

    if config.input.is_empty() && !strict {
        for spec in &io.inputs {
            let dims = config_dims_of(spec, batching).map_err(|m| err("input".into(), m))?;
            config.input.push(ModelInput {
                name: spec.name.clone(),
                data_type: spec.wire.config_type() as i32,
                dims,
                optional: spec.has_default,
                ..Default::default()
            });
        }
    }
    if config.output.is_empty() && !strict {
        for spec in &io.outputs {
            let dims = config_dims_of(spec, batching).map_err(|m| err("output".into(), m))?;
            config.output.push(ModelOutput {
                name: spec.name.clone(),
                data_type: spec.wire.config_type() as i32,
                dims,
                ..Default::default()
            });
        }
    }
    let check = EntryCheck { model, file, batching, strict };
    check.entries("input", tensor_entries_in(config), &io.inputs)?;
    check.entries("output", tensor_entries_out(config), &io.outputs)?;
    for spec in &io.inputs {
        if !spec.has_default && !config.input.iter().any(|c| c.name == spec.name) {
            return Err(err(
                "input".into(),
                format!("does not list the model's input '{}', which every request must give", spec.name),
            ));
        }
    }
    Ok(())
}

/// Uniform mutable access to the fields both input and output entries have.
struct TensorEntry<'a> {
    name: &'a String,
    data_type: &'a mut i32,
    dims: &'a mut Vec<i64>,
    reshape: Option<&'a Vec<i64>>,
    is_shape_tensor: bool,
}

fn tensor_entries_in(config: &mut ModelConfig) -> Vec<TensorEntry<'_>> {
    config
        .input
        .iter_mut()
        .map(|c| TensorEntry {
            name: &c.name,
            data_type: &mut c.data_type,
            dims: &mut c.dims,
            reshape: c.reshape.as_ref().map(|r| &r.shape),
            is_shape_tensor: c.is_shape_tensor,
        })
        .collect()
}

fn tensor_entries_out(config: &mut ModelConfig) -> Vec<TensorEntry<'_>> {
    config
        .output
        .iter_mut()
        .map(|c| TensorEntry {
            name: &c.name,
            data_type: &mut c.data_type,
            dims: &mut c.dims,
            reshape: c.reshape.as_ref().map(|r| &r.shape),
            is_shape_tensor: c.is_shape_tensor,
        })
        .collect()
}

/// The config dims of a model tensor: its shape without the batch dimension,
/// with -1 for sizes that vary.
fn config_dims_of(spec: &TensorSpec, batching: bool) -> Result<Vec<i64>, String> {
    let dims = spec.shape.dims().ok_or_else(|| {
        format!("the rank of '{}' is unknown before the model runs; give its dims in {CONFIG_FILE}", spec.name)
    })?;
    let dims = if batching { &dims[1..] } else { dims };
    Ok(dims.iter().map(config_dim).collect())
}

struct EntryCheck<'a> {
    model: &'a str,
    file: &'a str,
    batching: bool,
    strict: bool,
}

impl EntryCheck<'_> {
    fn entries(&self, kind: &str, entries: Vec<TensorEntry<'_>>, specs: &[TensorSpec]) -> Result<(), ConfigError> {
        let err = |field: String, message: String| ConfigError::new(self.model, self.file, Some(field), message);
        let mut seen = HashSet::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let field = |f: &str| format!("{kind}[{i}].{f}");
            if entry.name.is_empty() {
                return Err(err(field("name"), "is missing".into()));
            }
            if !seen.insert(entry.name.clone()) {
                return Err(err(field("name"), format!("'{}' is listed twice", entry.name)));
            }
            let Some(spec) = specs.iter().find(|s| s.name == *entry.name) else {
                let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(err(
                    field("name"),
                    format!("the model has no {kind} '{}' (its {kind}s: {})", entry.name, names.join(", ")),
                ));
            };
            if *entry.data_type == DataType::TypeInvalid as i32 && !self.strict {
                *entry.data_type = spec.wire.config_type() as i32;
            }
            match WireType::from_config(*entry.data_type) {
                None => return Err(err(field("data_type"), "is missing or invalid".into())),
                Some(t) if t != spec.wire => {
                    return Err(err(
                        field("data_type"),
                        format!(
                            "is {} but the model's {kind} '{}' is {}",
                            config_type_name(*entry.data_type),
                            spec.name,
                            config_type_name(spec.wire.config_type() as i32)
                        ),
                    ))
                }
                Some(_) => {}
            }
            if entry.is_shape_tensor {
                return Err(err(
                    field("is_shape_tensor"),
                    "shape tensors are a TensorRT feature; Smelt has none".into(),
                ));
            }
            let model_rank_beyond_batch = spec.shape.rank().map(|r| r.saturating_sub(usize::from(self.batching)));
            if entry.dims.is_empty() && !self.strict && entry.reshape.is_none() && model_rank_beyond_batch != Some(0) {
                *entry.dims = config_dims_of(spec, self.batching).map_err(|m| err(field("dims"), m))?;
            }
            if let Some(&bad) = entry.dims.iter().find(|&&d| d < -1) {
                return Err(err(field("dims"), format!("holds {bad}; a dimension is -1 (variable) or a size")));
            }
            // What the model sees: `reshape` if given, else the dims.
            let (seen_by_model, seen_field) = match entry.reshape {
                Some(r) => {
                    if let Some(&bad) = r.iter().find(|&&d| d < -1) {
                        return Err(err(field("reshape.shape"), format!("holds {bad}")));
                    }
                    if r.iter().filter(|&&d| d == -1).count() > 1 {
                        return Err(err(field("reshape.shape"), "may hold at most one -1".into()));
                    }
                    if !entry.dims.contains(&-1) && !r.contains(&-1) {
                        let (a, b): (i64, i64) = (entry.dims.iter().product(), r.iter().product());
                        if a != b {
                            return Err(err(
                                field("reshape.shape"),
                                format!("{r:?} holds {b} elements but dims {:?} hold {a}", entry.dims),
                            ));
                        }
                    }
                    (r.clone(), field("reshape.shape"))
                }
                None => (entry.dims.clone(), field("dims")),
            };
            if let Some(model_dims) = spec.shape.dims() {
                let model_dims = if self.batching { &model_dims[1..] } else { model_dims };
                let compatible = model_dims.len() == seen_by_model.len()
                    && model_dims.iter().zip(&seen_by_model).all(|(m, &c)| match m.fixed() {
                        Some(n) => c == n as i64,
                        None => true,
                    });
                if !compatible {
                    let model_view: Vec<i64> = model_dims.iter().map(config_dim).collect();
                    return Err(err(
                        seen_field,
                        format!(
                            "{seen_by_model:?} does not fit the model's {kind} '{}', which is {model_view:?}{}",
                            spec.name,
                            if self.batching { " after the batch dimension" } else { "" }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inference::ModelTensorReshape;

    fn spec(name: &str, wire: WireType, dims: &[Option<usize>]) -> TensorSpec {
        let dims = dims.iter().map(|d| d.map_or(Dim::Sym("batch".into()), Dim::Fixed)).collect();
        TensorSpec { name: name.into(), wire, shape: Shape::new(dims), has_default: false }
    }

    /// Inputs a, b: FP32 [batch, 4]; output y: FP32 [batch, 4].
    fn batchable_io() -> ModelIo {
        ModelIo {
            inputs: vec![spec("a", WireType::F32, &[None, Some(4)]), spec("b", WireType::F32, &[None, Some(4)])],
            outputs: vec![spec("y", WireType::F32, &[None, Some(4)])],
        }
    }

    fn parse(text: &str) -> ModelConfig {
        config::parse_text("m", "m/config.pbtxt", text).unwrap()
    }

    fn complete(text: &str, io: &ModelIo, strict: bool) -> Result<ModelConfig, ConfigError> {
        let mut c = parse(text);
        complete_static(&mut c, "m", "m/config.pbtxt", strict)?;
        complete_from_model(&mut c, io, "m", "m/config.pbtxt", strict)?;
        Ok(c)
    }

    #[test]
    fn an_empty_config_is_completed_from_the_model() {
        let c = complete("", &batchable_io(), false).unwrap();
        assert_eq!(c.name, "m");
        assert_eq!(c.platform, ONNX_PLATFORM);
        assert_eq!(c.backend, "onnxruntime");
        assert_eq!(c.max_batch_size, DEFAULT_MAX_BATCH_SIZE);
        assert_eq!(c.input.len(), 2);
        assert_eq!(c.input[1].name, "b");
        assert_eq!(c.input[1].dims, vec![4]);
        assert_eq!(c.input[1].data_type, DataType::TypeFp32 as i32);
        assert_eq!(c.output[0].dims, vec![4]);
        assert_eq!(c.instance_group.len(), 1);
        assert_eq!(c.instance_group[0].kind, model_instance_group::Kind::Cpu as i32);
        assert_eq!(c.instance_group[0].count, 1);
        assert_eq!(c.default_model_filename, DEFAULT_MODEL_FILENAME);
        assert_eq!(instance_count(&c), 1);
    }

    #[test]
    fn a_model_with_a_fixed_first_dim_does_not_batch() {
        let io = ModelIo {
            inputs: vec![spec("x", WireType::I64, &[Some(1), Some(3)])],
            outputs: vec![spec("y", WireType::F16, &[Some(1), Some(3)])],
        };
        let c = complete("", &io, false).unwrap();
        assert_eq!(c.max_batch_size, 0);
        assert_eq!(c.input[0].dims, vec![1, 3]);
        assert_eq!(c.input[0].data_type, DataType::TypeInt64 as i32);
        assert_eq!(c.output[0].data_type, DataType::TypeFp16 as i32);

        let err = complete("max_batch_size: 4", &io, false).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("max_batch_size"));
        assert!(err.message.contains("cannot batch"), "{err}");
    }

    #[test]
    fn partial_entries_are_filled_and_explicit_max_batch_size_kept() {
        let c =
            complete("max_batch_size: 16\ninput [ { name: \"a\" }, { name: \"b\" } ]", &batchable_io(), false).unwrap();
        assert_eq!(c.max_batch_size, 16);
        assert_eq!(c.input[0].dims, vec![4]);
        assert_eq!(c.input[0].data_type, DataType::TypeFp32 as i32);
        assert_eq!(c.output.len(), 1);
        // Listing inputs but giving max_batch_size 0 means no batching: dims then
        // include the model's first dimension.
        let c = complete("input [ { name: \"a\" }, { name: \"b\" } ]", &batchable_io(), false).unwrap();
        assert_eq!(c.max_batch_size, 0);
        assert_eq!(c.input[0].dims, vec![-1, 4]);
    }

    #[test]
    fn mismatches_name_model_file_and_field() {
        let io = batchable_io();
        let cases = [
            ("name: \"other\"", "name", "folder is named 'm'"),
            ("backend: \"python\"", "backend", "'python' is not supported"),
            ("platform: \"tensorflow_savedmodel\"", "platform", "not supported"),
            ("platform: \"onnxruntime_onnx\" backend: \"smelt\"", "backend", "does not go with"),
            ("max_batch_size: -1", "max_batch_size", "must be 0"),
            ("parameters { key: \"MPS_MAX_POOL_SIZE\" value: { string_value: \"lots\" } }", "parameters.MPS_MAX_POOL_SIZE", "'lots'"),
            ("parameters { key: \"gpu_colour\" value: { string_value: \"1\" } }", "parameters.gpu_colour", "gpu_pool_max_bytes"),
            ("instance_group [ { count: -2 } ]", "instance_group[0].count", "-2"),
            ("max_batch_size: 8 input [ { name: \"zz\" } ]", "input[0].name", "no input 'zz'"),
            (
                "max_batch_size: 8 input [ { name: \"a\", data_type: TYPE_INT32 } ]",
                "input[0].data_type",
                "is TYPE_INT32 but the model's input 'a' is TYPE_FP32",
            ),
            (
                "max_batch_size: 8 input [ { name: \"a\", dims: [ 5 ] }, { name: \"b\" } ]",
                "input[0].dims",
                "[5] does not fit",
            ),
            (
                "max_batch_size: 8 input [ { name: \"a\", dims: [ 4 ] } ]",
                "input",
                "does not list the model's input 'b'",
            ),
            (
                "max_batch_size: 8 output [ { name: \"y\", dims: [ 2, 2 ], reshape: { shape: [ 4 ] } }, { name: \"y\" } ]",
                "output[1].name",
                "listed twice",
            ),
            (
                "max_batch_size: 8 output [ { name: \"y\", dims: [ 3 ], reshape: { shape: [ 4 ] } } ]",
                "output[0].reshape.shape",
                "holds 4 elements but dims [3] hold 3",
            ),
            (
                "max_batch_size: 8 output [ { name: \"y\", dims: [ 4 ], is_shape_tensor: true } ]",
                "output[0].is_shape_tensor",
                "TensorRT",
            ),
            ("default_model_filename: \"../x.onnx\"", "default_model_filename", "file name"),
        ];
        for (text, field, message) in cases {
            let err = complete(text, &io, false).unwrap_err();
            assert_eq!(err.model, "m", "{text}");
            assert_eq!(err.file, "m/config.pbtxt", "{text}");
            assert_eq!(err.field.as_deref(), Some(field), "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
            let shown = err.to_string();
            assert!(
                shown.contains("model 'm'") && shown.contains("m/config.pbtxt") && shown.contains(field),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_reshape_is_checked_against_the_model() {
        let io = ModelIo {
            inputs: vec![spec("x", WireType::F32, &[None, Some(2), Some(2)])],
            outputs: vec![spec("y", WireType::F32, &[None, Some(4)])],
        };
        let mut c = parse("max_batch_size: 2 input [ { name: \"x\", dims: [ 4 ], reshape: { shape: [ 2, 2 ] } } ]");
        complete_static(&mut c, "m", "f", false).unwrap();
        complete_from_model(&mut c, &io, "m", "f", false).unwrap();
        assert_eq!(c.input[0].reshape, Some(ModelTensorReshape { shape: vec![2, 2] }));
        assert_eq!(c.output[0].dims, vec![4]);
    }

    #[test]
    fn strict_mode_completes_nothing() {
        let io = batchable_io();
        let err = complete("", &io, true).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("backend"));
        let err = complete("backend: \"smelt\" max_batch_size: 8 input [ { name: \"a\" } ]", &io, true).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("input[0].data_type"));
        let full = "backend: \"smelt\" max_batch_size: 8
            input [ { name: \"a\", data_type: TYPE_FP32, dims: [ 4 ] }, { name: \"b\", data_type: TYPE_FP32, dims: [ 4 ] } ]
            output [ { name: \"y\", data_type: TYPE_FP32, dims: [ 4 ] } ]";
        let c = complete(full, &io, true).unwrap();
        assert_eq!(c.backend, "smelt");
        assert!(c.platform.is_empty());
    }

    #[test]
    fn version_policies_select_from_what_is_on_disk() {
        let available: BTreeSet<i64> = [1, 2, 3, 10].into_iter().collect();
        let policy = |text: &str| parse(text).version_policy;
        assert_eq!(select_versions(None, &available), (vec![10], vec![]));
        assert_eq!(
            select_versions(policy("version_policy: { latest: { num_versions: 2 } }").as_ref(), &available),
            (vec![10, 3], vec![])
        );
        assert_eq!(select_versions(policy("version_policy: { latest: { } }").as_ref(), &available), (vec![10], vec![]));
        assert_eq!(
            select_versions(policy("version_policy: { all: { } }").as_ref(), &available),
            (vec![10, 3, 2, 1], vec![])
        );
        assert_eq!(
            select_versions(policy("version_policy: { specific: { versions: [ 2, 7, 1 ] } }").as_ref(), &available),
            (vec![2, 1], vec![7])
        );
        assert_eq!(select_versions(None, &BTreeSet::new()), (vec![], vec![]));
    }

    #[test]
    fn scanning_finds_models_versions_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let (r1, r2) = (dir.path().join("r1"), dir.path().join("r2"));
        for p in ["r1/a/1", "r1/a/2", "r1/a/notes", "r1/b/3", "r2/b/1", "r2/c", "r1/.hidden"] {
            std::fs::create_dir_all(dir.path().join(p)).unwrap();
        }
        std::fs::write(r1.join("README"), "x").unwrap();
        let scan = scan(&[r1.clone(), r2.clone()]).unwrap();
        assert_eq!(scan.models.keys().collect::<Vec<_>>(), vec!["a", "c"]);
        assert_eq!(scan.duplicates["b"], vec![r1.join("b"), r2.join("b")]);
        assert_eq!(version_dirs(&r1.join("a")).unwrap().keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert!(super::scan(&[dir.path().join("missing")]).unwrap_err().contains("missing"));
        // No config.pbtxt: empty unless strict.
        let source = &scan.models["a"];
        assert_eq!(read_config(source, false).unwrap(), ModelConfig::default());
        let err = read_config(source, true).unwrap_err();
        assert!(err.to_string().contains("--strict-model-config"), "{err}");
        std::fs::write(source.config_path(), "max_batch_size: [").unwrap();
        let err = read_config(source, false).unwrap_err();
        assert!(err.to_string().contains("config.pbtxt") && err.to_string().contains("line 1"), "{err}");
    }
}
