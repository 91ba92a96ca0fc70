//! Sentence embeddings with a BERT model (all-MiniLM-L6-v2 by default):
//! candle-transformers' `bert`, mean pooling over real tokens, L2 normalisation.
//! Runs on its own thread so embedding requests never stall decoding steps.
//! It does not batch across concurrent `embed` calls.

use crate::EngineError;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>;

/// Handle to the embedding thread.
pub struct EmbedHandle {
    /// Model name (the directory name).
    pub name: String,
    tx: std::sync::mpsc::Sender<(Vec<String>, Reply)>,
}

struct Embedder {
    model: BertModel,
    tokenizer: tokenizers::Tokenizer,
    device: Device,
}

/// Longest input in tokens (the model was trained on up to 256; BERT's
/// position table holds 512).
const MAX_TOKENS: usize = 256;

impl Embedder {
    fn load(dir: &Path) -> Result<Self, EngineError> {
        let read = |f: &str| {
            let p = dir.join(f);
            std::fs::read_to_string(&p).map_err(|e| EngineError::Io { path: p.display().to_string(), source: e })
        };
        let config: Config =
            serde_json::from_str(&read("config.json")?).map_err(|e| EngineError::Model(format!("bert config: {e}")))?;
        let mut tokenizer: tokenizers::Tokenizer =
            read("tokenizer.json")?.parse().map_err(|e| EngineError::Tokenizer(format!("{e}")))?;
        // sentence-transformers ships the tokenizer padding every input to a
        // fixed length; mean pooling must see the real tokens only, and
        // padding would also make every embedding cost the full length.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| EngineError::Tokenizer(format!("{e}")))?;
        let device = crate::actor::device();
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(EngineError::Model(format!("{} missing", weights.display())));
        }
        let tensors = candle_core::safetensors::load(&weights, &device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vb, &config)?;
        Ok(Self { model, tokenizer, device })
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>, EngineError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| EngineError::Tokenizer(format!("{e}")))?;
        let mut ids = enc.get_ids().to_vec();
        ids.truncate(MAX_TOKENS);
        let n = ids.len();
        let ids = Tensor::from_vec(ids, (1, n), &self.device)?;
        let types = ids.zeros_like()?;
        let out = self.model.forward(&ids, &types, None)?; // (1, n, d)
        let mean = (out.sum(1)? / n as f64)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        let v = mean.broadcast_div(&norm)?.squeeze(0)?;
        Ok(v.to_device(&Device::Cpu)?.to_vec1::<f32>()?)
    }
}

impl EmbedHandle {
    /// Load the model from `dir` and start its thread.
    pub fn start(dir: &Path) -> Result<Self, EngineError> {
        let emb = Embedder::load(dir)?;
        let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "embedding".into());
        let (tx, rx) = std::sync::mpsc::channel::<(Vec<String>, Reply)>();
        std::thread::Builder::new()
            .name("sluice-embed".into())
            .spawn(move || {
                while let Ok((texts, reply)) = rx.recv() {
                    let r = texts.iter().map(|t| emb.embed_one(t)).collect();
                    let _ = reply.send(r);
                }
            })
            .map_err(|e| EngineError::Io { path: "thread".into(), source: e })?;
        Ok(Self { name, tx })
    }

    /// Embed texts, one vector each.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((texts, tx)).map_err(|_| EngineError::Shutdown)?;
        rx.await.map_err(|_| EngineError::Shutdown)?
    }
}
