//! Weight matrices and how they are stored: the [`WeightFormat`] chosen at
//! load, a single matrix (`Linear`: candle's `QMatMul` or the engine's packed
//! kernel) and projections of one input fused into one matmul (`Proj`).
//! It does not read GGUF files (`llama` hands it the tensors).

use crate::error::EngineError;
use crate::kernels::PackedMatrix;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};

/// How weights are stored after loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// Keep the file's quantisation (e.g. Q4_1; slow scalar kernels on CPU).
    Native,
    /// Requantise to Q8_0 at load: candle's SIMD kernels, near-lossless.
    Q8_0,
    /// Dequantise to f32 (largest, fastest for large batches).
    F32,
    /// On CPU, keep Q4_0 / Q4_1 / Q8_0 tensors at their size, repacked at load
    /// for the engine's own SIMD kernels (`kernels/`: AVX-512 VNNI, AVX2 or
    /// scalar, bit-identical); other tensors, and every tensor on other
    /// devices, as [`WeightFormat::Q8_0`].
    #[default]
    Packed,
}

/// A weight matrix (`(n, k)`, applied as `x @ w^T`).
pub(super) enum Linear {
    /// candle's `QMatMul`. Converted Q8_0 weights whose `k` is not a multiple
    /// of 256 are zero-padded to one, and inputs padded alike, so candle's
    /// repacked SIMD Q8_0 kernels apply (they need `k % 256 == 0`); the zero
    /// columns add nothing to the dot products.
    Candle { w: QMatMul, pad: usize },
    /// The engine's packed 4-/8-bit kernel (CPU only).
    Packed(PackedMatrix),
}

impl Linear {
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        use candle_core::Module;
        match self {
            Linear::Candle { w, pad: 0 } => w.forward(x),
            Linear::Candle { w, pad } => w.forward(&x.pad_with_zeros(candle_core::D::Minus1, 0, *pad)?),
            Linear::Packed(p) => packed_forward(p, x),
        }
    }
}

/// Threads for a packed matmul: `CANDLE_NUM_THREADS` (as for candle's
/// kernels), else one per core.
fn matmul_threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("CANDLE_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

fn packed_forward(p: &PackedMatrix, x: &Tensor) -> candle_core::Result<Tensor> {
    let k = x.dim(candle_core::D::Minus1)?;
    if k != p.k() {
        candle_core::bail!("packed matmul: input has {k} columns, weights {}", p.k());
    }
    let m = x.elem_count() / k.max(1);
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = p.n();
    }
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let y = {
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("packed matmul: input not on the CPU");
        };
        let start = layout.start_offset();
        let xs = cpu
            .as_slice::<f32>()?
            .get(start..start + m * k)
            .ok_or_else(|| candle_core::Error::Msg("packed matmul: short input".into()))?;
        p.matmul(xs, m, matmul_threads())
    };
    Tensor::from_vec(y, dims, &Device::Cpu)
}

fn to_q8(w: Tensor) -> Result<Linear, EngineError> {
    let k = w.dims().last().copied().unwrap_or(0);
    let pad = k.next_multiple_of(256) - k;
    let w = if pad > 0 { w.pad_with_zeros(candle_core::D::Minus1, 0, pad)? } else { w };
    Ok(Linear::Candle { w: QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0)?)?, pad })
}

/// Pack same-typed GGUF tensors stacked row-wise, if the engine's kernel takes
/// them (CPU, Q4_0 / Q4_1 / Q8_0, same `k`).
fn pack(ws: &[QTensor], dev: &Device) -> Result<Option<Linear>, EngineError> {
    let Some(first) = ws.first() else { return Ok(None) };
    if !dev.is_cpu() {
        return Ok(None);
    }
    let dtype = first.dtype();
    let k = first.shape().dims().last().copied().unwrap_or(0);
    if ws.iter().any(|w| w.dtype() != dtype || w.shape().dims().len() != 2 || w.shape().dims()[1] != k) {
        return Ok(None);
    }
    let n = ws.iter().map(|w| w.shape().dims()[0]).sum();
    let mut raw = Vec::new();
    for w in ws {
        raw.extend_from_slice(&w.data()?);
    }
    Ok(PackedMatrix::from_ggml(dtype, &raw, n, k).map(Linear::Packed))
}

pub(super) fn convert(q: QTensor, fmt: WeightFormat, dev: &Device) -> Result<Linear, EngineError> {
    let native = |w| -> Result<Linear, EngineError> { Ok(Linear::Candle { w: QMatMul::from_qtensor(w)?, pad: 0 }) };
    match fmt {
        WeightFormat::Native => native(q),
        WeightFormat::Packed => match pack(std::slice::from_ref(&q), dev)? {
            Some(p) => Ok(p),
            None => to_q8(q.dequantize(dev)?),
        },
        WeightFormat::Q8_0 => to_q8(q.dequantize(dev)?),
        WeightFormat::F32 => Ok(Linear::Candle { w: QMatMul::Tensor(q.dequantize(dev)?), pad: 0 }),
    }
}

/// Projections of the same input. With converted weights they are stacked
/// row-wise into one matrix so a single matmul computes them all (each output
/// column is still its own dot product, so results are unchanged).
pub(super) struct Proj {
    fused: Option<Linear>,
    parts: Vec<Linear>,
    sizes: Vec<usize>,
}

impl Proj {
    pub(super) fn new(ws: Vec<QTensor>, fmt: WeightFormat, dev: &Device) -> Result<Self, EngineError> {
        let sizes = ws.iter().map(|w| w.shape().dims().first().copied().unwrap_or(0)).collect();
        if fmt == WeightFormat::Packed
            && let Some(p) = pack(&ws, dev)?
        {
            return Ok(Self { fused: Some(p), parts: Vec::new(), sizes });
        }
        if fmt == WeightFormat::Native {
            let parts = ws.into_iter().map(|w| convert(w, fmt, dev)).collect::<Result<_, _>>()?;
            return Ok(Self { fused: None, parts, sizes });
        }
        let ws = ws.iter().map(|w| w.dequantize(dev)).collect::<candle_core::Result<Vec<_>>>()?;
        let w = Tensor::cat(&ws, 0)?;
        let fused = if fmt == WeightFormat::F32 { Linear::Candle { w: QMatMul::Tensor(w), pad: 0 } } else { to_q8(w)? };
        Ok(Self { fused: Some(fused), parts: Vec::new(), sizes })
    }

    /// One output per projection, `(T, size_i)` each.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, EngineError> {
        match &self.fused {
            Some(f) => {
                let y = f.forward(x)?;
                let mut off = 0;
                let mut out = Vec::with_capacity(self.sizes.len());
                for &n in &self.sizes {
                    out.push(y.narrow(1, off, n)?);
                    off += n;
                }
                Ok(out)
            }
            None => Ok(self.parts.iter().map(|p| p.forward(x)).collect::<candle_core::Result<_>>()?),
        }
    }
}
