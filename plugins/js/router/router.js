// Example router plugin in JavaScript (componentize-js).
//
// Scores a request's complexity with cheap heuristics and sends simple ones to
// the cheapest healthy model and complex ones to the strongest, with ordered
// fallbacks, an optional cheap-then-strong cascade and a consistent-hash A/B
// split. The same rules as the Rust router in plugins/rust/router, checked by
// the same tests. It never refuses a request: with no usable candidate it
// returns no plan (undefined) and the gateway's default routing applies.

import { configGet, countTokens } from 'sluice:plugin/host@0.1.0';

const HARD_WORDS = [
  'prove', 'analyze', 'analyse', 'step by step', 'explain why', 'derive', 'optimize',
  'optimise', 'refactor', 'debug', 'architecture', 'theorem', 'trade-off', 'tradeoff',
];

function cfgNum(key, dflt) {
  const v = configGet(key);
  if (v === undefined || v.trim() === '') return dflt;
  const n = Number(v.trim());
  return Number.isFinite(n) ? n : dflt;
}

const price = (c) => c.inputPricePerMtok + c.outputPricePerMtok;

// FNV-1a, 32 bits, over UTF-8 bytes: stable across languages.
function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) {
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function complexity(req, tokens) {
  const users = req.messages.filter((m) => m.role === 'user');
  const lastUser = users.length ? users[users.length - 1].content.toLowerCase() : '';
  let score = 0;
  if (tokens > cfgNum('long_prompt_tokens', 1000)) score += 2;
  if (lastUser.includes('```')) score += 2;
  score += Math.min(HARD_WORDS.filter((w) => lastUser.includes(w)).length, 3);
  if (req.hasTools) score += 1;
  if (req.wantsJson) score += 1;
  if (req.messages.length > 6) score += 1;
  if (lastUser.split(/\s+/).filter(Boolean).length > 150) score += 1;
  return score;
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

export const routing = {
  route(req, candidates) {
    const tokens = countTokens(req.messages.map((m) => m.content).join('\n'));
    const needed = tokens + (req.sampling.maxTokens ?? 0);
    const usable = candidates
      .filter((c) => c.health !== 'down' && c.contextWindow >= needed)
      .sort((a, b) => price(a) - price(b) || cmp(a.model, b.model));
    if (usable.length === 0) return undefined;
    const pick = (key, dflt) => {
      const m = configGet(key);
      return m !== undefined && usable.some((c) => c.model === m) ? m : dflt.model;
    };
    const cheap = pick('cheap_model', usable[0]);
    const strong = pick('strong_model', usable[usable.length - 1]);
    const score = complexity(req, tokens);
    const complex = score >= cfgNum('complexity_threshold', 3);
    let primary = complex ? strong : cheap;

    let abBucket;
    const abPercent = cfgNum('ab_percent', 0);
    if (abPercent > 0) {
      const tenant = req.metadata.find(([k]) => k === 'tenant');
      const firstUser = req.messages.find((m) => m.role === 'user');
      const key = req.user ?? (tenant ? tenant[1] : undefined) ?? (firstUser ? firstUser.content : '');
      const inB = fnv1a32(key) % 100 < abPercent;
      abBucket = inB ? 'b' : 'a';
      const abModel = configGet('ab_model');
      if (inB && abModel !== undefined && usable.some((c) => c.model === abModel)) {
        primary = abModel;
      }
    }

    const fallbacks = usable.map((c) => c.model).filter((m) => m !== primary);
    if (complex) fallbacks.reverse();
    const cascade =
      !complex && configGet('cascade') === 'true' && cheap !== strong && primary === cheap
        ? { tiers: [cheap, strong], judgeThreshold: cfgNum('cascade_threshold', 0.7) }
        : undefined;
    return {
      primary,
      fallbacks,
      cascade,
      abBucket,
      reason: `complexity ${score}: ${complex ? 'complex' : 'simple'}`,
    };
  },
};
