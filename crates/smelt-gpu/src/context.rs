//! One opened GPU: the wgpu device and queue, the error and device-lost hooks that
//! turn wgpu's panics into errors, the buffer pool and the pipeline cache.

use crate::adapters::{self, AdapterSummary};
use crate::pipelines::PipelineCache;
use crate::pool::{Allocate, BufferPool, PoolStats, PooledBuffer};
use crate::{GpuConfig, GpuError, Result, TransferMode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Usage of every buffer Smelt makes: kernels read and write them, and copies move
/// inputs in and outputs out.
pub const STORAGE_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST).union(wgpu::BufferUsages::COPY_SRC);

/// Allocates pool buffers on a wgpu device.
pub struct DeviceAllocator {
    device: wgpu::Device,
}

impl Allocate for DeviceAllocator {
    type Buffer = wgpu::Buffer;
    fn allocate(&self, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("smelt pool"),
            size: bytes,
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        })
    }
}

/// An opened GPU, shared by every plan compiled for it.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    pub config: GpuConfig,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    pool: BufferPool<DeviceAllocator>,
    pipelines: PipelineCache,
    /// Errors wgpu reported outside any error scope, oldest first.
    errors: Arc<Mutex<Vec<String>>>,
    /// Set by the device-lost callback.
    lost: Arc<Mutex<Option<String>>>,
    lost_flag: Arc<AtomicBool>,
    weight_bytes: AtomicU64,
    /// Bytes of buffers the host maps directly (inputs and outputs on unified
    /// memory).
    mapped_bytes: AtomicU64,
    /// Runs move inputs and outputs through mapped device buffers.
    mapped_transfers: bool,
    /// A 16-byte buffer bound where a kernel's optional input is absent.
    placeholder: wgpu::Buffer,
}

