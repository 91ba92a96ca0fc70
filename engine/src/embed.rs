//! Sentence embeddings with a BERT model (all-MiniLM-L6-v2 by default): the
//! encoder in [`bert`], mean pooling over real tokens, L2 normalisation.
//! Runs on its own thread so embedding requests never stall decoding steps;
//! a request whose caller has gone is stopped before its next input. It
//! does not batch across concurrent `embed` calls.
//!
//! Embeddings sit on the request path of the semantic cache, for short
//! questions (5–30 tokens). At that size candle's f32 `BertModel` is memory
//! bound: every call streams all ~10.6M f32 weights (42 MB) through gemm's
//! packing, whatever the token count. The projections are therefore quantised
//! to Q8_0 at load (one byte per weight plus a scale per 32) and run as int8
//! dot products straight from the quantised rows (candle's repacked x86
//! kernels), a quarter of the bytes and no per-call packing; the activations
//! are quantised too (int8 per 256 values), the QKV and FFN-up inputs in two
//! passes (value plus residual) to keep precision. The word,
//! position and token-type tables, LayerNorms and the attention stay f32; GELU
//! stays exact (erf), as the model was trained.
//!
//! Quality: the test below compares against candle-transformers' f32
//! `BertModel` on 21 varied inputs (questions, code, SQL, non-Latin scripts,
//! punctuation, a 130-token paragraph): cosine ≥ 0.995 required, lowest
//! measured 0.9988 (punctuation only), typically ≥ 0.9995. Latency figures
//! are in engine/BENCHMARKS.md.

mod bert;

use crate::error::EngineError;
use bert::Bert;
use candle_transformers::models::bert::Config;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// Most inputs in one embeddings request (OpenAI's limit).
pub const MAX_EMBED_INPUTS: usize = 2048;

/// Embeddings of a request's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// One unit vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all inputs, not counting the model's own markers.
    pub tokens: usize,
}

/// One request to the embedding thread.
struct Job {
    texts: Vec<String>,
    /// Refuse what does not fit (a client's request) rather than truncate it
    /// (the semantic cache's question).
    strict: bool,
    reply: oneshot::Sender<Result<Embeddings, EngineError>>,
}

/// Handle to the embedding thread.
pub struct EmbedHandle {
    /// Model name (the directory name).
    pub name: String,
    tx: std::sync::mpsc::Sender<Job>,
    embedded: Arc<AtomicU64>,
}

