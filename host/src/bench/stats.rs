//! The figures of a run, from its samples: latency percentiles, the vLLM
//! benchmark's streaming figures, throughput, errors, cache outcomes, cost
//! and quality, overall and per group (model, A/B arm, workload tag).
//!
//! Definitions (as in vLLM's `benchmark_serving`): TTFT is the time from
//! sending to the first content chunk; TPOT is a request's
//! `(latency - TTFT) / (output tokens - 1)`; ITL pools the gaps between
//! successive content chunks of all requests. Percentiles interpolate
//! linearly between closest ranks (numpy's default).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sample::Sample;

/// Mean and percentiles of one quantity.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Distribution {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    /// `None` for no values.
    pub fn of(mut values: Vec<f64>) -> Option<Distribution> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(Distribution {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: percentile(&values, 50.0),
            p95: percentile(&values, 95.0),
            p99: percentile(&values, 99.0),
            max: values[values.len() - 1],
        })
    }
}

/// The `p`-th percentile of sorted values, interpolating between ranks.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (sorted.len() - 1) as f64 * p / 100.0;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Prices used for responses that carry no cost header, USD per million tokens.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Prices {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// The figures for one set of samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    /// End-to-end latency of successful requests, ms.
    pub latency_ms: Option<Distribution>,
    pub ttft_ms: Option<Distribution>,
    pub tpot_ms: Option<Distribution>,
    pub itl_ms: Option<Distribution>,
    /// Time inside the gateway as it reports it (`x-sluice-overhead-us`), µs.
    pub gateway_overhead_us: Option<Distribution>,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Successful responses by `x-sluice-cache` value (`none`: no header).
    pub cache: BTreeMap<String, u64>,
    /// `hit` and `semantic-hit` over responses with a cache header.
    pub cache_hit_rate: Option<f64>,
    pub cost_usd: Option<f64>,
    pub cost_per_1k_requests: Option<f64>,
    /// `header` (x-sluice-cost-usd), `prices` (usage × --price-*), or `mixed`.
    pub cost_source: Option<String>,
    /// Mean judge score, else mean ROUGE-L F1 against reference answers, in [0, 1].
    pub quality: Option<f64>,
    /// `judge` or `rouge-l`.
    pub quality_source: Option<String>,
    pub quality_samples: u64,
    /// Up to three distinct error messages, for the reader.
    pub first_errors: Vec<String>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The cost of one successful sample: the gateway's figure, else the prices.
fn cost_of(s: &Sample, prices: Option<Prices>) -> Option<(f64, bool)> {
    if let Some(c) = s.cost_usd {
        return Some((c, true));
    }
    if matches!(s.cache.as_deref(), Some("hit" | "semantic-hit")) {
        return Some((0.0, true));
    }
    prices.map(|p| {
        ((s.prompt_tokens as f64 * p.input_per_mtok + s.output_tokens as f64 * p.output_per_mtok) / 1e6, false)
    })
}

impl Summary {
    /// Figures for `samples`, which ran over `duration_s` seconds.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>, duration_s: f64, prices: Option<Prices>) -> Summary {
        let mut s = Summary { duration_s, ..Summary::default() };
        let (mut latency, mut ttft, mut tpot, mut itl, mut overhead) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut judge, mut similarity) = (vec![], vec![]);
        let (mut cost, mut from_header, mut from_prices) = (0.0, 0u64, 0u64);
        for sample in samples {
            s.requests += 1;
            if let Some(e) = &sample.error {
                s.errors += 1;
                if s.first_errors.len() < 3 && !s.first_errors.contains(e) {
                    s.first_errors.push(e.clone());
                }
                continue;
            }
            s.ok += 1;
            latency.push(ms(sample.latency_us));
            if let Some(t) = sample.ttft_us {
                ttft.push(ms(t));
                if sample.output_tokens > 1 {
                    tpot.push(ms(sample.latency_us.saturating_sub(t)) / (sample.output_tokens - 1) as f64);
                }
            }
            itl.extend(sample.itl_us.iter().map(|&g| f64::from(g) / 1000.0));
            overhead.extend(sample.overhead_us.map(|u| u as f64));
            s.prompt_tokens += sample.prompt_tokens;
            s.output_tokens += sample.output_tokens;
            *s.cache.entry(sample.cache.clone().unwrap_or_else(|| "none".into())).or_insert(0) += 1;
            judge.extend(sample.judge_score);
            similarity.extend(sample.similarity);
            if let Some((c, header)) = cost_of(sample, prices) {
                cost += c;
                if header { from_header += 1 } else { from_prices += 1 }
            }
        }
        if s.requests > 0 {
            s.error_rate = s.errors as f64 / s.requests as f64;
        }
        if duration_s > 0.0 {
            s.requests_per_s = s.ok as f64 / duration_s;
            s.output_tokens_per_s = s.output_tokens as f64 / duration_s;
        }
        s.latency_ms = Distribution::of(latency);
        s.ttft_ms = Distribution::of(ttft);
        s.tpot_ms = Distribution::of(tpot);
        s.itl_ms = Distribution::of(itl);
        s.gateway_overhead_us = Distribution::of(overhead);
        let with_header: u64 = s.cache.iter().filter(|(k, _)| *k != "none").map(|(_, v)| v).sum();
        if with_header > 0 {
            let hits: u64 = ["hit", "semantic-hit"].iter().filter_map(|k| s.cache.get(*k)).sum();
            s.cache_hit_rate = Some(hits as f64 / with_header as f64);
        }
        let priced = from_header + from_prices;
        if priced > 0 {
            s.cost_usd = Some(cost);
            s.cost_per_1k_requests = Some(cost / priced as f64 * 1000.0);
            s.cost_source = Some(
                match (from_header, from_prices) {
                    (_, 0) => "header",
                    (0, _) => "prices",
                    _ => "mixed",
                }
                .into(),
            );
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        if !judge.is_empty() {
            (s.quality, s.quality_source, s.quality_samples) =
                (Some(mean(&judge)), Some("judge".into()), judge.len() as u64);
        } else if !similarity.is_empty() {
            (s.quality, s.quality_source, s.quality_samples) =
                (Some(mean(&similarity)), Some("rouge-l".into()), similarity.len() as u64);
        }
        s
    }
}

/// Samples split by a key (a model, an arm, a tag), each group summarised.
pub fn grouped<'a, K: Fn(&Sample) -> Option<String>>(
    samples: &'a [Sample],
    key: K,
    duration_s: f64,
    prices: Option<Prices>,
) -> BTreeMap<String, Summary> {
    let mut groups: BTreeMap<String, Vec<&'a Sample>> = BTreeMap::new();
    for s in samples {
        if let Some(k) = key(s) {
            groups.entry(k).or_default().push(s);
        }
    }
    groups.into_iter().map(|(k, v)| (k, Summary::of(v, duration_s, prices))).collect()
}

#[cfg(test)]
mod tests {
    use crate::bench::stats::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((percentile(&v, 50.0) - 5.5).abs() < 1e-9);
        assert!((percentile(&v, 95.0) - 9.55).abs() < 1e-9);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }
}
