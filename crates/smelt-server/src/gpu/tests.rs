use super::*;
use crate::config;
use std::time::Duration;

fn parse(text: &str) -> ModelConfig {
    let mut c = config::parse_text("m", "m/config.pbtxt", text).unwrap();
    crate::repository::complete_static(&mut c, "m", "m/config.pbtxt", false).unwrap();
    c
}

fn place(text: &str, usable: Option<usize>) -> Result<(Placement, ModelConfig), ConfigError> {
    let mut c = parse(text);
    let p = placement(&mut c, "m", "m/config.pbtxt", || usable)?;
    Ok((p, c))
}

fn gpu(ordinal: Option<usize>, field: &str) -> Placement {
    Placement::Gpu { ordinal, field: field.to_string() }
}

#[test]
fn instance_groups_choose_one_device() {
    assert_eq!(place("", Some(0)).unwrap().0, Placement::Cpu, "no instance_group: the CPU, as before");
    assert_eq!(place("instance_group [ { kind: KIND_CPU count: 2 } ]", Some(0)).unwrap().0, Placement::Cpu);
    let (p, c) = place("instance_group [ { kind: KIND_GPU } ]", None).unwrap();
    assert_eq!(p, gpu(None, "instance_group[0].kind"));
    assert_eq!(c.instance_group[0].kind, Kind::Gpu as i32);
    let (p, _) = place("instance_group [ { kind: KIND_GPU gpus: [ 1 ] count: 2 } ]", None).unwrap();
    assert_eq!(p, gpu(Some(1), "instance_group[0].gpus"));
    let two = "instance_group [ { kind: KIND_GPU gpus: [ 0 ] }, { kind: KIND_GPU gpus: [ 0 ] count: 3 } ]";
    let (p, c) = place(two, None).unwrap();
    assert_eq!(p, gpu(Some(0), "instance_group[0].gpus"));
    assert_eq!(crate::repository::instance_count(&c), 4);
}

#[test]
fn kind_auto_takes_a_real_gpu_only() {
    let (p, c) = place("instance_group [ { kind: KIND_AUTO } ]", Some(2)).unwrap();
    assert_eq!(p, gpu(Some(2), "instance_group[0].kind"));
    assert_eq!(c.instance_group[0].kind, Kind::Gpu as i32);
    let (p, c) = place("instance_group [ { kind: KIND_AUTO } ]", None).unwrap();
    assert_eq!(p, Placement::Cpu);
    assert_eq!(c.instance_group[0].kind, Kind::Cpu as i32, "the configuration reports the kind chosen");
    // Beside an explicit group, KIND_AUTO follows it (the adapters are not asked).
    let (p, c) = place("instance_group [ { kind: KIND_AUTO }, { kind: KIND_GPU gpus: [ 1 ] } ]", None).unwrap();
    assert_eq!(p, gpu(Some(1), "instance_group[1].gpus"));
    assert!(c.instance_group.iter().all(|g| g.kind == Kind::Gpu as i32));
    // KIND_AUTO with gpus: as KIND_GPU.
    let (p, _) = place("instance_group [ { kind: KIND_AUTO gpus: [ 0 ] } ]", None).unwrap();
    assert_eq!(p, gpu(Some(0), "instance_group[0].gpus"));
}

#[test]
fn groups_on_several_devices_are_refused_naming_the_field() {
    let cases = [
        ("instance_group [ { kind: KIND_GPU gpus: [ 0, 1 ] } ]", "instance_group[0].gpus", "one device"),
        ("instance_group [ { kind: KIND_GPU gpus: [ -1 ] } ]", "instance_group[0].gpus", "-1"),
        ("instance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]", "instance_group[0].gpus", "not KIND_GPU"),
        ("instance_group [ { kind: KIND_CPU }, { kind: KIND_GPU } ]", "instance_group[1].kind", "KIND_CPU"),
        (
            "instance_group [ { kind: KIND_GPU gpus: [ 0 ] }, { kind: KIND_GPU gpus: [ 1 ] } ]",
            "instance_group[1].gpus",
            "gpu 1",
        ),
    ];
    for (text, field, message) in cases {
        let err = place(text, Some(0)).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field), "{text}: {err}");
        assert!(err.message.contains(message), "{text}: {err}");
        assert!(err.to_string().contains("m/config.pbtxt"), "{err}");
    }
}

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
}

