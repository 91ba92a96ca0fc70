//! The serving loop: a dedicated thread owns the model, the KV pool and the
//! scheduler, receives requests over a channel, and runs one batched step per
//! iteration (sequences join and leave between steps), sampling and streaming
//! tokens to each request's channel. It does not tokenize (callers do).

use crate::config::EngineConfig;
use crate::device::device;
use crate::error::EngineError;
use crate::kv::KvStore;
use crate::model::{Batch, Llama, SeqInput};
use crate::request::{FinishReason, GenerationEvent, Owner, SamplingParams};
use crate::scheduler::{Limits, Scheduler, Seq};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use candle_core::quantized::gguf_file;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// A snapshot of the engine's scheduler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sequences in the running batch.
    pub running: usize,
    /// Sequences waiting for admission.
    pub waiting: usize,
    /// KV blocks that can be allocated (free or evictable cached).
    pub free_blocks: usize,
    /// KV blocks in the pool.
    pub total_blocks: usize,
    /// Prompt tokens served from the prefix cache since start.
    pub prefix_cache_hit_tokens: u64,
    /// Prompt tokens of the sequences admitted since start.
    pub prompt_tokens: u64,
    /// Sequences preempted for lack of blocks since start.
    pub preemptions: u64,
    /// Model steps run since start.
    pub steps: u64,
    /// Tokens generated since start.
    pub generated_tokens: u64,
    /// Time spent running steps since start, in ns (busy time).
    pub busy_ns: u64,
}

/// Requests to the actor.
pub enum Command {
    /// Generate from these prompt tokens.
    Generate { tokens: Vec<u32>, sampling: SamplingParams, owner: Owner, tx: UnboundedSender<GenerationEvent> },
}

/// What `Engine::start` needs from loading.
pub struct Loaded {
    pub tx: Sender<Command>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub model_name: String,
    pub context: usize,
    pub stats: Arc<Mutex<EngineStats>>,
}

/// Load the model and tokenizer and spawn the actor.
pub fn load(cfg: &EngineConfig) -> Result<Loaded, EngineError> {
    let path = &cfg.model_path;
    let io = |e| EngineError::Io { path: path.display().to_string(), source: e };
    let mut f = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let ct = gguf_file::Content::read(&mut f)?;
    let tokenizer = Arc::new(Tokenizer::from_gguf(&ct)?);
    let tmpl = ct.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok().cloned());
    let template = ChatTemplate::new(tmpl, tokenizer.bos_token.clone(), tokenizer.eos_token.clone())?;
    // The file name without its quantisation suffix ("SmolLM2-135M-Instruct"),
    // else the GGUF's general.name.
    let model_name = path
        .file_name()
        .and_then(|s| s.to_str())
        .and_then(|s| s.split('.').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| ct.metadata.get("general.name").and_then(|v| v.to_string().ok().cloned()))
        .unwrap_or_else(|| "model".into());
    let model = Llama::load(&ct, &mut f, cfg.weight_format, &device())?;
    let context = model.cfg.context;
    let c = &model.cfg;
    let kv = KvStore::new(c.n_layer, cfg.kv_blocks, cfg.kv_block_size, c.n_kv_head * c.head_dim);
    let sched = Scheduler::new(
        cfg.kv_blocks,
        cfg.kv_block_size,
        Limits {
            max_batch: cfg.max_batch.max(1),
            prefill_chunk: cfg.prefill_chunk.max(1),
            prefix_caching: cfg.prefix_caching,
            client_share: cfg.client_share,
        },
    );
    let stats = Arc::new(Mutex::new(EngineStats::default()));
    let (tx, rx) = std::sync::mpsc::channel();
    let actor = Actor {
        model,
        kv,
        sched,
        tokenizer: tokenizer.clone(),
        stats: stats.clone(),
        steps: 0,
        generated: 0,
        busy_ns: 0,
    };
    actor.publish();
    std::thread::Builder::new()
        .name("sluice-engine".into())
        .spawn(move || actor.run(rx))
        .map_err(|e| EngineError::Io { path: "thread".into(), source: e })?;
    Ok(Loaded { tx, tokenizer, template, model_name, context, stats })
}

struct Actor {
    model: Llama,
    kv: KvStore,
    sched: Scheduler,
    tokenizer: Arc<Tokenizer>,
    stats: Arc<Mutex<EngineStats>>,
    steps: u64,
    generated: u64,
    busy_ns: u64,
}

