//! Spellings of one name folded together: "US" = "USA" = "United States",
//! "k8s" = "Kubernetes", "$" = "dollars" = "USD".
//!
//! The map is `words/aliases.txt`. Multi-word names become one canonical
//! token before any check reads the tokens; one-word spellings are also
//! folded into a token's key (see `entities::word_key`). An aliased token is
//! always an entity. This module does not decide what is an entity
//! otherwise, nor read numbers.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::tokens::Token;
use super::words;

/// A one-word spelling's canonical key, and the exact spelling it requires
/// when the list writes it with capitals ("US", not the pronoun "us").
struct SingleAlias {
    only_as: Option<&'static str>,
    canonical: &'static str,
}

struct Aliases {
    /// Multi-word names (lowercase words) and their canonical keys, longest first.
    phrases: Vec<(Vec<&'static str>, &'static str)>,
    /// One-word spellings by lowercase key.
    singles: HashMap<String, SingleAlias>,
}

static ALIASES: LazyLock<Aliases> = LazyLock::new(|| {
    let mut phrases = Vec::new();
    let mut singles = HashMap::new();
    for line in words::lines(include_str!("words/aliases.txt")) {
        let (canonical, spellings) = line.split_once(':').expect("aliases.txt: `canonical: spellings`");
        let canonical = canonical.trim();
        for spelling in words::items(spellings) {
            if spelling.contains(' ') {
                phrases.push((spelling.split_whitespace().collect::<Vec<_>>(), canonical));
            } else {
                let only_as = spelling.contains(char::is_uppercase).then_some(spelling);
                let old = singles.insert(spelling.to_lowercase(), SingleAlias { only_as, canonical });
                assert!(old.is_none(), "aliases.txt: `{spelling}` is listed twice");
            }
        }
    }
    // The longest name that matches wins (a stable sort keeps the list's order otherwise).
    phrases.sort_by_key(|(phrase, _)| std::cmp::Reverse(phrase.len()));
    Aliases { phrases, singles }
});

/// The canonical key of a one-word spelling: `key` is the token's lowercase
/// form without hyphens, `raw` the token as written.
pub(super) fn single_alias(raw: &str, key: &str) -> Option<&'static str> {
    let alias = ALIASES.singles.get(key)?;
    match alias.only_as {
        Some(spelling) if spelling != raw => None,
        _ => Some(alias.canonical),
    }
}

/// Replaces aliased names (multi-word first) by one canonical token. Also
/// returns where each input token went, then the output's length, so that
/// token ranges (quotes) can be mapped onto the output.
pub(super) fn apply_aliases(tokens: Vec<Token>) -> (Vec<Token>, Vec<usize>) {
    let mut out = Vec::with_capacity(tokens.len());
    // Where each input token went: a phrase's tokens all map to its alias.
    let mut at = Vec::with_capacity(tokens.len() + 1);
    let mut i = 0;
    'outer: while i < tokens.len() {
        for (phrase, canonical) in &ALIASES.phrases {
            let end = i + phrase.len();
            if end <= tokens.len() && tokens[i..end].iter().zip(phrase.iter()).all(|(t, w)| t.lower == *w) {
                at.extend(std::iter::repeat_n(out.len(), phrase.len()));
                out.push(Token::alias(canonical, tokens[i].starts_sentence));
                i = end;
                continue 'outer;
            }
        }
        let t = &tokens[i];
        let key: String = t.lower.chars().filter(|&c| c != '-').collect();
        at.push(out.len());
        match single_alias(&t.raw, &key) {
            Some(canonical) => out.push(Token::alias(canonical, t.starts_sentence)),
            None => out.push(Token::new(t.raw.clone(), t.starts_sentence)),
        }
        i += 1;
    }
    at.push(out.len());
    (out, at)
}
