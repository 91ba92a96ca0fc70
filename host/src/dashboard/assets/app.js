// Sluice's live dashboard: polls /ui/live once a second and draws the
// per-second history with uPlot, the current figures as tiles and tables,
// and plugin events on a timeline. Every figure shown carries its value in a
// `data-figure` attribute, so tests can read what was drawn.
"use strict";

const WINDOW = 300; // seconds on the charts
let series = []; // the history, oldest first
let events = [];
let last = 0; // unix time of the newest second held
const charts = {};

const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 1) =>
  v == null || Number.isNaN(v) ? "–" : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(digits);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const sum = (xs, f) => xs.reduce((a, x) => a + (f(x) || 0), 0);

function chart(id, labels, colors) {
  const el = $(id);
  const opts = {
    width: Math.max(el.clientWidth, 400),
    height: 170,
    legend: { live: false },
    scales: { x: { time: true } },
    series: [{}, ...labels.map((label, i) => ({ label, stroke: colors[i], width: 1.5, spanGaps: true }))],
    // Small figures (costs) keep their digits.
    axes: [{}, { size: 60, values: (u, vals) => vals.map((v) => (v == null ? "" : +v.toPrecision(3))) }],
  };
  charts[id] = new uPlot(opts, [[], ...labels.map(() => [])], el);
  el.dataset.figure = "chart";
}

function draw(id, rows) {
  const c = charts[id];
  const xs = series.map((p) => p.t);
  c.setData([xs, ...rows.map((f) => series.map(f))]);
  // The latest non-empty value of each line, for readers of the page.
  $(id).dataset.points = String(xs.length);
  $(id).dataset.sums = JSON.stringify(rows.map((f) => sum(series, f)));
}

function tile(name, label, value, text) {
  return `<div class="tile"><div class="label">${esc(label)}</div>` +
    `<div class="value" data-figure="${name}" data-value="${value ?? ""}">${esc(text)}</div></div>`;
}

function table(id, head, rows) {
  $(id).innerHTML = `<tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>` +
    (rows.length ? rows.join("") : `<tr><td colspan="${head.length}">none</td></tr>`);
}

function cell(name, value, text, cls = "num") {
  return `<td class="${cls}" data-figure="${name}" data-value="${value ?? ""}">${esc(text ?? fmt(value))}</td>`;
}

