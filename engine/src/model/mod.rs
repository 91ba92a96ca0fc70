//! The Llama-family decoder (SmolLM2, Llama 3.x, Qwen2) loaded from GGUF, with
//! a forward pass over a *flat batch*: the new tokens of many sequences are
//! concatenated, the linear layers run once for all of them, and attention reads
//! each sequence's keys and values from the paged [`KvStore`](crate::kv::KvStore).
//! It does not schedule, sample or tokenize.

mod attention;
mod forward;

pub use forward::{Batch, SeqInput};

use crate::EngineError;
use crate::kernels::PackedMatrix;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

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

/// Hyper-parameters read from the GGUF metadata.
#[derive(Clone, Debug)]
pub struct LlamaConfig {
    /// Architecture name (`llama`, `qwen2`).
    pub arch: String,
    /// Decoder layers.
    pub n_layer: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Per-head size.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// NEOX (half-split) rather than interleaved RoPE.
    pub rope_neox: bool,
    /// Training context length.
    pub context: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

pub(crate) struct Layer {
    attn_norm: Tensor,
    qkv: Proj,
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    wo: Linear,
    ffn_norm: Tensor,
    gate_up: Proj,
    down: Linear,
}

/// Loaded weights plus RoPE tables.
pub struct Llama {
    /// Hyper-parameters.
    pub cfg: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// A weight matrix (`(n, k)`, applied as `x @ w^T`).
pub(crate) enum Linear {
    /// candle's `QMatMul`. Converted Q8_0 weights whose `k` is not a multiple
    /// of 256 are zero-padded to one, and inputs padded alike, so candle's
    /// repacked SIMD Q8_0 kernels apply (they need `k % 256 == 0`); the zero
    /// columns add nothing to the dot products.
    Candle { w: QMatMul, pad: usize },
    /// The engine's packed 4-/8-bit kernel (CPU only).
    Packed(PackedMatrix),
}

impl Linear {
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
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

fn convert(q: QTensor, fmt: WeightFormat, dev: &Device) -> Result<Linear, EngineError> {
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
pub(crate) struct Proj {
    fused: Option<Linear>,
    parts: Vec<Linear>,
    sizes: Vec<usize>,
}

impl Proj {
    fn new(ws: Vec<QTensor>, fmt: WeightFormat, dev: &Device) -> Result<Self, EngineError> {
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
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, EngineError> {
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

impl Llama {
    /// Load a GGUF Llama-family model.
    pub fn load<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        r: &mut R,
        fmt: WeightFormat,
        device: &Device,
    ) -> Result<Self, EngineError> {
        let get = |k: &str| ct.metadata.get(k).ok_or_else(|| EngineError::Model(format!("missing metadata {k}")));
        let arch = get("general.architecture")?.to_string()?.clone();
        if !matches!(arch.as_str(), "llama" | "qwen2") {
            return Err(EngineError::Model(format!("architecture {arch} unsupported")));
        }
        let a = |k: &str| get(&format!("{arch}.{k}"));
        let n_head = a("attention.head_count")?.to_u32()? as usize;
        let hidden = a("embedding_length")?.to_u32()? as usize;
        let head_dim = hidden / n_head;
        let cfg = LlamaConfig {
            n_layer: a("block_count")?.to_u32()? as usize,
            hidden,
            n_head,
            n_kv_head: a("attention.head_count_kv")?.to_u32()? as usize,
            head_dim,
            eps: a("attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: a("rope.freq_base").and_then(|v| Ok(v.to_f32()?)).unwrap_or(10000.0),
            rope_neox: arch == "qwen2",
            context: a("context_length")?.to_u32()? as usize,
            vocab: 0,
            arch: arch.clone(),
        };
        let t = |r: &mut R, n: &str| -> Result<QTensor, EngineError> { Ok(ct.tensor(r, n, device)?) };
        let f32t = |r: &mut R, n: &str| -> Result<Tensor, EngineError> { Ok(t(r, n)?.dequantize(device)?) };
        let opt = |r: &mut R, n: &str| -> Result<Option<Tensor>, EngineError> {
            if ct.tensor_infos.contains_key(n) { Ok(Some(f32t(r, n)?)) } else { Ok(None) }
        };
        let embd_q = t(r, "token_embd.weight")?;
        let embed = embd_q.dequantize(device)?;
        let vocab = embed.dim(0)?;
        let lm_head = if ct.tensor_infos.contains_key("output.weight") {
            convert(t(r, "output.weight")?, fmt, device)?
        } else {
            convert(embd_q, fmt, device)?
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            layers.push(Layer {
                attn_norm: f32t(r, &p("attn_norm.weight"))?,
                qkv: Proj::new(
                    vec![t(r, &p("attn_q.weight"))?, t(r, &p("attn_k.weight"))?, t(r, &p("attn_v.weight"))?],
                    fmt,
                    device,
                )?,
                bq: opt(r, &p("attn_q.bias"))?,
                bk: opt(r, &p("attn_k.bias"))?,
                bv: opt(r, &p("attn_v.bias"))?,
                wo: convert(t(r, &p("attn_output.weight"))?, fmt, device)?,
                ffn_norm: f32t(r, &p("ffn_norm.weight"))?,
                gate_up: Proj::new(vec![t(r, &p("ffn_gate.weight"))?, t(r, &p("ffn_up.weight"))?], fmt, device)?,
                down: convert(t(r, &p("ffn_down.weight"))?, fmt, device)?,
            });
        }
        let norm = f32t(r, "output_norm.weight")?;
        // RoPE tables for every position of the context window.
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half).map(|i| 1.0 / cfg.rope_base.powf(2.0 * i as f32 / head_dim as f32)).collect();
        let inv = Tensor::from_vec(inv, (1, half), &Device::Cpu)?;
        let pos =
            Tensor::arange(0u32, cfg.context as u32, &Device::Cpu)?.to_dtype(DType::F32)?.reshape((cfg.context, 1))?;
        let ang = pos.matmul(&inv)?;
        let cfg = LlamaConfig { vocab, ..cfg };
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            cos: ang.cos()?.to_device(device)?,
            sin: ang.sin()?.to_device(device)?,
            device: device.clone(),
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// A loaded model shared between threads.
pub type SharedModel = Arc<Llama>;
