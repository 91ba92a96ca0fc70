//! The official OpenAI (Python, JavaScript) and Anthropic (Python) SDKs,
//! unchanged, pointed at Sluice. `.ci/run` installs them and sets
//! `SLUICE_REQUIRE_SDKS=1`, so in CI a missing SDK fails instead of skipping.

use std::path::Path;

use crate::support::Setup;

fn required() -> bool {
    std::env::var_os("SLUICE_REQUIRE_SDKS").is_some()
}

async fn run(program: &str, args: &[&str]) -> Option<std::process::Output> {
    match tokio::process::Command::new(program).args(args).output().await {
        Ok(output) => Some(output),
        Err(e) if !required() => {
            eprintln!("skipping: {program} unavailable ({e})");
            None
        }
        Err(e) => panic!("{program} unavailable: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdks_work_unchanged() {
    let probe = run("python3", &["-c", "import openai, anthropic"]).await;
    if !probe.as_ref().is_some_and(|o| o.status.success()) {
        assert!(!required(), "the openai and anthropic Python packages are required");
        eprintln!("skipping: the openai/anthropic Python packages are not installed");
        return;
    }
    let s = Setup::new().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/sdk_roundtrip.py");
    let out = run("python3", &[script, &s.gateway.url("")]).await.expect("python3 ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Python SDK checks failed:\n{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("python SDKs: ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_sdk_works_unchanged() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk");
    if !Path::new(dir).join("node_modules/openai").exists() {
        assert!(!required(), "run `npm ci` in tests/sdk");
        eprintln!("skipping: tests/sdk/node_modules is not installed");
        return;
    }
    let s = Setup::new().await;
    let script = format!("{dir}/sdk_roundtrip.mjs");
    let out = run("node", &[&script, &s.gateway.url("")]).await.expect("node ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "JavaScript SDK checks failed:\n{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("js SDK: ok"));
}