fn param(key: &str, value: &str) -> String {
    format!("parameters {{ key: \"{key}\" value: {{ string_value: \"{value}\" }} }}\n")
}

#[test]
fn parameters_set_the_gpu_config() {
    let none = env(&[]);
    let c = parse("");
    assert_eq!(gpu_config(&c, "m", "f", &none).unwrap(), GpuConfig::default());
    let text =
        param("gpu_pool_max_bytes", "64M") + &param("gpu_buffer_max_age_secs", "1.5") + &param("gpu_verbose", "1");
    let g = gpu_config(&parse(&text), "m", "f", &none).unwrap();
    assert_eq!(g.pool_max_bytes, 64 << 20);
    assert_eq!(g.buffer_max_age, Duration::from_millis(1500));
    assert!(g.verbose);
    // The reference documents' names.
    let text = param("MPS_MAX_POOL_SIZE", "1024") + &param("MPS_MAX_BUFFER_AGE", "0") + &param("MPS_VERBOSE", "true");
    let g = gpu_config(&parse(&text), "m", "f", &none).unwrap();
    assert_eq!((g.pool_max_bytes, g.buffer_max_age, g.verbose), (1024, Duration::ZERO, true));
    // Smelt's name wins over its alias; the configuration over the environment.
    let text = param("gpu_pool_max_bytes", "2K") + &param("MPS_MAX_POOL_SIZE", "1G");
    let g =
        gpu_config(&parse(&text), "m", "f", env(&[("SMELT_GPU_POOL_MAX_BYTES", "5"), ("MPS_VERBOSE", "1")])).unwrap();
    assert_eq!(g.pool_max_bytes, 2048);
    assert!(g.verbose, "what the configuration leaves out comes from the environment");
    let text = param("gpu_transfer", "staging") + &param("gpu_cpu_ops", "Resize,TopK");
    let g = gpu_config(&parse(&text), "m", "f", &none).unwrap();
    assert_eq!(g.cpu_ops, ["Resize", "TopK"]);
    let bad = config::parse_text("m", "f", &param("gpu_transfer", "dma")).unwrap();
    assert!(gpu_config(&bad, "m", "f", &none).unwrap_err().to_string().contains("'dma'"));
    // Parameters for something else are left alone.
    assert!(gpu_config(&parse(&param("execution_mode", "fast")), "m", "f", &none).is_ok());
}

#[test]
fn bad_parameters_name_model_file_and_parameter() {
    let cases = [
        (param("gpu_pool_max_bytes", "-5"), "parameters.gpu_pool_max_bytes", "byte count"),
        (param("MPS_MAX_BUFFER_AGE", "soon"), "parameters.MPS_MAX_BUFFER_AGE", "'soon'"),
        (param("MPS_VERBOSE", "loud"), "parameters.MPS_VERBOSE", "'loud'"),
        (param("gpu_pool_size", "1"), "parameters.gpu_pool_size", "gpu_pool_max_bytes"),
    ];
    for (text, field, message) in cases {
        let c = config::parse_text("m", "m/config.pbtxt", &text).unwrap();
        let err = gpu_config(&c, "m", "m/config.pbtxt", env(&[])).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field), "{text}: {err}");
        assert!(err.message.contains(message), "{text}: {err}");
        let shown = err.to_string();
        assert!(shown.contains("model 'm'") && shown.contains("m/config.pbtxt") && shown.contains(field), "{shown}");
        // complete_static checks them too, so a bad one fails the load.
        let mut c = c;
        let err = crate::repository::complete_static(&mut c, "m", "m/config.pbtxt", false).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field));
    }
    let err = gpu_config(&parse(""), "m", "f", env(&[("MPS_MAX_POOL_SIZE", "x")])).unwrap_err();
    assert!(err.to_string().contains("MPS_MAX_POOL_SIZE"), "{err}");
}

/// An adapter's context, or `None` (the test then passes, saying why) unless
/// SMELT_REQUIRE_GPU=1.
fn devices_with_gpu() -> Option<(GpuDevices, Arc<GpuContext>)> {
    let devices = GpuDevices::default();
    match devices.context(None, GpuConfig::default(), "m") {
        Ok(ctx) => Some((devices, ctx)),
        Err(e) => {
            if std::env::var("SMELT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("SMELT_REQUIRE_GPU=1 but no GPU could be opened: {e}");
            }
            eprintln!("skipped: no GPU ({e}); set SMELT_REQUIRE_GPU=1 to make this a failure");
            None
        }
    }
}

