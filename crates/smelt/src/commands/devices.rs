//! `smelt devices`: the GPU adapters Smelt can use, numbered as `--device gpu:N`.

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> Result<()> {
    println!("cpu        {} threads", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let adapters = smelt_runtime::gpu::list_adapters()?;
    if adapters.is_empty() {
        println!("no GPU adapter found (on Linux, install a Vulkan driver such as mesa-vulkan-drivers; SMELT_WGPU_BACKEND restricts the backends searched)");
        return Ok(());
    }
    for a in &adapters {
        println!("gpu:{:<6} {} ({}, {}){}", a.ordinal, a.name, a.backend, a.device_type, driver(&a.driver));
        println!("  f16                 {}", yes(a.shader_f16));
        match a.subgroups {
            Some((min, max)) => println!("  subgroups           yes, sizes {min}..{max}"),
            None => println!("  subgroups           no"),
        }
        println!(
            "  timestamps          {}{}",
            yes(a.timestamps),
            if a.timestamps && !a.timestamps_inside_passes { " (pass boundaries only)" } else { "" }
        );
        if a.cooperative_matrix.is_empty() {
            println!("  cooperative matrix  no");
        } else {
            println!("  cooperative matrix  {}", a.cooperative_matrix.join(", "));
        }
        println!("  unified memory      {}", yes(a.unified_memory));
        println!("  mappable buffers    {}", yes(a.mappable_primary_buffers));
        println!("  max buffer          {}", super::inspect::human_bytes(a.max_buffer_size));
        println!("  max storage binding {}", super::inspect::human_bytes(a.max_storage_buffer_binding_size));
        println!("  workgroup storage   {}", super::inspect::human_bytes(a.max_compute_workgroup_storage_size as u64));
        println!("  workgroup threads   {}", a.max_compute_invocations_per_workgroup);
        println!("  storage buffers     {} per stage", a.max_storage_buffers_per_shader_stage);
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn driver(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" driver {d}")
    }
}
