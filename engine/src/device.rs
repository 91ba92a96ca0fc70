//! The compute device the models load onto: CUDA 0 when built with the `cuda`
//! feature and a GPU is present, else the CPU. It does not move tensors.

use candle_core::Device;

/// The compute device: CUDA 0 with the `cuda` feature when present, else CPU.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(d) = Device::cuda_if_available(0) {
            return d;
        }
    }
    Device::Cpu
}
