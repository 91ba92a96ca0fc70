//! Loading a Llama-family model from GGUF: the hyper-parameters, every
//! layer's weights in the chosen [`WeightFormat`], and the RoPE tables for
//! the whole context window. It does not run the model (`forward` does).

use super::config::LlamaConfig;
use super::linear::{Linear, Proj, WeightFormat, convert};
use crate::error::EngineError;
use candle_core::quantized::{QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// One decoder layer's weights.
pub(super) struct Layer {
    pub(super) attn_norm: Tensor,
    pub(super) qkv: Proj,
    pub(super) bq: Option<Tensor>,
    pub(super) bk: Option<Tensor>,
    pub(super) bv: Option<Tensor>,
    pub(super) wo: Linear,
    pub(super) ffn_norm: Tensor,
    pub(super) gate_up: Proj,
    pub(super) down: Linear,
}

/// Loaded weights plus RoPE tables.
pub struct Llama {
    /// Hyper-parameters.
    pub cfg: LlamaConfig,
    pub(super) embed: Tensor,
    pub(super) layers: Vec<Layer>,
    pub(super) norm: Tensor,
    pub(super) lm_head: Linear,
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) device: Device,
}

/// A loaded model shared between threads.
pub type SharedModel = Arc<Llama>;

impl Llama {
    /// Load a GGUF Llama-family model.
    pub fn load<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        r: &mut R,
        fmt: WeightFormat,
        device: &Device,
    ) -> Result<Self, EngineError> {
        let cfg = LlamaConfig::from_gguf(ct)?;
        let mut file = Tensors { ct, r, device };
        let embd_q = file.quantized("token_embd.weight")?;
        let embed = embd_q.dequantize(device)?;
        let vocab = embed.dim(0)?;
        // Without an output matrix the LM head is the embedding table (tied).
        let lm_head = if file.has("output.weight") {
            convert(file.quantized("output.weight")?, fmt, device)?
        } else {
            convert(embd_q, fmt, device)?
        };
        let layers = (0..cfg.n_layer).map(|i| file.layer(i, fmt)).collect::<Result<Vec<_>, _>>()?;
        let norm = file.f32("output_norm.weight")?;
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Self { cfg: LlamaConfig { vocab, ..cfg }, embed, layers, norm, lm_head, cos, sin, device: device.clone() })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// RoPE cosines and sines, `(context, head_dim / 2)`, for every position of
/// the context window.
fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor), EngineError> {
    let half = cfg.head_dim / 2;
    let inv: Vec<f32> = (0..half).map(|i| 1.0 / cfg.rope_base.powf(2.0 * i as f32 / cfg.head_dim as f32)).collect();
    let inv = Tensor::from_vec(inv, (1, half), &Device::Cpu)?;
    let pos =
        Tensor::arange(0u32, cfg.context as u32, &Device::Cpu)?.to_dtype(DType::F32)?.reshape((cfg.context, 1))?;
    let ang = pos.matmul(&inv)?;
    Ok((ang.cos()?.to_device(device)?, ang.sin()?.to_device(device)?))
}

/// The GGUF file's tensors, read onto `device` by name.
struct Tensors<'a, R> {
    ct: &'a gguf_file::Content,
    r: &'a mut R,
    device: &'a Device,
}

impl<R: std::io::Read + std::io::Seek> Tensors<'_, R> {
    fn has(&self, name: &str) -> bool {
        self.ct.tensor_infos.contains_key(name)
    }

    /// A tensor as stored in the file.
    fn quantized(&mut self, name: &str) -> Result<QTensor, EngineError> {
        Ok(self.ct.tensor(self.r, name, self.device)?)
    }

    /// A tensor dequantised to f32.
    fn f32(&mut self, name: &str) -> Result<Tensor, EngineError> {
        Ok(self.quantized(name)?.dequantize(self.device)?)
    }

    /// An f32 tensor the file may lack (Qwen2's QKV biases).
    fn optional(&mut self, name: &str) -> Result<Option<Tensor>, EngineError> {
        if self.has(name) { Ok(Some(self.f32(name)?)) } else { Ok(None) }
    }

    /// Decoder layer `i`, its matrices stored as `fmt`.
    fn layer(&mut self, i: usize, fmt: WeightFormat) -> Result<Layer, EngineError> {
        let p = |s: &str| format!("blk.{i}.{s}");
        let device = self.device;
        Ok(Layer {
            attn_norm: self.f32(&p("attn_norm.weight"))?,
            qkv: Proj::new(
                vec![
                    self.quantized(&p("attn_q.weight"))?,
                    self.quantized(&p("attn_k.weight"))?,
                    self.quantized(&p("attn_v.weight"))?,
                ],
                fmt,
                device,
            )?,
            bq: self.optional(&p("attn_q.bias"))?,
            bk: self.optional(&p("attn_k.bias"))?,
            bv: self.optional(&p("attn_v.bias"))?,
            wo: convert(self.quantized(&p("attn_output.weight"))?, fmt, device)?,
            ffn_norm: self.f32(&p("ffn_norm.weight"))?,
            gate_up: Proj::new(
                vec![self.quantized(&p("ffn_gate.weight"))?, self.quantized(&p("ffn_up.weight"))?],
                fmt,
                device,
            )?,
            down: convert(self.quantized(&p("ffn_down.weight"))?, fmt, device)?,
        })
    }
}
