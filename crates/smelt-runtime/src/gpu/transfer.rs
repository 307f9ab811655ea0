//! Host-visible staging buffers for a plan layout's runs on adapters without
//! unified memory. Each run takes one upload/download pair from the layout's ring
//! and gives it back after reading its outputs, so while one request's work runs
//! (or its outputs are read back) the next request already writes its inputs and
//! submits: transfers overlap GPU work when requests queue. Pairs are made on
//! demand and at most [`RING_MAX`] idle ones are kept.

use smelt_gpu::{wgpu, GpuContext, GpuError};
use std::sync::Mutex;

/// Idle pairs a layout keeps (concurrent runs beyond this make new ones).
pub const RING_MAX: usize = 4;

/// One run's staging buffers. The upload buffer is mapped (writable) while the
/// pair is idle in the ring.
pub struct StagingPair {
    pub upload: wgpu::Buffer,
    pub download: wgpu::Buffer,
}

/// Sizes of a layout's pairs and the ring itself.
pub struct StagingRing {
    upload_bytes: u64,
    download_bytes: u64,
    idle: Mutex<Vec<StagingPair>>,
}

impl StagingRing {
    pub fn new(upload_bytes: u64, download_bytes: u64) -> StagingRing {
        StagingRing { upload_bytes, download_bytes, idle: Mutex::new(Vec::new()) }
    }

    /// An idle pair, or a new one; its upload buffer is mapped.
    pub fn take(&self, ctx: &GpuContext) -> StagingPair {
        if let Some(pair) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return pair;
        }
        StagingPair {
            upload: ctx.create_staging("smelt inputs", self.upload_bytes, true),
            download: ctx.create_staging("smelt outputs", self.download_bytes, false),
        }
    }

    /// Waits for the run's `submission`, mapping the download buffer for reading
    /// and the upload buffer for the pair's next run.
    pub fn wait_mapped(
        &self,
        ctx: &GpuContext,
        pair: &StagingPair,
        submission: wgpu::SubmissionIndex,
    ) -> Result<(), GpuError> {
        ctx.map_all(&[(&pair.download, wgpu::MapMode::Read), (&pair.upload, wgpu::MapMode::Write)], Some(submission))
    }

    /// After the run's outputs were read (and the download buffer unmapped):
    /// keeps the pair if the ring has room.
    pub fn give_back(&self, pair: StagingPair) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < RING_MAX {
                idle.push(pair);
            }
        }
    }
}
