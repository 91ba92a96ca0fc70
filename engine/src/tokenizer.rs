//! Byte-level BPE tokenizer rebuilt from GGUF metadata
//! (`tokenizer.ggml.tokens` / `merges` / `token_type` / `pre`).
//!
//! It builds a `tokenizers::Tokenizer` (BPE model, a pre-tokenizer matching the
//! model's `pre` type, special tokens as added tokens) and a per-token byte table
//! used for streaming detokenisation. It does not handle SentencePiece (`llama`
//! model type) vocabularies.

use crate::error::EngineError;
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::json;

/// GPT-2's llama3-style split regex (numbers in groups of up to three digits).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer plus the metadata the engine needs.
pub struct Tokenizer {
    /// Special-token text (e.g. `<|im_start|>`) maps to its id.
    inner: tokenizers::Tokenizer,
    /// The same vocabulary with special-token text encoded as plain text, for
    /// what clients wrote.
    plain: tokenizers::Tokenizer,
    /// Raw bytes of every token (special tokens map to their literal text).
    token_bytes: Vec<Vec<u8>>,
    /// Tokens that end generation (EOS, `<|im_end|>`, `<|eot_id|>`...).
    eos_ids: Vec<u32>,
    /// The BOS token text, if any.
    pub bos_token: String,
    /// The EOS token text.
    pub eos_token: String,
    /// Whether a BOS token should be prepended to prompts.
    pub add_bos: Option<u32>,
}

fn md<'a>(ct: &'a Content, key: &str) -> Result<&'a Value, EngineError> {
    ct.metadata.get(key).ok_or_else(|| EngineError::Model(format!("missing metadata {key}")))
}

fn md_strings(ct: &Content, key: &str) -> Result<Vec<String>, EngineError> {
    md(ct, key)?.to_vec()?.iter().map(|v| v.to_string().cloned().map_err(EngineError::from)).collect()
}

/// GPT-2's reversible byte <-> printable-char mapping, as a char -> byte table.
fn unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter().zip(cs).filter_map(|(b, c)| char::from_u32(c).map(|c| (c, b as u8))).collect()
}

/// Control (3) and user-defined (4) tokens are matched literally.
fn is_literal(types: &[i32], i: usize) -> bool {
    matches!(types.get(i), Some(3) | Some(4))
}

/// The `tokenizers` BPE tokenizer for this vocabulary: the pre-tokenizer of
/// the model's `pre` type, literal tokens as added tokens.
fn bpe_tokenizer(
    tokens: &[String],
    merges: Vec<String>,
    types: &[i32],
    pre: &str,
) -> Result<tokenizers::Tokenizer, EngineError> {
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let added: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| is_literal(types, *i))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": types[i] == 3})
        })
        .collect();
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre), "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    spec.to_string().parse().map_err(|e| EngineError::Tokenizer(format!("{e}")))
}

/// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` type.
fn pre_tokenizer(pre: &str) -> serde_json::Value {
    match pre {
        "llama-bpe" | "llama3" | "qwen2" | "dbrx" | "smaug-bpe" => json!({
        "type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]}),
        // "smollm", "gpt2" and others: GPT-2 regex with individual digits.
        _ => json!({
        "type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]}),
    }
}

/// Raw bytes of every token: literal tokens as their text, the others mapped
/// back through GPT-2's byte-to-char table.
fn token_bytes(tokens: &[String], types: &[i32]) -> Vec<Vec<u8>> {
    let table = unicode_to_byte();
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if is_literal(types, i) {
                t.as_bytes().to_vec()
            } else {
                t.chars().map(|c| table.get(&c).copied().unwrap_or(b'?')).collect()
            }
        })
        .collect()
}

/// The tokens that end generation: the file's EOS plus the chat end markers
/// the vocabulary has (`<|endoftext|>` only when no other marker is found).
fn eos_ids(eos: u32, tokens: &[String]) -> Vec<u32> {
    let mut ids = vec![eos];
    for name in ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"] {
        if let Some(i) = tokens.iter().position(|t| t == name) {
            let i = i as u32;
            if !ids.contains(&i) && (name != "<|endoftext|>" || ids.len() == 1) {
                ids.push(i);
            }
        }
    }
    ids
}

impl Tokenizer {
    /// Build the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(ct: &Content) -> Result<Self, EngineError> {
        let model = md(ct, "tokenizer.ggml.model")?.to_string()?.clone();
        if model != "gpt2" {
            return Err(EngineError::Model(format!(
                "tokenizer model {model:?} is not supported (only byte-level BPE)"
            )));
        }
        let tokens = md_strings(ct, "tokenizer.ggml.tokens")?;
        let merges = md_strings(ct, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec()?.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let pre = ct
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "gpt2".into());
        let get_id = |k: &str| ct.metadata.get(k).and_then(|v| v.to_u32().ok());
        let eos = get_id("tokenizer.ggml.eos_token_id").ok_or_else(|| EngineError::Model("no eos token id".into()))?;
        let bos = get_id("tokenizer.ggml.bos_token_id");
        let add_bos = ct.metadata.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);

        let inner = bpe_tokenizer(&tokens, merges, &types, &pre)?;
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        let token_bytes = token_bytes(&tokens, &types);
        let eos_ids = eos_ids(eos, &tokens);
        let name_of = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).cloned()).unwrap_or_default();
        Ok(Self {
            inner,
            plain,
            token_bytes,
            eos_ids,
            bos_token: name_of(bos),
            eos_token: name_of(Some(eos)),
            add_bos: if add_bos { bos } else { None },
        })
    }

    /// Encode text; special-token text (e.g. `<|im_start|>`) maps to its id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.encode_parts([(text, true)])
    }

    /// Encode a prompt assembled from parts, each `(text, special)`: where
    /// `special` is false (what a client wrote), special-token text such as
    /// `<|im_end|>` is encoded as the plain text it is, never as the control
    /// token. The BOS token, if the model wants one, comes first.
    pub fn encode_parts<'a>(&self, parts: impl IntoIterator<Item = (&'a str, bool)>) -> Result<Vec<u32>, EngineError> {
        let mut ids = Vec::new();
        if let Some(b) = self.add_bos {
            ids.push(b);
        }
        for (text, special) in parts {
            if text.is_empty() {
                continue;
            }
            let tokenizer = if special { &self.inner } else { &self.plain };
            let enc = tokenizer.encode(text, false).map_err(|e| EngineError::Tokenizer(format!("{e}")))?;
            ids.extend_from_slice(enc.get_ids());
        }
        Ok(ids)
    }

    /// Decode ids to text (lossy on invalid UTF-8).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| self.bytes(i)).copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Raw bytes of one token.
    pub fn bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether the token ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }
}
