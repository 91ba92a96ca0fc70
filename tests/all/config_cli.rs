//! Configuration from the command line and from files, as `sluice serve`
//! and `sluice check-config` see it.

use clap::Parser;
use sluice::cli::{Cli, Command};
use sluice::config::Config;
use sluice::upstream::UpstreamKind;

fn serve_args(args: &[&str]) -> sluice::cli::ServeArgs {
    let cli = Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied())).expect("flags parse");
    match cli.command {
        Command::Serve(args) => args,
        other => panic!("serve expected, got {other:?}"),
    }
}

#[test]
fn upstream_flag_needs_no_config_file() {
    let config = Config::from_flags(&serve_args(&[
        "serve",
        "--upstream",
        "http://127.0.0.1:9100/v1",
        "--listen",
        "127.0.0.1:9999",
        "--upstream-key",
        "k",
    ]))
    .expect("config from flags");
    assert_eq!(config.gateway.server.listen.port(), 9999);
    assert_eq!(config.gateway.upstreams.len(), 1);
    let upstream = &config.gateway.upstreams[0];
    assert_eq!(upstream.kind, UpstreamKind::OpenAi);
    assert_eq!(upstream.base_url, "http://127.0.0.1:9100/v1");
    assert_eq!(upstream.api_key.as_deref(), Some("k"));
    assert!(upstream.passthrough);

    let err = Config::from_flags(&serve_args(&["serve", "--upstream", "ftp://x"])).expect_err("bad URL");
    assert!(err.to_string().contains("--upstream"), "{err}");

    // No upstream: the bundled engine with its default model serves every name.
    let config = Config::from_flags(&serve_args(&["serve"])).expect("engine by default");
    assert_eq!(config.gateway.upstreams.len(), 1);
    assert_eq!(config.gateway.upstreams[0].kind, UpstreamKind::Engine);
    assert!(config.gateway.upstreams[0].passthrough);
    assert!(config.gateway.upstreams[0].engine.model_path.ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"));
    let config = Config::from_flags(&serve_args(&["serve", "--engine-model", "other.gguf"])).expect("engine model");
    assert_eq!(config.gateway.upstreams[0].engine.model_path, std::path::PathBuf::from("other.gguf"));
}

#[test]
fn the_example_config_is_valid_and_errors_name_key_and_line() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sluice.toml");
    let text = std::fs::read_to_string(example).expect("examples/sluice.toml exists");
    let env = |var: &str| Some(format!("value-of-{var}"));
    let config = Config::parse(&text, "examples/sluice.toml", &env).expect("the example config is valid");
    assert!(!config.gateway.models.is_empty());

    let broken = text.replacen("kind = \"openai\"", "kind = \"openia\"", 1);
    let err = Config::parse(&broken, "broken.toml", &env).expect_err("bad kind");
    let line = text.lines().position(|l| l.contains("kind = \"openai\"")).expect("line") + 1;
    assert_eq!(err.location, format!(":{line}"));
    assert!(err.to_string().starts_with(&format!("broken.toml:{line}: `upstreams.")), "{err}");
}