impl GpuContext {
    /// Opens adapter `ordinal` (`gpu:N`), or the most capable one when `None`.
    pub fn new(ordinal: Option<usize>, config: GpuConfig) -> Result<Arc<GpuContext>> {
        let backends = adapters::backends_from_env()?;
        let instance = adapters::instance(backends);
        let mut found = adapters::enumerate(&instance, backends);
        if found.is_empty() {
            return Err(GpuError::NoAdapter(format!(
                "wgpu found none for backends {backends:?} (on Linux install a Vulkan driver, e.g. mesa-vulkan-drivers; {} restricts the backends)",
                adapters::ENV_BACKEND
            )));
        }
        let index = match ordinal {
            Some(n) if n < found.len() => n,
            Some(n) => {
                let names: Vec<String> =
                    found.iter().enumerate().map(|(i, a)| format!("gpu:{i} {}", a.get_info().name)).collect();
                return Err(GpuError::NoAdapter(format!(
                    "gpu:{n} does not exist; there are {} adapter(s): {}",
                    found.len(),
                    names.join(", ")
                )));
            }
            None => (0..found.len()).min_by_key(|&i| adapters::preference(&found[i].get_info())).unwrap_or(0),
        };
        let adapter = found.swap_remove(index);
        let summary = AdapterSummary::of(index, &adapter);
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
        let features = adapter.features() & wanted;
        let mappable = features.contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS);
        let mapped_transfers = match config.transfer {
            TransferMode::Auto => mappable && summary.unified_memory,
            TransferMode::Staging => false,
            TransferMode::Mapped if mappable => true,
            TransferMode::Mapped => {
                return Err(GpuError::Config(format!(
                    "transfer 'mapped' needs buffers the host can map, which '{}' does not offer (use auto or staging)",
                    summary.name
                )))
            }
        };
        // Ask for everything the adapter offers: model tensors need its largest
        // buffers and bindings, and kernels its most storage buffers.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("smelt"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::RequestDevice { adapter: summary.name.clone(), message: e.to_string() })?;

        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        // wgpu's default handler panics; a server must record the error and fail
        // the run that caused it instead.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("GPU error: {e}");
            if let Ok(mut list) = sink.lock() {
                list.push(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_flag = Arc::new(AtomicBool::new(false));
        let (lost_reason, flag) = (lost.clone(), lost_flag.clone());
        device.set_device_lost_callback(move |reason, message| {
            tracing::error!("GPU device lost: {reason:?} {message}");
            if let Ok(mut r) = lost_reason.lock() {
                *r = Some(format!("{reason:?}: {message}"));
            }
            flag.store(true, Ordering::SeqCst);
        });
        if config.verbose {
            eprintln!(
                "[smelt-gpu] opened gpu:{} '{}' ({}, {}), f16 {}, transfers {}, pool cap {} bytes, max age {:?}",
                summary.ordinal,
                summary.name,
                summary.backend,
                summary.device_type,
                summary.shader_f16,
                if mapped_transfers { "mapped" } else { "staging" },
                config.pool_max_bytes,
                config.buffer_max_age
            );
        }
        tracing::debug!(adapter = %summary.name, backend = %summary.backend, "GPU opened");
        let pool = BufferPool::new(
            DeviceAllocator { device: device.clone() },
            config.pool_max_bytes,
            config.buffer_max_age,
            limits.max_buffer_size,
        );
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("smelt placeholder"),
            size: 16,
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        });
        Ok(Arc::new(GpuContext {
            device,
            queue,
            summary,
            config,
            features,
            limits,
            pool,
            pipelines: PipelineCache::default(),
            errors,
            lost,
            lost_flag,
            weight_bytes: AtomicU64::new(0),
            mapped_bytes: AtomicU64::new(0),
            mapped_transfers,
            placeholder,
        }))
    }

    /// The backend's verbose log (MPS_VERBOSE=1 / TRITON_METAL_DEBUG=1): printed
    /// to stderr when on, a tracing debug event otherwise.
    pub fn log(&self, message: impl FnOnce() -> String) {
        if self.config.verbose {
            eprintln!("[smelt-gpu] {}", message());
        } else {
            tracing::debug!("{}", message());
        }
    }

    pub fn name(&self) -> &str {
        &self.summary.name
    }

    pub fn supports_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// Largest range one binding may cover.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    /// Storage-buffer offsets must be multiples of this.
    pub fn offset_alignment(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment as u64
    }

    pub fn pipelines(&self) -> &PipelineCache {
        &self.pipelines
    }

    pub fn placeholder(&self) -> &wgpu::Buffer {
        &self.placeholder
    }

    /// Fails when the device was lost or wgpu reported errors since the last check
    /// (and clears them), so a bad run fails and the next one starts clean.
    pub fn check(&self) -> Result<()> {
        if self.lost_flag.load(Ordering::SeqCst) {
            let reason = self.lost.lock().ok().and_then(|r| r.clone()).unwrap_or_default();
            return Err(GpuError::DeviceLost { adapter: self.summary.name.clone(), reason });
        }
        let errors: Vec<String> = self.errors.lock().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(GpuError::Device(errors.join("; ")))
        }
    }

    pub fn is_lost(&self) -> bool {
        self.lost_flag.load(Ordering::SeqCst)
    }

    /// Marks the device lost (what the callback does); for tests of recovery.
    pub fn mark_lost(&self, reason: &str) {
        if let Ok(mut r) = self.lost.lock() {
            *r = Some(reason.to_string());
        }
        self.lost_flag.store(true, Ordering::SeqCst);
    }

    // ── memory ────────────────────────────────────────────────────────────

    pub fn acquire(&self, bytes: u64) -> Result<PooledBuffer<wgpu::Buffer>> {
        if bytes > self.limits.max_buffer_size {
            return Err(GpuError::TooLarge {
                what: "a pooled buffer".into(),
                bytes,
                limit: self.limits.max_buffer_size,
            });
        }
        let b = self.pool.acquire(bytes);
        self.log(|| format!("pool: {bytes} bytes from the {} byte class; {:?}", b.bytes, self.pool.stats()));
        Ok(b)
    }

    pub fn release(&self, buffer: PooledBuffer<wgpu::Buffer>) {
        self.pool.release(buffer);
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Frees pooled buffers idle past the maximum age.
    pub fn trim_pool(&self) -> usize {
        self.pool.trim()
    }

    /// Uploads constant data into its own buffer (weights live as long as their plan).
    pub fn upload(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let size = (bytes.len() as u64).div_ceil(16).max(1) * 16;
        if size > self.limits.max_buffer_size {
            return Err(GpuError::TooLarge {
                what: format!("'{label}'"),
                bytes: size,
                limit: self.limits.max_buffer_size,
            });
        }
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: STORAGE_USAGE,
            mapped_at_creation: true,
        });
        {
            let mut view = buffer
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| GpuError::Device(format!("mapping '{label}' for upload: {e}")))?;
            if bytes.len() as u64 == size {
                view.copy_from_slice(bytes);
            } else {
                let mut padded = vec![0u8; size as usize];
                padded[..bytes.len()].copy_from_slice(bytes);
                view.copy_from_slice(&padded);
            }
        }
        buffer.unmap();
        self.weight_bytes.fetch_add(size, Ordering::Relaxed);
        Ok(buffer)
    }

    /// Whether runs write inputs and read outputs through mapped device buffers
    /// (unified memory, or `transfer = mapped`) instead of staging copies.
    pub fn mapped_transfers(&self) -> bool {
        self.mapped_transfers
    }

    /// A device buffer the host maps directly, for a plan's inputs and outputs on
    /// unified memory (needs `MAPPABLE_PRIMARY_BUFFERS`). Freed with its plan:
    /// give its size to [`forget_mapped`](Self::forget_mapped) then.
    pub fn create_mapped(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.div_ceil(16).max(1) * 16;
        if size > self.limits.max_buffer_size {
            return Err(GpuError::TooLarge {
                what: format!("'{label}'"),
                bytes: size,
                limit: self.limits.max_buffer_size,
            });
        }
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: STORAGE_USAGE | wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::MAP_WRITE,
            mapped_at_creation: false,
        });
        self.mapped_bytes.fetch_add(size, Ordering::Relaxed);
        Ok(buffer)
    }

    pub fn forget_mapped(&self, bytes: u64) {
        let size = bytes.div_ceil(16).max(1) * 16;
        self.mapped_bytes.fetch_sub(size.min(self.mapped_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
    }

    /// A host-visible staging buffer: `upload` ones (MAP_WRITE | COPY_SRC) start
    /// mapped, `download` ones (MAP_READ | COPY_DST) not.
    pub fn create_staging(&self, label: &str, bytes: u64, upload: bool) -> wgpu::Buffer {
        let usage = if upload {
            wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC
        } else {
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST
        };
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.div_ceil(wgpu::MAP_ALIGNMENT).max(1) * wgpu::MAP_ALIGNMENT,
            usage,
            mapped_at_creation: upload,
        })
    }

    /// Maps each buffer whole (they must be distinct), waiting for `submission`
    /// only, so other runs' work keeps going.
    pub fn map_all(
        &self,
        buffers: &[(&wgpu::Buffer, wgpu::MapMode)],
        submission: Option<wgpu::SubmissionIndex>,
    ) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, (b, mode)) in buffers.iter().enumerate() {
            let tx = tx.clone();
            b.slice(..).map_async(*mode, move |r| {
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        // Without a submission to wait for (buffers idle since an earlier run),
        // a non-blocking poll: waiting for "the latest submission" would wait for
        // other plans' work too.
        let poll = match submission {
            Some(index) => wgpu::PollType::Wait { submission_index: Some(index), timeout: None },
            None => wgpu::PollType::Poll,
        };
        self.device.poll(poll).map_err(|e| GpuError::Device(e.to_string()))?;
        let mut done = 0;
        while done < buffers.len() {
            // Callbacks of maps whose buffers another thread's work still used
            // run at a later poll.
            match rx.recv_timeout(std::time::Duration::from_millis(1)) {
                Ok((i, r)) => {
                    r.map_err(|e| GpuError::Readback(format!("mapping buffer {i}: {e}")))?;
                    done += 1;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    self.device.poll(wgpu::PollType::Poll).map_err(|e| GpuError::Device(e.to_string()))?;
                    self.check()?;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(GpuError::Readback("a map callback was dropped".into()))
                }
            }
        }
        self.check()
    }

    /// Records that a weight buffer was freed.
    pub fn forget_weight(&self, bytes: u64) {
        self.weight_bytes.fetch_sub(bytes.min(self.weight_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
    }

    /// Device memory Smelt holds: weights, mapped input/output buffers and every
    /// pool buffer (in use or idle).
    pub fn memory_in_use(&self) -> u64 {
        self.weight_bytes.load(Ordering::Relaxed)
            + self.mapped_bytes.load(Ordering::Relaxed)
            + self.pool.stats().allocated_bytes
    }

    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes.load(Ordering::Relaxed)
    }

    /// Blocks until the queue is idle, then reports errors.
    pub fn wait(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Device(e.to_string()))?;
        self.check()
    }

    /// Maps `staging` (MAP_READ) and copies `ranges` out of it.
    pub fn read_mapped(&self, staging: &wgpu::Buffer, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>> {
        let total = ranges.iter().map(|&(o, l)| o + l).max().unwrap_or(0);
        if total == 0 {
            return Ok(ranges.iter().map(|_| Vec::new()).collect());
        }
        let map_len = total.div_ceil(wgpu::MAP_ALIGNMENT) * wgpu::MAP_ALIGNMENT;
        let map_len = map_len.min(staging.size());
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..map_len).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| GpuError::Readback("the map callback never ran".into()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let out: Vec<Vec<u8>> = {
            let view = staging.slice(..map_len).get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
            ranges.iter().map(|&(o, l)| view[o as usize..(o + l) as usize].to_vec()).collect()
        };
        staging.unmap();
        Ok(out)
    }
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        let stats = self.pool.stats();
        let pipelines = self.pipelines.len();
        let weights = self.weight_bytes();
        self.log(|| format!("closing: {pipelines} pipelines, {weights} weight bytes, pool {stats:?}"));
    }
}
