//! Numbers in a question, read from digits and words and normalised, so two
//! questions must name the same set of numbers.
//!
//! "5" = "five", "one hundred forty-four" = "144", "1,000" = "1000", "10k" =
//! "10000", "2nd" = "second" (kept as "#2", an ordinal); units glued to
//! digits are dropped ("5km" = "5"); versions and dates are kept literally
//! ("3.11", "2024-01-05"). The value 1 is ignored: "one", "a" and "first" are
//! mostly articles or filler ("give me one example"). The number words are
//! `words/numbers.txt`. It does not compare units or roles ("km to miles" /
//! "miles to km").

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use super::tokens::Token;
use super::words;

/// What the number word read last was.
#[derive(Clone, Copy, PartialEq)]
enum Last {
    Unit,
    Tens,
    Hundred,
    Scale,
}

/// A token's part in a number.
#[derive(Clone)]
enum Atom {
    /// 0-19, a digit integer, "dozen".
    Unit(u64),
    /// twenty..ninety.
    Tens(u64),
    /// hundred, thousand, million, ...
    Scale(u64),
    Ordinal(u64),
    /// Kept as written: decimals, versions, dates.
    Literal(String),
    /// "and": may sit inside a number ("one hundred and five").
    And,
    /// Anything else: ends a number.
    Break,
}

/// Number words and what each is.
static NUMBER_WORDS: LazyLock<HashMap<&'static str, Atom>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for line in words::lines(include_str!("words/numbers.txt")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [word, kind, value] = fields[..] else { panic!("numbers.txt: `word kind value`: {line}") };
        let value: u64 = value.parse().expect("numbers.txt: a value");
        let atom = match kind {
            "unit" => Atom::Unit(value),
            "tens" => Atom::Tens(value),
            "scale" => Atom::Scale(value),
            "ordinal" => Atom::Ordinal(value),
            _ => panic!("numbers.txt: unknown kind `{kind}`"),
        };
        assert!(map.insert(word, atom).is_none(), "numbers.txt: `{word}` is listed twice");
    }
    map
});

fn word_atom(w: &str) -> Option<Atom> {
    NUMBER_WORDS.get(w).cloned()
}

/// A token that starts with a digit: "5", "1,000", "3.11", "10k", "2nd",
/// "5km", "500-word", "2024-01-05".
fn digit_atoms(lower: &str, out: &mut Vec<Atom>) {
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.')).unwrap_or(lower.len());
    let number: String = lower[..split].chars().filter(|&c| c != ',').collect();
    let number = number.trim_end_matches('.');
    let suffix = &lower[split..];
    if suffix.chars().any(|c| c.is_ascii_digit()) {
        out.push(Atom::Literal(lower.replace(',', "")));
        return;
    }
    if number.contains('.') {
        out.push(Atom::Literal(number.to_string()));
    } else {
        match number.parse::<u64>() {
            Ok(n) if matches!(suffix, "st" | "nd" | "rd" | "th") => out.push(Atom::Ordinal(n)),
            Ok(n) if suffix == "k" => out.push(Atom::Unit(n.saturating_mul(1000))),
            Ok(n) => out.push(Atom::Unit(n)),
            Err(_) => out.push(Atom::Literal(number.to_string())),
        }
    }
    if !suffix.is_empty() {
        out.push(Atom::Break);
    }
}

fn atoms(tokens: &[Token]) -> Vec<Atom> {
    let mut out = Vec::with_capacity(tokens.len() + 1);
    for t in tokens {
        let w = t.lower.as_str();
        if t.alias {
            out.push(Atom::Break);
        } else if w.starts_with(|c: char| c.is_ascii_digit()) {
            digit_atoms(w, &mut out);
        } else if w == "and" {
            out.push(Atom::And);
        } else {
            // "forty-four", "twelve-year-old": the leading number words.
            let mut any = false;
            for part in w.split('-') {
                match word_atom(part) {
                    Some(a) => {
                        out.push(a);
                        any = true;
                    }
                    None => break,
                }
            }
            if !any || w.split('-').any(|p| word_atom(p).is_none()) {
                out.push(Atom::Break);
            }
        }
    }
    out.push(Atom::Break);
    out
}

/// A number being read from consecutive atoms.
struct NumberBuilder {
    found: BTreeSet<String>,
    total: u64,
    current: u64,
    active: bool,
    last: Last,
}

impl NumberBuilder {
    fn flush(&mut self, ordinal: bool) {
        if self.active {
            let v = self.total.saturating_add(self.current);
            // 1 is mostly an article ("one example", "the first step").
            if v != 1 {
                self.found.insert(if ordinal { format!("#{v}") } else { v.to_string() });
            }
        }
        (self.total, self.current, self.active) = (0, 0, false);
    }

    fn feed(&mut self, atom: Atom) {
        match atom {
            Atom::Unit(n) => {
                let last = self.last;
                if self.active && (last == Last::Unit || (last == Last::Tens && n >= 10) || n >= 100) {
                    self.flush(false);
                }
                self.current = self.current.saturating_add(n);
                (self.active, self.last) = (true, Last::Unit);
            }
            Atom::Tens(n) => {
                if self.active && matches!(self.last, Last::Unit | Last::Tens) {
                    self.flush(false);
                }
                self.current = self.current.saturating_add(n);
                (self.active, self.last) = (true, Last::Tens);
            }
            Atom::Scale(s) => {
                // "a hundred", "hundred" alone: one of them.
                if !self.active || self.current == 0 {
                    self.current = 1;
                }
                if s == 100 {
                    self.current = self.current.saturating_mul(100);
                    self.last = Last::Hundred;
                } else {
                    self.total = self.total.saturating_add(self.current.saturating_mul(s));
                    self.current = 0;
                    self.last = Last::Scale;
                }
                self.active = true;
            }
            Atom::Ordinal(n) => {
                // "twenty-first" continues a number; "third" starts one.
                if self.active && self.last == Last::Tens && n < 10 {
                    self.current = self.current.saturating_add(n);
                } else {
                    self.flush(false);
                    (self.current, self.active) = (n, true);
                }
                self.flush(true);
            }
            Atom::Literal(s) => {
                self.flush(false);
                self.found.insert(s);
            }
            Atom::And => {}
            Atom::Break => self.flush(false),
        }
    }
}

/// Builds numbers from words and digits ("two thousand twenty four" = 2024,
/// "5 million" = 5000000) and collects them normalised.
pub(super) fn numbers(tokens: &[Token]) -> BTreeSet<String> {
    let mut builder = NumberBuilder { found: BTreeSet::new(), total: 0, current: 0, active: false, last: Last::Unit };
    for atom in atoms(tokens) {
        builder.feed(atom);
    }
    builder.found
}
