//! Next-token selection from logits: greedy, temperature, top-k, top-p, with a
//! per-request seeded ChaCha RNG so seeded requests repeat exactly. It does not
//! apply repetition penalties or logit biases.

use crate::request::SamplingParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Per-sequence sampler state.
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: usize,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler for these parameters; unseeded requests get a random seed.
    pub fn new(p: &SamplingParams) -> Self {
        let seed = p.seed.unwrap_or_else(rand::random);
        Self { temperature: p.temperature, top_p: p.top_p, top_k: p.top_k, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// Pick the next token.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 || self.top_k == 1 || logits.is_empty() {
            return argmax(logits);
        }
        // Candidates, best first (ties: lower id first). Without top-k or
        // top-p every token is a candidate and no ordering is needed.
        let nucleus = self.top_p > 0.0 && self.top_p < 1.0;
        let cands: Vec<(u32, f32)> = if self.top_k > 0 && self.top_k < logits.len() {
            top_k(logits, self.top_k)
        } else {
            let mut all: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
            if nucleus {
                all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            }
            all
        };
        let max = cands.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.1));
        let t = self.temperature;
        let mut probs: Vec<f32> = cands.iter().map(|c| ((c.1 - max) / t).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if nucleus {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let s: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= s);
        }
        let r: f32 = self.rng.random();
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if r < acc {
                return cands[i].0;
            }
        }
        cands[probs.len() - 1].0
    }
}

/// The `k` largest logits, best first (ties: lower id first), in one pass.
fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut buf: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        if buf.len() == k && buf.last().is_some_and(|w| l <= w.1) {
            continue;
        }
        let at = buf.partition_point(|c| c.1 >= l);
        buf.insert(at, (i as u32, l));
        buf.truncate(k);
    }
    buf
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use crate::sampling::*;

    fn params(seed: u64) -> SamplingParams {
        SamplingParams { temperature: 1.0, top_p: 0.9, top_k: 50, seed: Some(seed), ..SamplingParams::default() }
    }

    #[test]
    fn top_k_keeps_best_in_order() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0, 0.5], 3), vec![(1, 3.0), (2, 3.0), (3, 2.0)]);
    }

    #[test]
    fn greedy_picks_max() {
        let mut s = Sampler::new(&SamplingParams::default());
        assert_eq!(s.sample(&[0.1, 3.0, 2.0]), 1);
    }

    #[test]
    fn seeded_repeats_and_respects_top_k() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32).collect();
        let run = |seed| {
            let mut s = Sampler::new(&params(seed));
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let mut s = Sampler::new(&SamplingParams { top_k: 2, ..params(1) });
        for _ in 0..50 {
            let t = s.sample(&[0.0, 5.0, 4.0, 1.0]);
            assert!(t == 1 || t == 2);
        }
    }
}
