//! Every WGSL kernel, with every set of override values the code can choose, must
//! parse and validate in naga and translate to MSL (Metal), SPIR-V (Vulkan) and
//! HLSL (DX12). This is how Smelt knows its kernels are Metal-ready without a Mac.

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn translate(name: &str, wgsl: &str, entry: &str, overrides: &[(&str, f64)]) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| format!("parse: {}", e.emit_to_string(wgsl)))?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .map_err(|e| format!("validate: {}", e.emit_to_string(wgsl)))?;
    let mut constants = naga::back::PipelineConstants::default();
    for &(k, v) in overrides {
        constants.insert(k.to_string(), v);
    }
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, entry)),
        &constants,
    )
    .map_err(|e| format!("overrides {overrides:?}: {e}"))?;

    let msl_pipeline = msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
        ..Default::default()
    };
    msl::write_string(&module, &info, &msl::Options::default(), &msl_pipeline)
        .map_err(|e| format!("MSL ({overrides:?}): {e}"))?;

    let spv_pipeline =
        spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: entry.to_string() };
    spv::write_vec(&module, &info, &spv::Options::default(), Some(&spv_pipeline))
        .map_err(|e| format!("SPIR-V ({overrides:?}): {e}"))?;

    let mut hlsl_out = String::new();
    let hlsl_pipeline = hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, entry.to_string())) };
    hlsl::Writer::new(&mut hlsl_out, &hlsl::Options::default(), &hlsl_pipeline)
        .write(&module, &info, None)
        .map_err(|e| format!("HLSL ({overrides:?}): {e}"))?;
    let _ = name;
    Ok(())
}

#[test]
fn every_kernel_variant_translates_to_msl_spirv_and_hlsl() {
    let mut failures = Vec::new();
    let mut variants = 0;
    for source in smelt_gpu::ops::all_sources() {
        for entry in source.entries {
            let sets = (source.override_sets)();
            let sets = if sets.is_empty() { vec![Vec::new()] } else { sets };
            for set in &sets {
                variants += 1;
                if let Err(e) = translate(source.name, source.wgsl, entry, set) {
                    failures.push(format!("{} :: {entry}: {e}", source.name));
                }
            }
        }
    }
    assert!(variants > 0, "no kernels registered");
    assert!(failures.is_empty(), "{} of {variants} variants failed:\n{}", failures.len(), failures.join("\n"));
    eprintln!("{variants} kernel variants translated to MSL, SPIR-V and HLSL");
}