#[test]
fn one_context_per_adapter_and_a_lost_one_is_replaced() {
    let Some((devices, ctx)) = devices_with_gpu() else { return };
    let n = ctx.summary.ordinal;
    let again = devices.context(Some(n), GpuConfig { verbose: true, ..GpuConfig::default() }, "other").unwrap();
    assert!(Arc::ptr_eq(&ctx, &again), "models on one adapter share its context");
    assert!(!again.config.verbose, "the first model's settings stay");
    assert!(Arc::ptr_eq(&ctx, &devices.context(None, GpuConfig::default(), "m2").unwrap()));
    ctx.mark_lost("test");
    assert!(devices.open().is_empty(), "a lost context is not reported");
    let fresh = devices.context(Some(n), GpuConfig::default(), "m").unwrap();
    assert!(!Arc::ptr_eq(&ctx, &fresh) && !fresh.is_lost(), "a lost context is never handed out again");
    let Err(err) = devices.context(Some(99), GpuConfig::default(), "m") else { panic!("gpu:99 opened") };
    assert!(err.contains("gpu:99 does not exist"), "{err}");

    let families = GpuMetrics { devices: Arc::new(devices) }.families();
    let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
    for name in ["nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "smelt_gpu_pool_evictions_total"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let used = families.iter().find(|f| f.name == "nv_gpu_memory_used_bytes").unwrap();
    assert_eq!(used.samples.len(), 1);
    assert_eq!(used.samples[0].0, vec![("gpu_uuid".to_string(), gpu_uuid(&fresh))]);
    assert!(gpu_uuid(&fresh).starts_with(&format!("gpu{n}-")), "{}", gpu_uuid(&fresh));
}

/// A KIND_GPU model whose device is lost fails its requests with a message
/// saying so; unloading and loading it opens a fresh context, and it serves.
#[test]
fn a_lost_device_fails_requests_until_the_model_is_reloaded() {
    use crate::datatype::WireType;
    use crate::infer::{InputTensor, TensorData};
    use crate::models::{LoadOverride, ModelControlMode, ModelRegistry, RegistryOptions};
    if devices_with_gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model_repository/simple_cnn");
    std::fs::create_dir_all(dir.path().join("cnn/1")).unwrap();
    std::fs::copy(example.join("1/model.onnx"), dir.path().join("cnn/1/model.onnx")).unwrap();
    let text = std::fs::read_to_string(example.join("config.pbtxt")).unwrap();
    let text = text.replace("simple_cnn", "cnn").replace("KIND_CPU", "KIND_GPU");
    std::fs::write(dir.path().join("cnn/config.pbtxt"), text).unwrap();
    let registry = ModelRegistry::new(RegistryOptions {
        repositories: vec![dir.path().to_path_buf()],
        strict_config: false,
        control_mode: ModelControlMode::Explicit,
        session: Default::default(),
    });
    registry.load_blocking("cnn", LoadOverride::default()).unwrap();
    let input = || {
        let values: Vec<f32> = (0..3 * 32 * 32).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        vec![InputTensor {
            name: "input".into(),
            wire: WireType::F32,
            shape: vec![1, 3, 32, 32],
            data: TensorData::Tensor(smelt_ir::Tensor::from_vec(&[1, 3, 32, 32], values).unwrap()),
        }]
    };
    let served = registry.ready_version("cnn", "").unwrap();
    assert!(served.gpu_uuid.is_some());
    served.run_unscheduled(input()).unwrap();
    let contexts = registry.gpu_devices().open();
    assert_eq!(contexts.len(), 1);
    contexts[0].mark_lost("test");
    let err = served.run_unscheduled(input()).unwrap_err();
    assert_eq!(err.kind, crate::error::ErrorKind::Internal);
    assert!(err.message.contains("GPU device lost") && err.message.contains("Reload the model"), "{err}");
    registry.unload("cnn").unwrap();
    registry.load_blocking("cnn", LoadOverride::default()).unwrap();
    let fresh = registry.ready_version("cnn", "").unwrap();
    fresh.run_unscheduled(input()).unwrap();
    let now = registry.gpu_devices().open();
    assert_eq!(now.len(), 1);
    assert!(!Arc::ptr_eq(&now[0], &contexts[0]), "the reload opened a fresh context");
}