struct Embedder {
    model: Bert,
    tokenizer: tokenizers::Tokenizer,
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
        let device = crate::device::device();
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(EngineError::Model(format!("{} missing", weights.display())));
        }
        let tensors = candle_core::safetensors::load(&weights, &device)?;
        let model = Bert::load(tensors, &config, &device)?;
        Ok(Self { model, tokenizer })
    }

    /// Most token ids of one input, `[CLS]` and `[SEP]` included.
    fn max_ids(&self) -> usize {
        MAX_TOKENS.min(self.model.max_positions())
    }

    /// Token ids of `text` (with `[CLS]`/`[SEP]`), untruncated, and how many
    /// of them are the model's markers.
    fn encode(&self, text: &str) -> Result<(Vec<u32>, usize), EngineError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| EngineError::Tokenizer(format!("{e}")))?;
        let markers = enc.get_special_tokens_mask().iter().filter(|&&m| m != 0).count();
        Ok((enc.get_ids().to_vec(), markers))
    }

    /// Token ids of `text` (with `[CLS]`/`[SEP]`), at most [`MAX_TOKENS`].
    #[cfg(test)]
    fn ids(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let mut ids = self.encode(text)?.0;
        ids.truncate(self.max_ids());
        Ok(ids)
    }

    #[cfg(test)]
    fn embed_one(&self, text: &str) -> Result<Vec<f32>, EngineError> {
        self.embed_ids(&self.ids(text)?)
    }

    fn embed_ids(&self, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        if ids.is_empty() {
            return Err(EngineError::Tokenizer("empty input".into()));
        }
        let hidden = self.model.forward(ids)?; // (n, d) row-major
        Ok(mean_normalised(&hidden, ids.len()))
    }

    /// Runs one job, input by input; `None` once its caller has gone (the
    /// reply's receiver was dropped), checked before every input, so a
    /// disconnected client's inputs are not embedded.
    fn run(&self, job: &Job, embedded: &AtomicU64) -> Option<Result<Embeddings, EngineError>> {
        let invalid = |message: String| Some(Err(EngineError::InvalidParameter { param: "input", message }));
        if job.strict && job.texts.is_empty() {
            return invalid("`input` must not be empty".into());
        }
        if job.strict && job.texts.len() > MAX_EMBED_INPUTS {
            return invalid(format!(
                "{} inputs given; at most {MAX_EMBED_INPUTS} are allowed per request",
                job.texts.len()
            ));
        }
        // Every input is tokenized (and checked) before any is embedded.
        let mut inputs = Vec::with_capacity(job.texts.len());
        let mut tokens = 0;
        for (i, text) in job.texts.iter().enumerate() {
            if job.reply.is_closed() {
                return None;
            }
            let (mut ids, markers) = match self.encode(text) {
                Ok(encoded) => encoded,
                Err(e) => return Some(Err(e)),
            };
            if ids.len() > self.max_ids() {
                if job.strict {
                    return invalid(format!(
                        "input[{i}] has {} tokens; the embedding model takes at most {} per input",
                        ids.len() - markers,
                        self.max_ids() - markers
                    ));
                }
                ids.truncate(self.max_ids());
            }
            tokens += ids.len().saturating_sub(markers);
            inputs.push(ids);
        }
        let mut vectors = Vec::with_capacity(inputs.len());
        for ids in &inputs {
            if job.reply.is_closed() {
                return None;
            }
            match self.embed_ids(ids) {
                Ok(v) => vectors.push(v),
                Err(e) => return Some(Err(e)),
            }
            embedded.fetch_add(1, Ordering::Relaxed);
        }
        Some(Ok(Embeddings { vectors, tokens }))
    }
}

/// Mean of the `n` rows of `hidden`, scaled to unit length.
fn mean_normalised(hidden: &[f32], n: usize) -> Vec<f32> {
    let d = hidden.len() / n;
    let mut mean = vec![0f32; d];
    for row in hidden.chunks_exact(d) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x;
        }
    }
    let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    mean.iter_mut().for_each(|m| *m /= norm);
    mean
}

impl EmbedHandle {
    /// Load the model from `dir` and start its thread.
    pub fn start(dir: &Path) -> Result<Self, EngineError> {
        let emb = Embedder::load(dir)?;
        let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "embedding".into());
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let embedded = Arc::new(AtomicU64::new(0));
        let counter = embedded.clone();
        std::thread::Builder::new()
            .name("sluice-embed".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    if let Some(result) = emb.run(&job, &counter) {
                        let _ = job.reply.send(result);
                    }
                }
            })
            .map_err(|e| EngineError::Io { path: "thread".into(), source: e })?;
        Ok(Self { name, tx, embedded })
    }

    /// Embed texts, one vector each; inputs longer than the model takes are
    /// truncated. Dropping the future stops the work before the next input.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EngineError> {
        Ok(self.submit(texts, false).await?.vectors)
    }

    /// Embed a client's inputs: at most [`MAX_EMBED_INPUTS`], none longer than
    /// the model takes (refused as [`EngineError::InvalidParameter`], as
    /// OpenAI refuses them, rather than truncated). Dropping the future stops
    /// the work before the next input.
    pub async fn embed_inputs(&self, texts: Vec<String>) -> Result<Embeddings, EngineError> {
        self.submit(texts, true).await
    }

    /// Inputs embedded since start.
    pub fn embedded_inputs(&self) -> u64 {
        self.embedded.load(Ordering::Relaxed)
    }

    async fn submit(&self, texts: Vec<String>, strict: bool) -> Result<Embeddings, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { texts, strict, reply }).map_err(|_| EngineError::Shutdown)?;
        rx.await.map_err(|_| EngineError::Shutdown)?
    }
}

