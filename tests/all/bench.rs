//! `sluice bench` and `sluice pareto` against the in-process mock upstream:
//! figures for known delays and known `x-sluice-*` headers, the open loop's
//! rate, the baseline comparison, the Pareto front, and the command line's
//! errors and exit codes (the real binary).

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::Parser;
use sluice::bench::report::Report;
use sluice::bench::stats::{Distribution, Summary};
use sluice::bench::{self, BenchArgs, pareto, workload};
use sluice::cli::{Cli, Command};
use sluice_testkit::{MockUpstream, TestGateway};

fn bench_args(args: &[&str]) -> BenchArgs {
    let cli = Cli::try_parse_from(["sluice", "bench", "--quiet"].iter().chain(args)).expect("flags parse");
    match cli.command {
        Command::Bench(args) => args,
        other => panic!("bench expected, got {other:?}"),
    }
}

/// Writes `lines` as a JSONL workload in `dir`.
fn jsonl(dir: &Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write workload");
    path.display().to_string()
}

fn request(model: &str, user: &str, reference: Option<&str>) -> String {
    let mut v = serde_json::json!({"model": model, "messages": [{"role": "user", "content": user}], "max_tokens": 16});
    if let Some(r) = reference {
        v["reference"] = serde_json::json!(r);
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_ms_upstream_measures_about_20_ms() {
    let mock = MockUpstream::start_unrecorded().await;
    let args = bench_args(&["--target", &mock.base_url(), "--model", "m-slow20", "-c", "4", "-n", "60"]);
    let report = bench::measure(&args).await.expect("bench runs");
    let s = &report.overall;
    assert_eq!((s.requests, s.ok, s.errors), (60, 60, 0));
    let latency = s.latency_ms.as_ref().expect("latency");
    assert!((20.0..40.0).contains(&latency.p50), "p50 {latency:?}");
    assert!(latency.p95 >= latency.p50 && latency.p99 >= latency.p95 && latency.max >= latency.p99);
    // Four in flight, 20 ms each: at most 200 requests/s, and not far below.
    assert!((50.0..=200.0).contains(&s.requests_per_s), "{}", s.requests_per_s);
    assert!(s.ttft_ms.is_none(), "no TTFT without streaming");
    assert_eq!(report.setup.concurrency, Some(4));
    // The FAQ mix's request kinds are reported apart.
    assert!(report.by_tag.contains_key("fresh") && report.by_tag.contains_key("repeat"), "{:?}", report.by_tag.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_cost_and_judge_headers_become_figures() {
    let mock = MockUpstream::start_unrecorded().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Per cycle of 4: two exact hits (cost 0), one semantic hit, one miss
    // costing 400 µUSD; judge scores 0.9, 0.9, 0.6, 0.2.
    let lines = vec![
        request("a-cachehit-cost0-score90", "q1", None),
        request("a-cachehit-cost0-score90", "q2", None),
        request("b-cachesemantic-cost0-score60", "q3", None),
        request("c-cachemiss-cost400-score20", "q4", None),
    ];
    let file = jsonl(dir.path(), "known.jsonl", &lines);
    let args = bench_args(&["--target", &mock.base_url(), "--workload", &file, "-c", "2", "-n", "40"]);
    let report = bench::measure(&args).await.expect("bench runs");
    let s = &report.overall;
    assert_eq!(s.ok, 40);
    assert_eq!(s.cache.get("hit"), Some(&20));
    assert_eq!(s.cache.get("semantic-hit"), Some(&10));
    assert_eq!(s.cache.get("miss"), Some(&10));
    assert!((s.cache_hit_rate.expect("hit rate") - 0.75).abs() < 1e-9);
    // 10 × 400 µUSD over 40 requests = 100 µUSD a request = 0.1 USD per 1k.
    assert!((s.cost_per_1k_requests.expect("cost") - 0.1).abs() < 1e-9, "{:?}", s.cost_per_1k_requests);
    assert_eq!(s.cost_source.as_deref(), Some("header"));
    assert!((s.quality.expect("quality") - 0.65).abs() < 1e-9, "{:?}", s.quality);
    assert_eq!(s.quality_source.as_deref(), Some("judge"));
    // Per model: the miss model alone holds the cost.
    let c = &report.by_model["c-cachemiss-cost400-score20"];
    assert_eq!(c.requests, 10);
    assert!((c.cost_per_1k_requests.expect("cost") - 0.4).abs() < 1e-9);
    assert_eq!(report.by_model.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_cost_the_usage_and_references_grade_the_answers() {
    let mock = MockUpstream::start_unrecorded().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The mock answers `echo: <question>`: the first reference matches it
    // exactly, the second shares no word with it.
    let lines = vec![
        request("plain", "hello world", Some("echo: hello world")),
        request("plain", "hello world", Some("completely different")),
    ];
    let file = jsonl(dir.path(), "graded.jsonl", &lines);
    let args = bench_args(&[
        "--target",
        &mock.base_url(),
        "--workload",
        &file,
        "-n",
        "10",
        "--price-in",
        "1",
        "--price-out",
        "2",
    ]);
    let report = bench::measure(&args).await.expect("bench runs");
    let s = &report.overall;
    assert!((s.quality.expect("quality") - 0.5).abs() < 1e-9, "{:?}", s.quality);
    assert_eq!(s.quality_source.as_deref(), Some("rouge-l"));
    // The mock's usage: 11 prompt tokens, 3 completion tokens ("echo: ", "hello ", "world").
    assert_eq!((s.prompt_tokens, s.output_tokens), (110, 30));
    let per_request = (11.0 * 1.0 + 3.0 * 2.0) / 1e6;
    assert!((s.cost_per_1k_requests.expect("cost") - per_request * 1000.0).abs() < 1e-12);
    assert_eq!(s.cost_source.as_deref(), Some("prices"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_give_ttft_inter_token_latency_and_the_cost_comment() {
    let mock = MockUpstream::start_unrecorded().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // 4 words, a 10 ms drip between chunks, 250 µUSD in the final comment.
    let file = jsonl(dir.path(), "stream.jsonl", &[request("s-drip10-cost250", "one two three", None)]);
    let args = bench_args(&["--target", &mock.base_url(), "--workload", &file, "--stream", "-c", "2", "-n", "10"]);
    let report = bench::measure(&args).await.expect("bench runs");
    let s = &report.overall;
    assert_eq!(s.ok, 10, "{:?}", s.first_errors);
    assert_eq!(s.output_tokens, 40, "usage from the stream's usage chunk");
    let ttft = s.ttft_ms.as_ref().expect("TTFT");
    let itl = s.itl_ms.as_ref().expect("ITL");
    let tpot = s.tpot_ms.as_ref().expect("TPOT");
    let latency = s.latency_ms.as_ref().expect("latency");
    // The role chunk, then a content chunk 10 ms later, then 10 ms gaps.
    assert!((10.0..30.0).contains(&ttft.p50), "{ttft:?}");
    assert!((10.0..30.0).contains(&itl.p50), "{itl:?}");
    assert!((10.0..40.0).contains(&tpot.p50), "{tpot:?}");
    assert!(latency.p50 > ttft.p50 + 25.0, "{latency:?} {ttft:?}");
    assert!((s.cost_per_1k_requests.expect("cost") - 0.25).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_keeps_its_rate() {
    let mock = MockUpstream::start_unrecorded().await;
    // 200 requests/s for 2 s, each taking 50 ms: a closed loop would be
    // bound by the latency; the open loop is not.
    let args = bench_args(&["--target", &mock.base_url(), "--model", "m-slow50", "--rate", "200", "--duration", "2"]);
    let report = bench::measure(&args).await.expect("bench runs");
    let s = &report.overall;
    assert_eq!(s.errors, 0, "{:?}", s.first_errors);
    // Poisson: 400 expected, standard deviation 20.
    assert!((320..=480).contains(&s.requests), "{} requests", s.requests);
    let rate = s.requests as f64 / 2.0;
    assert!((160.0..=240.0).contains(&rate), "{rate}");
    assert_eq!(report.setup.mode, "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_runs_interleaved_and_reports_the_difference() {
    let mock = MockUpstream::start_unrecorded().await;
    let gateway = TestGateway::passthrough(&mock.base_url()).await;
    let args = bench_args(&[
        "--target",
        &gateway.url(""),
        "--baseline",
        &mock.base_url(),
        "--model",
        "m-slow10",
        "-c",
        "4",
        "-n",
        "40",
        "--price-in",
        "1",
        "--price-out",
        "1",
    ]);
    let report = bench::measure(&args).await.expect("bench runs");
    let baseline = report.baseline.as_ref().expect("baseline summary");
    assert_eq!((report.overall.ok, baseline.ok), (40, 40));
    assert!(report.overall.gateway_overhead_us.is_some(), "the gateway reports its overhead");
    assert!(baseline.gateway_overhead_us.is_none(), "the mock does not");
    let c = report.comparison.as_ref().expect("comparison");
    let added = c.added_latency_p50_ms.expect("added p50");
    assert!((-5.0..20.0).contains(&added), "added {added} ms");
    // Same answers, same usage, same prices: nothing saved.
    assert!(c.savings_per_1k_requests_usd.expect("savings").abs() < 1e-12);
}

fn summary(p95: f64, cost: Option<f64>, quality: Option<f64>) -> Summary {
    Summary {
        requests: 100,
        ok: 100,
        latency_ms: Some(Distribution { mean: p95 / 2.0, p50: p95 / 2.0, p95, p99: p95, max: p95 }),
        cost_per_1k_requests: cost,
        quality,
        ..Summary::default()
    }
}

fn write_report(dir: &Path, label: &str, s: Summary) -> PathBuf {
    let report = Report { format: sluice::bench::report::FORMAT, label: label.into(), overall: s, ..Report::default() };
    report.write(dir).expect("write report").0
}

#[test]
fn three_known_reports_give_the_known_frontier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = [
        write_report(dir.path(), "cache", summary(100.0, Some(1.0), Some(0.9))),
        write_report(dir.path(), "large", summary(50.0, Some(2.0), Some(0.9))),
        write_report(dir.path(), "routed", summary(120.0, Some(1.5), Some(0.8))),
    ];
    let reports: Vec<Report> = paths.iter().map(|p| Report::load(p).expect("report loads")).collect();
    let a = pareto::analyse(&reports, pareto::Constraints::default(), pareto::Objective::Cost);
    let front: Vec<&str> = a.points.iter().filter(|p| p.pareto).map(|p| p.label.as_str()).collect();
    assert_eq!(front, ["cache", "large"]);
    assert_eq!(a.points[2].dominated_by, ["cache"]);
    assert_eq!(a.best, Some(0), "the cheapest");
    // A latency limit rules out the cheap one: the fast one wins, and the
    // others' losses are explained.
    let limited = pareto::Constraints { max_latency_ms: Some(80.0), ..Default::default() };
    let a = pareto::analyse(&reports, limited, pareto::Objective::Cost);
    assert_eq!(a.best, Some(1));
    assert!(a.why_not[0].contains("p95 100.0 ms > 80 ms"), "{}", a.why_not[0]);
    assert!(a.why_not[2].contains("dominated by cache"), "{}", a.why_not[2]);
    let md = a.markdown();
    assert!(md.contains("| large") && md.contains("**best**"), "{md}");
    // Nothing meets an impossible quality floor.
    let none = pareto::Constraints { min_quality: Some(0.95), ..Default::default() };
    assert_eq!(pareto::analyse(&reports, none, pareto::Objective::Cost).best, None);
}

#[test]
fn the_faq_mix_repeats_and_paraphrases_in_the_shares_asked() {
    let w = workload::faq(2000, 0.3, 0.2, 32, 7);
    let count = |tag: &str| w.items.iter().filter(|i| i.tag == tag).count() as f64 / 2000.0;
    assert!((count("repeat") - 0.3).abs() < 0.04, "{}", count("repeat"));
    assert!((count("paraphrase") - 0.2).abs() < 0.04, "{}", count("paraphrase"));
    let question = |i: &workload::WorkItem| i.request["messages"][1]["content"].as_str().unwrap_or("").to_owned();
    // A repeat asks, word for word, something asked before.
    for (n, item) in w.items.iter().enumerate().filter(|(_, i)| i.tag == "repeat").take(50) {
        let q = question(item);
        assert!(w.items[..n].iter().any(|earlier| earlier.tag == "fresh" && question(earlier) == q), "{q}");
    }
    // Deterministic for a seed.
    let again = workload::faq(2000, 0.3, 0.2, 32, 7);
    assert!(w.items.iter().zip(&again.items).all(|(a, b)| a.request == b.request));
    // RAG: every request shares one long system prompt.
    let rag = workload::rag(10, 1000, 32, 1);
    let system = &rag.items[0].request["messages"][0]["content"];
    assert!(system.as_str().is_some_and(|s| s.split_whitespace().count() >= 1000));
    assert!(rag.items.iter().all(|i| &i.request["messages"][0]["content"] == system));
}

#[test]
fn mtbench_questions_come_with_their_references() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("question.jsonl"),
        r#"{"question_id": 1, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]}
{"question_id": 2, "category": "writing", "turns": ["Write a haiku."]}
"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("reference_answer.jsonl"),
        r#"{"question_id": 1, "choices": [{"index": 0, "turns": ["4", "6"]}]}"#,
    )
    .expect("write");
    let w = workload::mtbench(dir.path(), 64).expect("loads");
    assert_eq!(w.items.len(), 2);
    assert_eq!(w.items[0].reference.as_deref(), Some("4"));
    assert_eq!(w.items[0].tag, "math");
    assert_eq!(w.items[0].request["messages"][0]["content"], "What is 2+2?");
    assert_eq!(w.items[1].reference, None);

    // The real set, as scripts/fetch-data.sh leaves it.
    let real = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/mtbench"));
    if !real.join("question.jsonl").exists() {
        assert!(std::env::var_os("SLUICE_REQUIRE_DATA").is_none(), "MT-Bench missing: run scripts/fetch-data.sh");
        return;
    }
    let w = workload::mtbench(real, 64).expect("MT-Bench loads");
    assert_eq!(w.items.len(), 80);
    assert!(w.items.iter().filter(|i| i.reference.is_some()).count() >= 20);
}

/// Runs the `sluice` binary; returns its exit code, stdout and stderr.
fn sluice(args: &[&str]) -> (i32, String, String) {
    let out = Process::new(env!("CARGO_BIN_EXE_sluice-cli")).args(args).output().expect("sluice runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_writes_reports_and_fails_clearly_on_bad_input() {
    let mock = MockUpstream::start_unrecorded().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    let target = mock.base_url();

    let ok = tokio::task::spawn_blocking({
        let (target, out_s) = (target.clone(), out_s.clone());
        move || {
            let args = ["bench", "--target", &target, "-n", "20", "--quiet", "--label", "run one", "--out", &out_s];
            sluice(&[&args[..], &["--price-in", "1", "--price-out", "2"]].concat())
        }
    })
    .await
    .expect("joins");
    assert_eq!(ok.0, 0, "{ok:?}");
    assert!(ok.1.contains("p95 ms") && ok.1.contains("run one"), "{}", ok.1);
    let report = Report::load(&out.join("run_one.json")).expect("the JSON report loads");
    assert_eq!(report.overall.ok, 20);
    let md = std::fs::read_to_string(out.join("run_one.md")).expect("the Markdown report");
    assert!(md.contains("| overall"), "{md}");

    // Pareto over the report, with a plot.
    let plot = dir.path().join("front.svg");
    let (code, stdout, stderr) =
        sluice(&["pareto", &out.join("run_one.json").display().to_string(), "--plot", &plot.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("**best**"), "{stdout}");
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("run one"), "{}", &svg[..svg.len().min(200)]);

    // An empty workload.
    let empty = jsonl(dir.path(), "empty.jsonl", &[]);
    let (code, _, stderr) = sluice(&["bench", "--target", &target, "--workload", &empty, "--quiet"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("empty"), "{stderr}");

    // A line that is not a request names its line.
    let bad = jsonl(dir.path(), "bad.jsonl", &[request("m", "hi", None), "{\"model\": \"m\"}".into()]);
    let (code, _, stderr) = sluice(&["bench", "--target", &target, "--workload", &bad, "--quiet"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.jsonl:2") && stderr.contains("messages"), "{stderr}");

    // An unreachable target: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let (code, _, stderr) = sluice(&["bench", "--target", &format!("http://{closed}"), "--quiet", "-n", "5"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach") && stderr.contains(&closed.to_string()), "{stderr}");

    // Every request failing is a failed run, with the upstream's reason.
    let failing = tokio::task::spawn_blocking({
        let target = target.clone();
        move || sluice(&["bench", "--target", &target, "--model", "m-fail503", "--quiet", "-n", "5"])
    })
    .await
    .expect("joins");
    assert_eq!(failing.0, 1, "{failing:?}");
    assert!(failing.2.contains("all 5 requests") && failing.2.contains("HTTP 503"), "{}", failing.2);

    // A malformed report, and a file that is not JSON.
    let malformed = dir.path().join("malformed.json");
    std::fs::write(&malformed, r#"{"format": 1, "label": "x"}"#).expect("write");
    let (code, _, stderr) = sluice(&["pareto", &malformed.display().to_string()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("malformed.json") && stderr.contains("not a `sluice bench` report"), "{stderr}");
    let (code, _, stderr) = sluice(&["pareto", &empty]);
    assert_eq!(code, 2, "{stderr}");

    // Nonsense flags.
    let (code, _, stderr) = sluice(&["bench", "--target", &target, "--rate", "0", "--quiet"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--rate"), "{stderr}");
}