impl Actor {
    fn run(mut self, rx: Receiver<Command>) {
        loop {
            let idle = self.sched.running.is_empty() && self.sched.waiting.is_empty();
            if idle {
                match rx.recv() {
                    Ok(c) => self.handle(c),
                    Err(_) => return,
                }
            }
            while let Ok(c) = rx.try_recv() {
                self.handle(c);
            }
            let started = std::time::Instant::now();
            self.step();
            self.busy_ns = self.busy_ns.saturating_add(started.elapsed().as_nanos() as u64);
            self.publish();
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Generate { tokens, mut sampling, owner, tx } => {
                let need = (tokens.len() + 1).div_ceil(self.kv.block_size);
                if need > self.sched.blocks.total() {
                    let _ = tx.send(GenerationEvent::Error("prompt does not fit in the KV cache".into()));
                    return;
                }
                // Never outgrow the context window, nor the whole pool (a lone
                // sequence must always fit, or preemption could not make room).
                let room = (self.model.cfg.context - tokens.len())
                    .min(self.sched.blocks.total() * self.kv.block_size - tokens.len());
                sampling.max_tokens = sampling.max_tokens.min(room);
                self.sched.waiting.push_back(Seq::new(tokens, &sampling, owner, tx));
            }
        }
    }

    fn publish(&self) {
        if let Ok(mut s) = self.stats.lock() {
            *s = EngineStats {
                running: self.sched.running.len(),
                waiting: self.sched.waiting.len(),
                free_blocks: self.sched.blocks.available(),
                total_blocks: self.sched.blocks.total(),
                prefix_cache_hit_tokens: self.sched.hit_tokens,
                prompt_tokens: self.sched.prompt_tokens,
                preemptions: self.sched.preemptions,
                steps: self.steps,
                generated_tokens: self.generated,
                busy_ns: self.busy_ns,
            };
        }
    }

    fn step(&mut self) {
        let plan = self.sched.schedule();
        if plan.is_empty() {
            return;
        }
        self.steps += 1;
        let running = &self.sched.running;
        let batch = Batch {
            seqs: plan
                .iter()
                .map(|&(i, n)| {
                    let s = &running[i];
                    SeqInput {
                        tokens: &s.tokens[s.computed..s.computed + n],
                        start_pos: s.computed,
                        table: &s.table,
                        logits: s.computed + n == s.tokens.len(),
                    }
                })
                .collect(),
        };
        let wants: Vec<bool> = batch.seqs.iter().map(|s| s.logits).collect();
        let result = self.model.forward(&batch, &mut self.kv);
        drop(batch);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                let msg = e.to_string();
                for &(i, _) in plan.iter().rev() {
                    let mut s = self.sched.running.remove(i);
                    let _ = s.tx.send(GenerationEvent::Error(msg.clone()));
                    self.sched.free(&mut s);
                }
                return;
            }
        };
        let mut logits = logits.into_iter();
        let mut finished = Vec::new();
        for (&(i, n), want) in plan.iter().zip(wants) {
            self.sched.advance(i, n);
            if !want {
                continue;
            }
            let Some(l) = logits.next() else { break };
            if let Some(reason) = self.emit(i, &l) {
                finished.push((i, reason));
            }
        }
        for &(i, reason) in finished.iter().rev() {
            let mut s = self.sched.running.remove(i);
            let _ = s.tx.send(GenerationEvent::Done {
                finish_reason: reason,
                prompt_tokens: s.prompt_len,
                completion_tokens: s.generated(),
                cached_prompt_tokens: s.cached_prompt_tokens,
            });
            self.sched.free(&mut s);
        }
    }

    /// Sample the next token of running sequence `i` and stream it; returns a
    /// finish reason when the sequence is done.
    fn emit(&mut self, i: usize, logits: &[f32]) -> Option<FinishReason> {
        let s = &mut self.sched.running[i];
        let id = s.sampler.sample(logits);
        s.tokens.push(id);
        self.generated += 1;
        if self.tokenizer.is_eos(id) {
            // Release text held back as a possible stop-sequence start.
            let tail = s.text.flush();
            if !tail.is_empty() {
                let _ = s.tx.send(GenerationEvent::Token { id, text: tail });
            }
            return Some(FinishReason::Stop);
        }
        let mut pushed = s.text.push(self.tokenizer.bytes(id));
        let reason = if pushed.stopped {
            Some(FinishReason::Stop)
        } else if s.generated() >= s.max_tokens || s.tokens.len() >= self.model.cfg.context {
            // Nothing more is coming: release what was held back.
            pushed.text.push_str(&s.text.flush());
            Some(FinishReason::Length)
        } else {
            None
        };
        let _ = s.tx.send(GenerationEvent::Token { id, text: pushed.text });
        reason
    }
}
