//! The guard's tokeniser: one pass over a question's text.
//!
//! It yields word tokens (with `.`, `-`, `'` inside, `,` between digits,
//! trailing `+`/`#` as in "c++"), currency symbols as tokens ("$" is "USD"),
//! which tokens start a sentence, and the token ranges of quoted strings. It
//! does not interpret tokens: aliases, numbers, negation, opposites and
//! entities are read from them by the other checks.

/// A word of the question.
pub(super) struct Token {
    /// As written (curly apostrophes made straight).
    pub(super) raw: String,
    /// Lowercased, a possessive "'s" or trailing "'" removed.
    pub(super) lower: String,
    /// First token of the text or of a sentence.
    pub(super) starts_sentence: bool,
    /// Produced by the alias map: always an entity, `lower` is canonical.
    pub(super) alias: bool,
}

impl Token {
    pub(super) fn new(raw: String, starts_sentence: bool) -> Token {
        let mut lower = raw.to_lowercase();
        if lower.ends_with("'s") {
            lower.truncate(lower.len() - 2);
        } else if lower.ends_with('\'') {
            lower.pop();
        }
        Token { raw, lower, starts_sentence, alias: false }
    }

    /// The token an alias turns a name into: `canonical` as written and lowercase.
    pub(super) fn alias(canonical: &str, starts_sentence: bool) -> Token {
        Token { raw: canonical.to_string(), lower: canonical.to_string(), starts_sentence, alias: true }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201c}' | '\u{201d}' | '`' | '\'')
}

/// Tokens of `text` and the `(first, end)` token ranges of its quoted strings.
pub(super) fn tokenize(text: &str) -> (Vec<Token>, Vec<(usize, usize)>) {
    let chars: Vec<char> = text.chars().map(|c| if matches!(c, '\u{2018}' | '\u{2019}') { '\'' } else { c }).collect();
    let n = chars.len();
    let mut tokens = Vec::new();
    let mut quotes = Vec::new();
    let mut open_quote: Option<usize> = None;
    let mut at_start = true;
    let mut i = 0;
    while i < n {
        let c = chars[i];
        if is_word_char(c) {
            let end = word_end(&chars, i);
            tokens.push(Token::new(chars[i..end].iter().collect(), at_start));
            at_start = false;
            i = end;
            continue;
        }
        match c {
            '.' | '?' | '!' | ':' | ';' | '\n' => at_start = true,
            '$' => tokens.push(Token::new("USD".into(), false)),
            '\u{20ac}' => tokens.push(Token::new("EUR".into(), false)),
            '\u{a3}' => tokens.push(Token::new("GBP".into(), false)),
            _ if is_quote(c) => {
                let closes = i + 1 == n || !is_word_char(chars[i + 1]);
                let opens = i == 0 || chars[i - 1].is_whitespace() || chars[i - 1] == '(';
                match open_quote {
                    Some(start) if closes => {
                        quotes.push((start, tokens.len()));
                        open_quote = None;
                    }
                    None if opens => open_quote = Some(tokens.len()),
                    _ => {}
                }
            }
            _ => {}
        }
        i += 1;
    }
    (tokens, quotes)
}

/// Where the word starting at `begin` (a word character) ends.
fn word_end(chars: &[char], begin: usize) -> usize {
    let n = chars.len();
    let mut i = begin + 1;
    while i < n {
        let c = chars[i];
        let next_is_word = i + 1 < n && is_word_char(chars[i + 1]);
        let joins = match c {
            _ if is_word_char(c) => true,
            '.' | '-' | '\'' => next_is_word,
            ',' => next_is_word && chars[i - 1].is_ascii_digit() && chars[i + 1].is_ascii_digit(),
            '+' | '#' => chars[i - 1].is_alphabetic() || chars[i - 1] == '+',
            _ => false,
        };
        if !joins {
            break;
        }
        i += 1;
    }
    i
}
