//! Choosing the candle device for a [`Placement`], and what the driver says of the GPUs.
//!
//! CUDA support is compiled only with the `cuda` cargo feature (candle's CUDA device and
//! cudarc's driver API); without it a GPU placement is a clear load error, never a silent CPU
//! run. Both builds expose the same functions so callers need no `cfg`.

use candle_core::Device;
use thiserror::Error;

use quiver_core::Placement;

/// Why a device could not be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// This binary was built without the `cuda` feature.
    #[error("GPU {ordinal} requested, but this Quiver was built without CUDA (rebuild with `cargo build --release --features cuda`, or use KIND_CPU)")]
    NotBuiltWithCuda {
        /// The requested device.
        ordinal: usize,
    },
    /// The driver reports no such device, or the device failed to initialise.
    #[error("GPU {ordinal} is not usable: {message}")]
    Unavailable {
        /// The requested device.
        ordinal: usize,
        /// What the driver said.
        message: String,
    },
    /// The CUDA driver could not be queried at all.
    #[error("the CUDA driver is not usable: {0}")]
    Driver(String),
}

pub use quiver_core::GpuInfo;

/// Whether this build can place models on GPUs.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The candle device for `placement`.
pub fn device_for(placement: &Placement) -> Result<Device, DeviceError> {
    match *placement {
        Placement::Cpu => Ok(Device::Cpu),
        Placement::Gpu(ordinal) => cuda_device(ordinal),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device, DeviceError> {
    let count = cudarc::driver::CudaContext::device_count().map_err(|e| DeviceError::Driver(e.to_string()))?;
    if ordinal >= usize::try_from(count).unwrap_or(0) {
        return Err(DeviceError::Unavailable { ordinal, message: format!("the driver reports {count} GPU(s)") });
    }
    Device::new_cuda(ordinal).map_err(|e| DeviceError::Unavailable { ordinal, message: e.to_string() })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuiltWithCuda { ordinal })
}

/// Every GPU the driver reports, with its memory (for metrics and readiness). Empty without
/// the `cuda` feature.
///
/// Memory figures need a CUDA context, so the first successful call retains each GPU's primary
/// context (the one candle's device uses too) and keeps it for the life of the process: later
/// calls only query, and a periodic reading never creates and destroys a context on a GPU that
/// no model uses. Triton likewise holds a context on every GPU it sees. Blocking (driver calls):
/// call it from a blocking thread in async code.
#[cfg(feature = "cuda")]
pub fn gpus() -> Result<Vec<GpuInfo>, DeviceError> {
    use std::sync::{Arc, Mutex, PoisonError};

    use cudarc::driver::{CudaContext, DriverError};

    static CONTEXTS: Mutex<Vec<Arc<CudaContext>>> = Mutex::new(Vec::new());
    let mut contexts = CONTEXTS.lock().unwrap_or_else(PoisonError::into_inner);
    if contexts.is_empty() {
        let count = CudaContext::device_count().map_err(|e| DeviceError::Driver(e.to_string()))?;
        *contexts = (0..usize::try_from(count).unwrap_or(0))
            .map(|ordinal| CudaContext::new(ordinal).map_err(|e| DeviceError::Unavailable { ordinal, message: e.to_string() }))
            .collect::<Result<_, _>>()?;
    }
    contexts
        .iter()
        .map(|context| {
            let ordinal = context.ordinal();
            let unavailable = |e: DriverError| DeviceError::Unavailable { ordinal, message: e.to_string() };
            let name = context.name().map_err(unavailable)?;
            let uuid = gpu_uuid(context.uuid().map_err(unavailable)?.bytes.map(|b| u8::from_ne_bytes(b.to_ne_bytes())));
            let (free_bytes, total_bytes) = context.mem_get_info().map_err(unavailable)?;
            Ok(GpuInfo { ordinal, name, uuid, free_bytes, total_bytes })
        })
        .collect()
}

/// Every GPU the driver reports, with its memory (for metrics and readiness). Empty without
/// the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub fn gpus() -> Result<Vec<GpuInfo>, DeviceError> {
    Ok(Vec::new())
}

/// A device UUID's 16 bytes as NVML, `nvidia-smi -L` and Triton's `gpu_uuid` label write it:
/// `GPU-` and lower-case hex grouped 8-4-4-4-12.
pub fn gpu_uuid(bytes: [u8; 16]) -> String {
    let mut uuid = String::with_capacity(40);
    uuid.push_str("GPU-");
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            uuid.push('-');
        }
        uuid.push_str(&format!("{byte:02x}"));
    }
    uuid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_always_works() {
        assert!(matches!(device_for(&Placement::Cpu), Ok(Device::Cpu)));
    }

    #[test]
    fn uuid_is_written_as_nvml_writes_it() {
        let bytes = [0x5f, 0x3e, 0x12, 0xab, 0x00, 0x01, 0xc2, 0xd3, 0x9e, 0x8f, 0x70, 0x61, 0x52, 0x43, 0x34, 0xff];
        assert_eq!(gpu_uuid(bytes), "GPU-5f3e12ab-0001-c2d3-9e8f-7061524334ff");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_cuda_a_gpu_placement_says_so() {
        let err = device_for(&Placement::Gpu(1)).unwrap_err();
        assert_eq!(err, DeviceError::NotBuiltWithCuda { ordinal: 1 });
        assert!(err.to_string().contains("--features cuda"), "{err}");
        assert!(gpus().unwrap().is_empty());
        const { assert!(!CUDA_BUILT) };
    }
}
