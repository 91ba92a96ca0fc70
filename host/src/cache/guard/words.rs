//! Reading the guard's word lists, the text files in `words/`.
//!
//! Each check parses its own list once, on first use, into a static; this
//! module only splits a list into entries. A list is UTF-8 text: blank lines
//! and lines starting with `#` are skipped (no entry starts with `#`; "c#"
//! and "f#" end with one). What an entry means is up to the check that reads
//! the list.

use std::collections::HashSet;

/// The entries of a list, a trimmed line each.
pub(super) fn lines(list: &'static str) -> impl Iterator<Item = &'static str> {
    list.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// A list of words separated by whitespace, as a set.
pub(super) fn word_set(list: &'static str) -> HashSet<&'static str> {
    lines(list).flat_map(str::split_whitespace).collect()
}

/// A line's comma-separated items, trimmed, empty ones dropped.
pub(super) fn items(line: &'static str) -> impl Iterator<Item = &'static str> {
    line.split(',').map(str::trim).filter(|item| !item.is_empty())
}