function tiles(data) {
  // Rates over the last minute of history.
  const minute = series.slice(-60);
  const secs = Math.max(minute.length, 1);
  const requests = sum(minute, (p) => p.requests);
  const errors = sum(minute, (p) => p.server_errors);
  const cost = sum(minute, (p) => p.cost_usd);
  const latest = [...series].reverse().find((p) => p.latency_ms) || {};
  const ttft = [...series].reverse().find((p) => p.ttft_ms) || {};
  const all = sum(series, (p) => p.requests);
  const hits = sum(series, (p) => p.cache_hits) + sum(series, (p) => p.cache_semantic_hits);
  const lookups = hits + sum(series, (p) => p.cache_misses);
  const engine = data.engine;
  const html = [
    tile("requests_total", "requests (history)", all, fmt(all, 0)),
    tile("rps", "requests/s (1 min)", requests / secs, fmt(requests / secs, 2)),
    tile("error_rate", "5xx rate (1 min)", requests ? errors / requests : 0,
      `${fmt(requests ? (100 * errors) / requests : 0)} %`),
    tile("p50_ms", "latency p50", latest.latency_ms?.[0], `${fmt(latest.latency_ms?.[0])} ms`),
    tile("p95_ms", "latency p95", latest.latency_ms?.[1], `${fmt(latest.latency_ms?.[1])} ms`),
    tile("p99_ms", "latency p99", latest.latency_ms?.[2], `${fmt(latest.latency_ms?.[2])} ms`),
    tile("ttft_p95_ms", "TTFT p95", ttft.ttft_ms?.[1], `${fmt(ttft.ttft_ms?.[1])} ms`),
    tile("tokens_in", "tokens in (history)", sum(series, (p) => p.tokens_in), fmt(sum(series, (p) => p.tokens_in), 0)),
    tile("tokens_out", "tokens out (history)", sum(series, (p) => p.tokens_out), fmt(sum(series, (p) => p.tokens_out), 0)),
    tile("cost_per_request", "cost per request", requests ? cost / requests : 0,
      `$${fmt(requests ? cost / requests : 0, 6)}`),
    tile("routing_saved", "saved by routing (history)", sum(series, (p) => p.routing_saved_usd),
      `$${fmt(sum(series, (p) => p.routing_saved_usd), 4)}`),
    tile("cost_per_1k", "cost per 1k requests", requests ? (1000 * cost) / requests : 0,
      `$${fmt(requests ? (1000 * cost) / requests : 0, 4)}`),
    tile("cache_hit_rate", "cache hit rate", lookups ? hits / lookups : 0, `${fmt(lookups ? (100 * hits) / lookups : 0)} %`),
    tile("tokens_saved", "tokens saved by compression", sum(series, (p) => p.tokens_saved), fmt(sum(series, (p) => p.tokens_saved), 0)),
    tile("escalations", "cascade escalations", sum(series, (p) => p.escalations), fmt(sum(series, (p) => p.escalations), 0)),
    tile("fallbacks", "fallbacks", sum(series, (p) => p.fallbacks), fmt(sum(series, (p) => p.fallbacks), 0)),
  ];
  if (engine) {
    const e = [...series].reverse().find((p) => p.engine)?.engine || {};
    const prompt = sum(series, (p) => p.engine?.prompt_tokens);
    const prefixRate = prompt ? sum(series, (p) => p.engine?.prefix_hit_tokens) / prompt : 0;
    html.push(
      tile("engine_running", "engine running", engine.running, fmt(engine.running, 0)),
      tile("engine_waiting", "engine waiting", engine.waiting, fmt(engine.waiting, 0)),
      tile("engine_decode_tps", "decode tokens/s", e.tokens_generated, fmt(e.tokens_generated, 0)),
      tile("engine_busy", "engine busy", e.busy, `${fmt(100 * (e.busy || 0))} %`),
      tile("engine_prefix_hit_rate", "prefix-cache hit rate", prefixRate, `${fmt(100 * prefixRate)} %`),
    );
  }
  $("tiles").innerHTML = html.join("");
}

