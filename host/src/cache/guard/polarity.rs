//! Opposites: a question must not have a word flipped for its antonym
//! ("increase" / "decrease", "turn on" / "turn off").
//!
//! The pairs are `words/antonyms.txt`, about ninety, inflections spelled out.
//! A question's polar words are kept as `pair * 2 + side` ids; two questions
//! differ when one says a word and not its opposite and the other the
//! opposite and not the word. Both on one side, or one side silent, agree.
//! Opposites said with words outside the list ("raise" / "cut") pass.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use super::tokens::Token;
use super::words;

/// Word (or two-word form) -> its `pair * 2 + side` ids; a pair's number is
/// its line among the list's entries.
static ANTONYM_INDEX: LazyLock<HashMap<&'static str, Vec<u16>>> = LazyLock::new(|| {
    let mut index: HashMap<&'static str, Vec<u16>> = HashMap::new();
    for (pair, line) in words::lines(include_str!("words/antonyms.txt")).enumerate() {
        let (a, b) = line.split_once('|').expect("antonyms.txt: `forms | opposite forms`");
        for (side, forms) in [a, b].into_iter().enumerate() {
            for form in words::items(forms) {
                index.entry(form).or_default().push((pair * 2 + side) as u16);
            }
        }
    }
    index
});

/// The polar-word ids the tokens hold: single tokens and adjacent pairs.
pub(super) fn polar_words(tokens: &[Token]) -> BTreeSet<u16> {
    let index = &*ANTONYM_INDEX;
    let mut found = BTreeSet::new();
    let mut bigram = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if let Some(ids) = index.get(t.lower.as_str()) {
            found.extend(ids);
        }
        if let Some(next) = tokens.get(i + 1) {
            bigram.clear();
            bigram.push_str(&t.lower);
            bigram.push(' ');
            bigram.push_str(&next.lower);
            if let Some(ids) = index.get(bigram.as_str()) {
                found.extend(ids);
            }
        }
    }
    found
}

/// One side says a word and not its opposite, the other the opposite and
/// not the word (`a` and `b` sorted).
pub(super) fn antonym_flip(a: &[u16], b: &[u16]) -> bool {
    let has = |set: &[u16], id: u16| set.binary_search(&id).is_ok();
    a.iter().any(|&id| !has(a, id ^ 1) && has(b, id ^ 1) && !has(b, id))
}
