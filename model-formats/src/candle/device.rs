//! Choosing the candle device for a [`Placement`], and what the driver says of the GPUs.
//!
//! CUDA support is compiled only with the `cuda` cargo feature (candle's CUDA device and
//! cudarc's driver API); without it a GPU placement is a clear load error, never a silent CPU
//! run. Both builds expose the same functions so callers need no `cfg`.

use candle_core::Device;
use thiserror::Error;

use crate::Placement;

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

/// A GPU as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// CUDA ordinal.
    pub ordinal: usize,
    /// Device name.
    pub name: String,
    /// Free memory, bytes.
    pub free_bytes: usize,
    /// Total memory, bytes.
    pub total_bytes: usize,
}

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
#[cfg(feature = "cuda")]
pub fn gpus() -> Result<Vec<GpuInfo>, DeviceError> {
    use cudarc::driver::CudaContext;
    let count = CudaContext::device_count().map_err(|e| DeviceError::Driver(e.to_string()))?;
    (0..usize::try_from(count).unwrap_or(0))
        .map(|ordinal| {
            let unavailable = |e: cudarc::driver::DriverError| DeviceError::Unavailable { ordinal, message: e.to_string() };
            let context = CudaContext::new(ordinal).map_err(unavailable)?;
            let name = context.name().map_err(unavailable)?;
            let (free_bytes, total_bytes) = context.mem_get_info().map_err(unavailable)?;
            Ok(GpuInfo { ordinal, name, free_bytes, total_bytes })
        })
        .collect()
}

/// Every GPU the driver reports, with its memory (for metrics and readiness). Empty without
/// the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub fn gpus() -> Result<Vec<GpuInfo>, DeviceError> {
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_always_works() {
        assert!(matches!(device_for(&Placement::Cpu), Ok(Device::Cpu)));
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