function tables(data) {
  const models = Object.entries(data.routing?.models || {});
  table("models", ["model", "upstream", "requests", "errors %", "p50 ms", "p95 ms", "circuit", "cost $"],
    models.map(([name, m]) => `<tr><td>${esc(name)}</td><td>${esc(m.upstream ?? "")}</td>` +
      cell(`model:${name}:requests`, m.requests, fmt(m.requests, 0)) +
      cell(`model:${name}:error_rate`, m.error_rate, fmt(100 * (m.error_rate || 0))) +
      cell(`model:${name}:p50_ms`, m.latency_ms?.p50) + cell(`model:${name}:p95_ms`, m.latency_ms?.p95) +
      `<td class="${m.circuit === "closed" ? "" : "bad"}">${esc(m.circuit ?? "")}</td>` +
      cell(`model:${name}:cost`, m.cost_usd, fmt(m.cost_usd, 4)) + "</tr>"));
  table("upstreams", ["upstream", "circuit", "in flight"],
    Object.entries(data.routing?.upstreams || {}).map(([name, u]) => `<tr><td>${esc(name)}</td>` +
      `<td class="${u.circuit === "closed" ? "" : "bad"}">${esc(u.circuit)}</td>` +
      cell(`upstream:${name}:in_flight`, data.in_flight?.[name], fmt(data.in_flight?.[name], 0)) + "</tr>"));
  table("arms", ["arm", "weight", "requests", "p50 ms", "cost $", "judge"],
    Object.entries(data.routing?.arms || {}).map(([name, a]) => `<tr><td>${esc(name)}</td>` +
      cell(`arm:${name}:weight`, a.weight) + cell(`arm:${name}:requests`, a.requests, fmt(a.requests, 0)) +
      cell(`arm:${name}:p50_ms`, a.latency_ms?.p50) + cell(`arm:${name}:cost`, a.cost_usd, fmt(a.cost_usd, 4)) +
      cell(`arm:${name}:judge`, a.mean_judge_score, fmt(a.mean_judge_score, 2)) + "</tr>"));
  table("plugins", ["plugin", "stage", "calls", "p50 µs", "faults", "state"],
    (data.plugins || []).map((p) => `<tr><td>${esc(p.name)}</td><td>${esc(p.stage ?? "")}</td>` +
      cell(`plugin:${p.name}:calls`, p.calls, fmt(p.calls, 0)) + cell(`plugin:${p.name}:p50_us`, p.p50_us, fmt(p.p50_us, 0)) +
      cell(`plugin:${p.name}:faults`, p.traps, fmt(p.traps, 0)) +
      `<td class="${p.disabled || p.load_error ? "bad" : ""}">${p.disabled ? "disabled" : p.load_error ? "load error" : "on"}</td></tr>`));
  const c = data.cache;
  table("cache", ["figure", "value"], c ? [
    ["hits", c.requests?.hits], ["semantic hits", c.requests?.semantic_hits], ["misses", c.requests?.misses],
    ["hit rate %", 100 * (c.hit_rate?.total || 0)], ["entries", c.local?.entries], ["bytes", c.local?.bytes],
    ["semantic entries", c.semantic?.entries], ["guard rejections", c.semantic?.guard_rejections],
    ["tokens saved", c.saved?.tokens], ["cost saved $", c.saved?.cost_usd],
  ].map(([k, v]) => `<tr><td>${esc(k)}</td>${cell(`cache:${k}`, v)}</tr>`) : []);
  $("timeline").innerHTML = events.slice().reverse().map((e) =>
    `<li data-event="${esc(e.kind)}" data-subject="${esc(e.subject)}"><span class="t">` +
    `${new Date(e.t * 1000).toLocaleTimeString()}</span>${esc(e.kind.replace("-", " "))}: ${esc(e.subject)}</li>`).join("") ||
    "<li>no events yet</li>";
}

async function poll() {
  try {
    const response = await fetch(`/ui/live?since=${last}`, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    series = series.concat(data.series).slice(-WINDOW);
    events = events.concat(data.events).slice(-200);
    if (series.length) last = series[series.length - 1].t;
    draw("chart-requests", [(p) => p.requests, (p) => p.server_errors, (p) => p.client_errors]);
    draw("chart-latency", [(p) => p.latency_ms?.[0], (p) => p.latency_ms?.[1], (p) => p.latency_ms?.[2], (p) => p.ttft_ms?.[1]]);
    draw("chart-tokens", [(p) => p.tokens_in, (p) => p.tokens_out, (p) => p.tokens_saved]);
    draw("chart-cache", [(p) => p.cache_hits, (p) => p.cache_semantic_hits, (p) => p.cache_misses]);
    draw("chart-cost", [(p) => p.cost_usd]);
    draw("chart-engine", [(p) => p.engine?.running, (p) => p.engine?.waiting, (p) => p.engine?.kv_blocks_used, (p) => p.engine?.tokens_generated]);
    tiles(data);
    tables(data);
    $("status").textContent = `live · ${new Date(data.now * 1000).toLocaleTimeString()}`;
    document.body.dataset.updated = String(data.now);
  } catch (e) {
    $("status").textContent = `disconnected (${e.message}); retrying`;
  }
}

chart("chart-requests", ["requests", "5xx", "4xx"], ["#2f6fde", "#b3261e", "#e0a100"]);
chart("chart-latency", ["p50", "p95", "p99", "TTFT p95"], ["#2f6fde", "#7a4fd6", "#b3261e", "#1f9d6b"]);
chart("chart-tokens", ["in", "out", "saved"], ["#2f6fde", "#1f9d6b", "#e0a100"]);
chart("chart-cache", ["exact", "semantic", "miss"], ["#1f9d6b", "#7a4fd6", "#999"]);
chart("chart-cost", ["USD"], ["#b3261e"]);
chart("chart-engine", ["running", "waiting", "KV used", "tokens/s"], ["#2f6fde", "#e0a100", "#7a4fd6", "#1f9d6b"]);
poll();
setInterval(poll, 1000);