#[cfg(test)]
mod tests {
    use crate::embed::{Embedder, mean_normalised};
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use candle_transformers::models::bert::{BertModel, Config};
    use std::path::PathBuf;

    /// The reference: candle-transformers' f32 `BertModel`, mean pooled and
    /// normalised as this module did before the Q8_0 encoder.
    fn reference(dir: &std::path::Path, emb: &Embedder, texts: &[&str]) -> Vec<Vec<f32>> {
        let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
        let config: Config = serde_json::from_str(&config).expect("bert config");
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).expect("weights");
        let model = BertModel::load(VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu), &config)
            .expect("reference model");
        texts
            .iter()
            .map(|t| {
                let ids = emb.ids(t).expect("tokenize");
                let n = ids.len();
                let ids = Tensor::from_vec(ids, (1, n), &Device::Cpu).expect("ids");
                let out = model.forward(&ids, &ids.zeros_like().expect("types"), None).expect("forward");
                let hidden = out.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("hidden");
                mean_normalised(&hidden, n)
            })
            .collect()
    }

    /// The Q8_0 encoder against the f32 reference on varied inputs (short
    /// questions, code, numbers, non-English, a long paragraph): cosine
    /// similarity of each pair must be at least 0.995.
    #[test]
    fn quantised_embeddings_match_f32_reference() {
        let dir = std::env::var_os("SLUICE_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
            .join("all-minilm-l6-v2");
        if !dir.join("model.safetensors").exists() {
            assert!(
                std::env::var_os("SLUICE_REQUIRE_MODELS").is_none(),
                "{} missing and SLUICE_REQUIRE_MODELS is set; run engine/fetch-models.sh",
                dir.display()
            );
            eprintln!("SKIPPED: {} not found (run engine/fetch-models.sh)", dir.display());
            return;
        }
        let long = "The semantic cache stores previous answers keyed by an embedding of the question. \
                    When a new question arrives it is embedded, the nearest stored question is looked up, \
                    and if the cosine similarity exceeds the configured threshold the stored answer is \
                    returned without calling the model, which saves both latency and tokens. ";
        let long = long.repeat(2);
        let texts = [
            "hi",
            "What is the capital city of France?",
            "What's France's capital?",
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The cat sits on the mat.",
            "Quarterly revenue grew by eight percent.",
            "Explain the difference between TCP and UDP.",
            "fn main() { println!(\"hello\"); }",
            "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1;",
            "What is 17 * 23 + 4?",
            "Wie spät ist es in Berlin?",
            "¿Dónde está la biblioteca?",
            "東京の天気はどうですか",
            "Refund policy for orders shipped outside the EU",
            "Write a haiku about autumn leaves falling in the rain.",
            "!!! ??? ...",
            "Can you summarise the plot of Hamlet in two sentences, focusing on revenge?",
            "The mitochondria is the powerhouse of the cell.",
            "Is it safe to eat raw cookie dough?",
            &long,
        ];
        let emb = Embedder::load(&dir).expect("load");
        let want = reference(&dir, &emb, &texts);
        let mut worst = (1f32, "");
        for (t, w) in texts.iter().zip(&want) {
            let got = emb.embed_one(t).expect("embed");
            let cos = got.iter().zip(w).map(|(a, b)| a * b).sum::<f32>();
            eprintln!("cos {cos:.5}  {} tokens  {t:.40}", emb.ids(t).expect("tokenize").len());
            if cos < worst.0 {
                worst = (cos, t);
            }
        }
        eprintln!("lowest cosine {:.5} ({:.40})", worst.0, worst.1);
        assert!(worst.0 >= 0.995, "cosine {} for {:?}", worst.0, worst.1);
    }
}
