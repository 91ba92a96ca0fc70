//! The config target: `Config::parse` on arbitrary text never panics, and
//! every error names its file, a key and, when it has one, a line of the
//! text; a config that checks still checks with a comment appended, and
//! refuses an unknown key put in front of it, naming that key on line 1.

use sluice::config::{Config, ConfigError};

const ORIGIN: &str = "fuzz.toml";

/// `${KEY}` and `${EMPTY}` are set; every other variable is not.
fn env(var: &str) -> Option<String> {
    match var {
        "KEY" => Some("sk-fuzz-secret".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, ORIGIN, &env)
}

fn assert_well_formed(e: &ConfigError, text: &str) {
    assert_eq!(e.origin, ORIGIN);
    assert!(!e.key.is_empty() && !e.message.is_empty(), "an error without key or message: {e}");
    if !e.location.is_empty() {
        let line: usize = e
            .location
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("location `{}` is not `:LINE`", e.location));
        assert!(line >= 1 && line <= text.lines().count() + 1, "line {line} of a {}-line text", text.lines().count());
    }
    assert!(e.to_string().starts_with(ORIGIN), "{e}");
}

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text) {
        Err(e) => assert_well_formed(&e, text),
        Ok(_) => {
            let commented = format!("{text}\n# a comment\n");
            if let Err(e) = parse(&commented) {
                panic!("a valid config fails once a comment is appended: {e}");
            }
            // After the byte-order mark, if any: it may only open the file.
            let (bom, rest) = text.strip_prefix('\u{feff}').map_or(("", text), |rest| ("\u{feff}", rest));
            let unknown = format!("{bom}fuzz_unknown_key = 1\n{rest}");
            let e = parse(&unknown).expect_err("an unknown top-level key is refused");
            assert_well_formed(&e, &unknown);
            assert_eq!((e.key.as_str(), e.location.as_str()), ("fuzz_unknown_key", ":1"), "{e}");
        }
    }
}
