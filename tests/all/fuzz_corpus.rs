//! The fuzz corpus as a smoke test on the stable toolchain: every input of
//! `tests/fuzz/corpus/NAME/` through its target (`sluice_testkit::fuzz`),
//! then deterministic mutations of them. A target that panics (a broken
//! property or a crash) fails the test, showing the input. The long runs are
//! cargo-fuzz's (`tests/fuzz/README.md`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use sluice_testkit::fuzz::{TARGETS, mutate::mutate};

/// Mutations per target: the whole test takes a few seconds of a debug build.
const MUTATIONS: u64 = 5000;

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable folder").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).expect("a readable corpus file");
            (path.file_name().unwrap_or_default().to_string_lossy().into_owned(), data)
        })
        .collect()
}

fn shown(data: &[u8]) -> String {
    let head: String = data.iter().take(2000).flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect();
    format!("b\"{head}\"{}", if data.len() > 2000 { " ..." } else { "" })
}

fn replay(name: &str) {
    let target = TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).expect("a target of that name");
    let inputs = corpus(name);
    assert!(inputs.len() >= 3, "{name}: the corpus holds at least a few seeds");
    let mut failures = Vec::new();
    let mut run = |what: String, data: &[u8]| {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name} {what}: {message}\n  input: {}", shown(data)));
        }
    };
    for (file, data) in &inputs {
        run(file.clone(), data);
    }
    let salt = name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    for i in 0..MUTATIONS {
        let seed = salt.wrapping_add(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (_, input) = &inputs[(seed % inputs.len() as u64) as usize];
        let (_, donor) = &inputs[((seed >> 32) % inputs.len() as u64) as usize];
        run(format!("mutation {i}"), &mutate(input, donor, seed));
    }
    assert!(failures.is_empty(), "{} failing inputs:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn openai_request() {
    replay("openai_request");
}

#[test]
fn anthropic_request() {
    replay("anthropic_request");
}

#[test]
fn responses() {
    replay("responses");
}

#[test]
fn sse() {
    replay("sse");
}

#[test]
fn anthropic_stream() {
    replay("anthropic_stream");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn cache_key() {
    replay("cache_key");
}

#[test]
fn guard() {
    replay("guard");
}

#[test]
fn the_corpus_folders_are_the_targets() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut folders: Vec<String> = std::fs::read_dir(&root)
        .expect("tests/fuzz/corpus")
        .map(|e| e.expect("a readable folder").file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(folders, names);
}
