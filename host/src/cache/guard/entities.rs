//! Named things in a question, and the key a word is compared by.
//!
//! Named things are aliased names, capitalised words not at a sentence
//! start, acronyms and CamelCase ("API", "iPhone", "useEffect"), tokens with
//! digits, dots, `_`, `+` or `#` inside ("v2", "node.js", "c++"), and the
//! lowercase tech and product names of `words/known_names.txt` ("python",
//! "docker"). Function words (`words/stopwords.txt`) never are, and stay out
//! of the fingerprint's word set. Quoted strings are entities too; the
//! fingerprint collects those from the tokeniser's quote ranges. This module
//! does not decide whether two questions agree (see `fingerprint`).

use std::collections::HashSet;
use std::sync::LazyLock;

use super::aliases::single_alias;
use super::tokens::Token;
use super::words;

static STOPWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words::word_set(include_str!("words/stopwords.txt")));

static KNOWN_NAMES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words::word_set(include_str!("words/known_names.txt")));

/// Whether `lower` (a token's lowercase form) is a function word.
pub(super) fn is_stopword(lower: &str) -> bool {
    STOPWORDS.contains(lower)
}

/// Whether the token names something.
pub(super) fn is_entity(t: &Token) -> bool {
    if t.alias {
        return true;
    }
    let lower = t.lower.as_str();
    let raw = t.raw.as_str();
    if is_stopword(lower) || raw.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let bare: String = lower.chars().filter(|&c| c != '-').collect();
    KNOWN_NAMES.contains(bare.as_str())
        // Acronyms, CamelCase, iPhone.
        || raw.chars().skip(1).any(char::is_uppercase)
        // v2, node.js, snake_case, c++.
        || raw.chars().any(|c| c.is_ascii_digit() || matches!(c, '.' | '_' | '+' | '#'))
        // A capitalised word inside a sentence.
        || (!t.starts_sentence && raw.starts_with(char::is_uppercase))
}

/// A token's key for the entity set and the word set: its lowercase form
/// aliased, hyphens dropped and a plural "s" cut ("APIs" = "api",
/// "Wi-Fi" = "wifi", "Sundays" = "sunday").
pub(super) fn word_key(t: &Token) -> String {
    let mut key: String = t.lower.chars().filter(|&c| c != '-').collect();
    if let Some(canonical) = single_alias(&t.raw, &key) {
        key = canonical.to_string();
    }
    let plural = key.len() > 3 && key.ends_with('s') && !["ss", "us", "is", "os"].iter().any(|end| key.ends_with(end));
    // "APIs", "URLs": an acronym's plural, whatever its last letter.
    let acronym_plural =
        t.raw.len() > 2 && t.raw.ends_with('s') && t.raw[..t.raw.len() - 1].chars().all(|c| c.is_ascii_uppercase());
    if (plural || acronym_plural) && key.chars().all(|c| c.is_alphabetic()) {
        key.pop();
    }
    key
}
