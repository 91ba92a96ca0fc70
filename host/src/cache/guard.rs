//! The semantic cache's false-hit guard.
//!
//! The semantic index serves a cached answer when a new question's embedding
//! is close enough to a cached one. Sentence embeddings are nearly blind to
//! the few tokens that change what a question asks: "is X safe" / "is X not
//! safe", "convert 5 km" / "convert 8 km", "capital of France" / "capital of
//! Spain" all score as near-duplicates. A [`Fingerprint`] pulls those tokens
//! out of a question, and a cached answer may serve another question only
//! when their fingerprints are [`compatible`](Fingerprint::compatible):
//!
//! - **numbers**: the same set of numbers. Digits and words are normalised
//!   ("5" = "five", "one hundred forty-four" = "144", "1,000" = "1000",
//!   "10k" = "10000", "2nd" = "second"); units glued to digits are dropped
//!   ("5km" = "5"); versions and dates are kept literally ("3.11",
//!   "2024-01-05"). The value 1 is ignored, since "one"/"a"/"first" are
//!   mostly articles or filler ("give me one example").
//! - **negation**: the same parity of negation cues (not, n't, no, never,
//!   none, nobody, nothing, nowhere, neither/nor, without, cannot, unable,
//!   non-…), so "X" / "not X" differ but "can't" / "unable to" agree.
//! - **antonyms**: no word flipped for its opposite: one side says
//!   "increase" and not "decrease", the other "decrease" and not "increase"
//!   (about seventy pairs, inflections spelled out, a few two-word forms such
//!   as "turn on" / "turn off").
//! - **entities**: every named thing in one question is mentioned by the
//!   other. Named things are capitalised words not at a sentence start,
//!   acronyms and CamelCase ("API", "iPhone", "useEffect"), tokens with
//!   digits, dots, `_`, `+` or `#` inside ("v2", "node.js", "c++"), quoted
//!   strings, and a short list of lowercase tech and product names ("python",
//!   "react", "docker"). A small alias map folds spellings together ("US" =
//!   "USA" = "United States", "NYC" = "New York City", "JS" = "JavaScript",
//!   "k8s" = "Kubernetes", "$" = "dollars" = "USD"). "Mentioned" means the
//!   other side has it as an entity or merely as a word (a 512-bit Bloom set
//!   of its words), so "France" / "france" agree while "France" / "Spain"
//!   differ.
//!
//! What it cannot catch: swapped subjects that look like ordinary words
//! ("bake bread" / "bake cookies", "weather in seattle" / "in portland",
//! "measles" / "mumps"), which are left to the embedding threshold; swapped
//! roles of the same things ("convert km to miles" / "miles to km"); the
//! opposite said with words outside the lists ("raise" / "cut"); and a
//! lowercase "go" (the language), which is too common a verb to list. It also
//! rejects some true paraphrases: an opposite phrased with a negation ("with
//! no eggs" / "egg-free", "keep it" / "without deleting it") or an antonym
//! ("still good" / "gone bad"). On long texts the word set fills up and the
//! entity check grows lenient; numbers, negation and antonyms are unaffected.
//!
//! Everything here is std-only and allocation-light: one pass to tokenise,
//! a few linear passes over the tokens. The word hashes are FNV-1a, stable
//! across builds and processes, so an encoded fingerprint stays valid in
//! Redis across restarts and replicas.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

/// Words in the Bloom set of a fingerprint's words (512 bits).
const BLOOM_WORDS: usize = 8;
/// Version tag of [`Fingerprint::encode`]'s format.
const ENCODING_TAG: &str = "g1";

/// What must agree between two queries for one's answer to serve the other.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// Normalised numbers, sorted and deduplicated ("#2" is an ordinal).
    numbers: Vec<String>,
    /// Odd number of negation cues.
    negated: bool,
    /// Antonym-list words present, as `pair * 2 + side`, sorted.
    polar: Vec<u16>,
    /// Normalised entity keys, sorted and deduplicated; a quoted string is
    /// its words' keys joined by spaces.
    entities: Vec<String>,
    /// Bloom set of the keys of every non-stopword token.
    words: [u64; BLOOM_WORDS],
}

impl Fingerprint {
    pub fn of(text: &str) -> Fingerprint {
        let (tokens, quotes) = tokenize(text);
        let tokens = apply_aliases(tokens);

        let mut entities = BTreeSet::new();
        let mut words = [0u64; BLOOM_WORDS];
        for t in &tokens {
            let key = word_key(t);
            if key.is_empty() || (!t.alias && STOPWORDS.contains(&t.lower.as_str())) {
                continue;
            }
            bloom_insert(&mut words, &key);
            if is_entity(t) {
                entities.insert(key);
            }
        }
        for (start, end) in quotes {
            // Its content words: the stopwords are not in the word set.
            let phrase: Vec<String> = tokens[start..end]
                .iter()
                .filter(|t| t.alias || !STOPWORDS.contains(&t.lower.as_str()))
                .map(word_key)
                .filter(|k| !k.is_empty())
                .collect();
            if !phrase.is_empty() {
                entities.insert(phrase.join(" "));
            }
        }

        Fingerprint {
            numbers: numbers(&tokens).into_iter().collect(),
            negated: negation_cues(&tokens) % 2 == 1,
            polar: polar_words(&tokens).into_iter().collect(),
            entities: entities.into_iter().collect(),
            words,
        }
    }

    /// Whether an answer cached for `self` may be served for `other`.
    pub fn compatible(&self, other: &Fingerprint) -> bool {
        self.negated == other.negated
            && self.numbers == other.numbers
            && !antonym_flip(&self.polar, &other.polar)
            && self.entities.iter().all(|e| other.mentions(e))
            && other.entities.iter().all(|e| self.mentions(e))
    }

    /// A compact string form for storage (e.g. in Redis) and its parser;
    /// round-trips. Layout: `g1;<negated 0|1>;<numbers>;<polar>;<entities>;
    /// <words as hex>`, lists comma-separated, `%`, `;` and `,` in items
    /// percent-escaped.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 + BLOOM_WORDS * 16);
        out.push_str(ENCODING_TAG);
        out.push(';');
        out.push(if self.negated { '1' } else { '0' });
        out.push(';');
        push_list(&mut out, self.numbers.iter().map(String::as_str));
        out.push(';');
        let polar: Vec<String> = self.polar.iter().map(u16::to_string).collect();
        push_list(&mut out, polar.iter().map(String::as_str));
        out.push(';');
        push_list(&mut out, self.entities.iter().map(String::as_str));
        out.push(';');
        for w in self.words {
            out.push_str(&format!("{w:016x}"));
        }
        out
    }

    pub fn decode(s: &str) -> Option<Fingerprint> {
        let mut parts = s.split(';');
        if parts.next()? != ENCODING_TAG {
            return None;
        }
        let negated = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let numbers = parse_list(parts.next()?)?;
        let polar = parse_list(parts.next()?)?.iter().map(|p| p.parse::<u16>().ok()).collect::<Option<Vec<u16>>>()?;
        let entities = parse_list(parts.next()?)?;
        let hex = parts.next()?;
        if parts.next().is_some() || hex.len() != BLOOM_WORDS * 16 || !hex.is_ascii() {
            return None;
        }
        let mut words = [0u64; BLOOM_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u64::from_str_radix(&hex[i * 16..(i + 1) * 16], 16).ok()?;
        }
        Some(Fingerprint { numbers, negated, polar, entities, words })
    }

    /// Whether this question names `entity`, as an entity or as plain words.
    fn mentions(&self, entity: &str) -> bool {
        self.entities.binary_search_by(|e| e.as_str().cmp(entity)).is_ok()
            || entity.split(' ').all(|w| bloom_contains(&self.words, w))
    }
}

// ---------------------------------------------------------------- tokens

struct Token {
    /// As written (curly apostrophes made straight).
    raw: String,
    /// Lowercased, a possessive "'s" or trailing "'" removed.
    lower: String,
    /// First token of the text or of a sentence.
    starts_sentence: bool,
    /// Produced by the alias map: always an entity, `lower` is canonical.
    alias: bool,
}

impl Token {
    fn new(raw: String, starts_sentence: bool) -> Token {
        let mut lower = raw.to_lowercase();
        if lower.ends_with("'s") {
            lower.truncate(lower.len() - 2);
        } else if lower.ends_with('\'') {
            lower.pop();
        }
        Token { raw, lower, starts_sentence, alias: false }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201c}' | '\u{201d}' | '`' | '\'')
}

/// One pass over the text: word tokens (with `.`, `-`, `'` inside, `,`
/// between digits, trailing `+`/`#` as in "c++"), currency symbols as
/// tokens, sentence starts, and the token ranges of quoted strings.
fn tokenize(text: &str) -> (Vec<Token>, Vec<(usize, usize)>) {
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
            let begin = i;
            i += 1;
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
            tokens.push(Token::new(chars[begin..i].iter().collect(), at_start));
            at_start = false;
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

/// A token's key for the entity set and the word set: its lowercase form
/// aliased, hyphens dropped and a plural "s" cut ("APIs" = "api",
/// "Wi-Fi" = "wifi", "Sundays" = "sunday").
fn word_key(t: &Token) -> String {
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

// --------------------------------------------------------------- aliases

/// Multi-word names and their canonical keys (longest first).
const PHRASE_ALIASES: &[(&[&str], &str)] = &[
    (&["united", "states", "of", "america"], "us"),
    (&["visual", "studio", "code"], "vscode"),
    (&["gross", "domestic", "product"], "gdp"),
    (&["new", "york", "city"], "nyc"),
    (&["world", "war", "ii"], "wwii"),
    (&["world", "war", "2"], "wwii"),
    (&["world", "war", "two"], "wwii"),
    (&["world", "war", "i"], "wwi"),
    (&["world", "war", "1"], "wwi"),
    (&["world", "war", "one"], "wwi"),
    (&["united", "states"], "us"),
    (&["united", "kingdom"], "uk"),
    (&["great", "britain"], "uk"),
    (&["los", "angeles"], "la"),
    (&["san", "francisco"], "sf"),
    (&["european", "union"], "eu"),
    (&["artificial", "intelligence"], "ai"),
    (&["machine", "learning"], "ml"),
    (&["virtual", "machine"], "vm"),
    (&["virtual", "machines"], "vm"),
    (&["operating", "system"], "os"),
    (&["vs", "code"], "vscode"),
    (&["node", "js"], "node"),
    (&["us", "dollar"], "usd"),
    (&["us", "dollars"], "usd"),
];

/// One-token spellings and their canonical keys. `raw` matters for the
/// ones that are ordinary words in lowercase ("us", "la").
fn single_alias(raw: &str, key: &str) -> Option<&'static str> {
    Some(match key {
        "us" if raw == "US" => "us",
        "usa" | "u.s" | "u.s.a" => "us",
        "uk" | "u.k" | "britain" => "uk",
        "nyc" => "nyc",
        "la" if raw == "LA" => "la",
        "sf" => "sf",
        "js" => "javascript",
        "ts" if raw == "TS" => "typescript",
        "py" => "python",
        "golang" => "go",
        "k8s" => "kubernetes",
        "postgresql" | "psql" => "postgres",
        "pg" if raw == "PG" => "postgres",
        "mongo" => "mongodb",
        "node.js" | "nodejs" => "node",
        "vue.js" | "vuejs" => "vue",
        "react.js" | "reactjs" => "react",
        "next.js" => "nextjs",
        "mac" | "osx" => "macos",
        "wwii" | "ww2" => "wwii",
        "wwi" | "ww1" => "wwi",
        "cv" if raw == "CV" => "resume",
        "wifi" => "wifi",
        "usd" | "dollar" | "dollars" => "usd",
        "eur" | "euro" | "euros" => "eur",
        "gbp" => "gbp",
        _ => return None,
    })
}

/// Replaces aliased names (multi-word first) by one canonical token.
fn apply_aliases(tokens: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    'outer: while i < tokens.len() {
        for (phrase, canonical) in PHRASE_ALIASES {
            let end = i + phrase.len();
            if end <= tokens.len() && tokens[i..end].iter().zip(phrase.iter()).all(|(t, w)| t.lower == *w) {
                out.push(Token {
                    raw: canonical.to_string(),
                    lower: canonical.to_string(),
                    starts_sentence: tokens[i].starts_sentence,
                    alias: true,
                });
                i = end;
                continue 'outer;
            }
        }
        let t = &tokens[i];
        let key: String = t.lower.chars().filter(|&c| c != '-').collect();
        if let Some(canonical) = single_alias(&t.raw, &key) {
            out.push(Token {
                raw: canonical.to_string(),
                lower: canonical.to_string(),
                starts_sentence: t.starts_sentence,
                alias: true,
            });
        } else {
            out.push(Token::new(t.raw.clone(), t.starts_sentence));
        }
        i += 1;
    }
    out
}

// -------------------------------------------------------------- entities

/// Function words never taken as entities, whatever their case.
const STOPWORDS: &[&str] = &[
    "a", "about", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did",
    "do", "does", "for", "from", "give", "had", "has", "have", "he", "hello", "her", "hey", "hi", "his", "how", "i",
    "i'd", "i'll", "i'm", "i've", "if", "in", "into", "is", "it", "its", "may", "me", "might", "must", "my", "no",
    "not", "of", "ok", "okay", "on", "or", "our", "please", "shall", "she", "should", "so", "than", "thank", "thanks",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "versus", "vs", "was",
    "we", "were", "what", "when", "where", "which", "who", "whom", "whose", "why", "will", "with", "would", "yes",
    "you", "your",
];

/// Lowercase names that are entities even when not capitalised. Not "go":
/// too common a verb; "Go" mid-sentence and "golang" still count.
const KNOWN_NAMES: &[&str] = &[
    "android",
    "angular",
    "ansible",
    "apache",
    "aws",
    "azure",
    "bash",
    "bitcoin",
    "bootstrap",
    "c",
    "c#",
    "c++",
    "cassandra",
    "centos",
    "chatgpt",
    "chrome",
    "clojure",
    "css",
    "csv",
    "curl",
    "dart",
    "debian",
    "deno",
    "discord",
    "django",
    "docker",
    "elasticsearch",
    "elixir",
    "emacs",
    "erlang",
    "ethereum",
    "excel",
    "f#",
    "facebook",
    "fastapi",
    "fedora",
    "figma",
    "firefox",
    "flask",
    "gcp",
    "git",
    "github",
    "gitlab",
    "gmail",
    "google",
    "graphql",
    "haskell",
    "helm",
    "heroku",
    "html",
    "instagram",
    "ios",
    "ipad",
    "iphone",
    "java",
    "javascript",
    "jenkins",
    "jquery",
    "json",
    "kafka",
    "keras",
    "kotlin",
    "kubernetes",
    "laravel",
    "linux",
    "lua",
    "macos",
    "matlab",
    "microsoft",
    "mongodb",
    "mysql",
    "neovim",
    "netflix",
    "netlify",
    "nextjs",
    "nginx",
    "node",
    "notion",
    "npm",
    "numpy",
    "nuxt",
    "openai",
    "outlook",
    "pandas",
    "paypal",
    "perl",
    "photoshop",
    "php",
    "pip",
    "podman",
    "polars",
    "postgres",
    "powershell",
    "python",
    "pytorch",
    "rails",
    "react",
    "redis",
    "ruby",
    "rust",
    "safari",
    "scala",
    "scipy",
    "shopify",
    "slack",
    "spotify",
    "sql",
    "sqlite",
    "ssh",
    "stripe",
    "svelte",
    "swift",
    "tailwind",
    "tensorflow",
    "terraform",
    "tiktok",
    "twitter",
    "typescript",
    "ubuntu",
    "venmo",
    "vim",
    "vite",
    "vscode",
    "vue",
    "webpack",
    "whatsapp",
    "windows",
    "wordpress",
    "xml",
    "yaml",
    "youtube",
    "zsh",
];

fn is_entity(t: &Token) -> bool {
    if t.alias {
        return true;
    }
    let lower = t.lower.as_str();
    let raw = t.raw.as_str();
    if STOPWORDS.contains(&lower) || raw.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let bare: String = lower.chars().filter(|&c| c != '-').collect();
    KNOWN_NAMES.contains(&bare.as_str())
        // Acronyms, CamelCase, iPhone.
        || raw.chars().skip(1).any(char::is_uppercase)
        // v2, node.js, snake_case, c++.
        || raw.chars().any(|c| c.is_ascii_digit() || matches!(c, '.' | '_' | '+' | '#'))
        // A capitalised word inside a sentence.
        || (!t.starts_sentence && raw.starts_with(char::is_uppercase))
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The three bit positions of a word in the Bloom set.
fn bloom_bits(word: &str) -> [usize; 3] {
    let h = fnv1a(word);
    let bits = BLOOM_WORDS * 64;
    [(h % bits as u64) as usize, ((h >> 21) % bits as u64) as usize, ((h >> 42) % bits as u64) as usize]
}

fn bloom_insert(set: &mut [u64; BLOOM_WORDS], word: &str) {
    for b in bloom_bits(word) {
        set[b / 64] |= 1 << (b % 64);
    }
}

fn bloom_contains(set: &[u64; BLOOM_WORDS], word: &str) -> bool {
    bloom_bits(word).iter().all(|&b| set[b / 64] & (1 << (b % 64)) != 0)
}

// --------------------------------------------------------------- numbers

#[derive(Clone, Copy, PartialEq)]
enum Last {
    Unit,
    Tens,
    Hundred,
    Scale,
}

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

fn small_number(w: &str) -> Option<u64> {
    const SMALL: &[&str] = &[
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    SMALL.iter().position(|&s| s == w).map(|p| p as u64)
}

fn tens_number(w: &str) -> Option<u64> {
    const TENS: &[&str] = &["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    TENS.iter().position(|&s| s == w).map(|p| 20 + 10 * p as u64)
}

fn ordinal_word(w: &str) -> Option<u64> {
    const ORD: &[&str] = &[
        "zeroth",
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "fourteenth",
        "fifteenth",
        "sixteenth",
        "seventeenth",
        "eighteenth",
        "nineteenth",
    ];
    const TENS_ORD: &[&str] =
        &["twentieth", "thirtieth", "fortieth", "fiftieth", "sixtieth", "seventieth", "eightieth", "ninetieth"];
    if let Some(p) = ORD.iter().position(|&s| s == w) {
        return Some(p as u64);
    }
    if let Some(p) = TENS_ORD.iter().position(|&s| s == w) {
        return Some(20 + 10 * p as u64);
    }
    match w {
        "hundredth" => Some(100),
        "thousandth" => Some(1000),
        _ => None,
    }
}

fn word_atom(w: &str) -> Option<Atom> {
    if let Some(n) = small_number(w) {
        return Some(Atom::Unit(n));
    }
    if let Some(n) = tens_number(w) {
        return Some(Atom::Tens(n));
    }
    if let Some(n) = ordinal_word(w) {
        return Some(Atom::Ordinal(n));
    }
    Some(match w {
        "dozen" => Atom::Unit(12),
        "hundred" => Atom::Scale(100),
        "thousand" => Atom::Scale(1_000),
        "million" => Atom::Scale(1_000_000),
        "billion" => Atom::Scale(1_000_000_000),
        "trillion" => Atom::Scale(1_000_000_000_000),
        _ => return None,
    })
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
                    self.current += n;
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
fn numbers(tokens: &[Token]) -> BTreeSet<String> {
    let mut builder = NumberBuilder { found: BTreeSet::new(), total: 0, current: 0, active: false, last: Last::Unit };
    for atom in atoms(tokens) {
        builder.feed(atom);
    }
    builder.found
}

// -------------------------------------------------------------- negation

/// Negation contractions written without the apostrophe.
const BARE_NEGATIONS: &[&str] = &[
    "aint", "arent", "cant", "couldnt", "didnt", "doesnt", "dont", "hadnt", "hasnt", "havent", "isnt", "mustnt",
    "neednt", "shouldnt", "wasnt", "werent", "wont", "wouldnt",
];

fn negation_cues(tokens: &[Token]) -> usize {
    let mut count = 0;
    let mut neither = false;
    for (i, t) in tokens.iter().enumerate() {
        let w = t.lower.as_str();
        let next = tokens.get(i + 1).map_or("", |t| t.lower.as_str());
        let cue = match w {
            "not" => next != "only",
            "no" => !matches!(next, "matter" | "doubt"),
            "never" | "none" | "nobody" | "nothing" | "nowhere" | "without" | "cannot" | "unable" => true,
            "neither" => {
                neither = true;
                true
            }
            "nor" => !neither,
            _ => w.ends_with("n't") || w.starts_with("non-") || BARE_NEGATIONS.contains(&w),
        };
        count += usize::from(cue);
    }
    count
}

// -------------------------------------------------------------- antonyms

/// Opposites: (one side's forms, the other side's). Two-word forms match
/// adjacent tokens. A word may sit in several pairs.
const ANTONYMS: &[(&[&str], &[&str])] = &[
    (&["safe", "safely", "safer", "safest", "harmless"], &["dangerous", "unsafe", "harmful", "risky", "hazardous"]),
    (
        &["increase", "increases", "increased", "increasing", "increment", "raise", "raising", "higher", "boost"],
        &[
            "decrease",
            "decreases",
            "decreased",
            "decreasing",
            "decrement",
            "reduce",
            "reducing",
            "reduced",
            "lower",
            "lowering",
        ],
    ),
    (&["before"], &["after"]),
    (
        &["fast", "faster", "fastest", "quick", "quicker", "quickest", "quickly", "speed up"],
        &["slow", "slower", "slowest", "slowly", "slow down"],
    ),
    (&["best", "better", "good"], &["worst", "worse", "bad"]),
    (&["large", "larger", "largest", "big", "bigger", "biggest"], &["small", "smaller", "smallest", "tiny"]),
    (&["max", "maximum", "maximize"], &["min", "minimum", "minimize"]),
    (
        &["add", "adding", "added", "insert", "append"],
        &["remove", "removing", "removed", "delete", "deleting", "deleted", "subtract", "drop"],
    ),
    (&["install", "installing", "installed"], &["uninstall", "uninstalling", "uninstalled"]),
    (
        &["enable", "enabled", "enabling", "activate", "turn on", "switch on"],
        &["disable", "disabled", "disabling", "deactivate", "turn off", "switch off"],
    ),
    (&["buy", "buying", "bought", "purchase", "purchased"], &["sell", "selling", "sold"]),
    (&["hot", "hotter", "hottest", "warm", "warmer", "warmest"], &["cold", "colder", "coldest"]),
    (&["high", "highest"], &["low", "lowest"]),
    (&["long", "longer", "longest"], &["short", "shorter", "shortest"]),
    (&["tall", "taller", "tallest"], &["short", "shorter", "shortest"]),
    (&["old", "older", "oldest"], &["new", "newer", "newest", "latest", "young", "younger", "youngest"]),
    (&["first"], &["last"]),
    (&["start", "starting", "started", "begin", "beginning"], &["stop", "stopping", "stopped", "halt"]),
    (&["open", "opening", "opened"], &["close", "closing", "closed"]),
    (&["import", "importing"], &["export", "exporting"]),
    (&["upload", "uploading"], &["download", "downloading"]),
    (&["push"], &["pull"]),
    (&["encrypt", "encrypted", "encryption"], &["decrypt", "decrypted", "decryption"]),
    (&["encode", "encoding", "encoded"], &["decode", "decoding", "decoded"]),
    (&["compress", "compressed", "compression", "zip"], &["decompress", "uncompress", "unzip", "extract"]),
    (&["lock", "locked"], &["unlock", "unlocked"]),
    (&["mount"], &["unmount"]),
    (&["subscribe"], &["unsubscribe"]),
    (&["follow"], &["unfollow"]),
    (&["block", "blocked"], &["unblock", "unblocked"]),
    (
        &["allow", "allowed", "permit", "permitted"],
        &["block", "blocked", "deny", "denied", "forbid", "forbidden", "ban", "banned"],
    ),
    (&["accept", "accepted"], &["reject", "rejected", "decline"]),
    (&["win", "won", "winning"], &["lose", "lost", "losing"]),
    (&["gain", "gaining"], &["lose", "losing"]),
    (&["true"], &["false"]),
    (&["positive"], &["negative"]),
    (
        &["pros", "advantage", "advantages", "benefit", "benefits"],
        &["cons", "disadvantage", "disadvantages", "drawbacks", "downsides"],
    ),
    (&["legal", "legally"], &["illegal", "illegally"]),
    (&["possible"], &["impossible"]),
    (&["correct", "correctly"], &["incorrect", "incorrectly", "wrong"]),
    (&["valid"], &["invalid"]),
    (&["visible", "show", "showing", "shown", "unhide"], &["hidden", "invisible", "hide", "hiding"]),
    (&["public"], &["private"]),
    (&["above"], &["below"]),
    (&["inside"], &["outside"]),
    (&["north", "northern"], &["south", "southern"]),
    (&["east", "eastern"], &["west", "western"]),
    (&["ascending", "asc"], &["descending", "desc"]),
    (&["uppercase", "upper case"], &["lowercase", "lower case"]),
    (&["expand"], &["collapse"]),
    (&["more"], &["less", "fewer"]),
    (&["most"], &["least"]),
    (&["cheap", "cheaper", "cheapest", "inexpensive"], &["expensive", "pricey"]),
    (&["early", "earlier", "earliest"], &["late", "later"]),
    (&["connect", "connected", "connecting"], &["disconnect", "disconnected", "disconnecting"]),
    (&["attach"], &["detach"]),
    (&["merge", "merging", "combine"], &["split", "splitting"]),
    (&["login", "log in", "log into", "sign in", "signin"], &["logout", "log out", "sign out", "signout"]),
    (&["send", "sending", "sent"], &["receive", "receiving", "received"]),
    (&["client"], &["server"]),
    (&["frontend", "front end"], &["backend", "back end"]),
    (&["sync", "synchronous", "synchronously"], &["async", "asynchronous", "asynchronously"]),
    (&["horizontal", "horizontally"], &["vertical", "vertically"]),
    (&["easy", "easier", "easiest"], &["hard", "harder", "hardest", "difficult"]),
    (&["strong", "stronger", "strongest"], &["weak", "weaker", "weakest"]),
    (&["light", "lighter", "lightest"], &["dark", "darker", "darkest"]),
    (&["lighter", "lightest"], &["heavy", "heavier", "heaviest"]),
    (&["always"], &["never"]),
    (&["zoom in"], &["zoom out"]),
    (
        &["go up", "goes up", "went up", "rise", "rises", "rising"],
        &["go down", "goes down", "went down", "fall", "falls", "falling"],
    ),
    (&["ripe"], &["unripe"]),
    (&["full"], &["empty"]),
    (&["include", "including", "included"], &["exclude", "excluding", "excluded"]),
    (&["male", "man", "men", "boy", "boys"], &["female", "woman", "women", "girl", "girls"]),
    (&["summer"], &["winter"]),
    (&["input"], &["output"]),
    (&["success", "successful", "succeed"], &["failure", "fail", "failed", "fails"]),
    (&["love"], &["hate"]),
    (&["agree"], &["disagree"]),
    (&["online"], &["offline"]),
    (&["top"], &["bottom"]),
    (&["loud", "louder", "loudest"], &["quiet", "quieter", "quietest", "silent"]),
    (&["wide", "wider", "widest"], &["narrow", "narrower", "narrowest"]),
    (&["upgrade", "upgrading"], &["downgrade", "downgrading"]),
    (&["arrival", "arrivals", "arrive"], &["departure", "departures", "depart"]),
    (&["healthy", "healthier", "healthiest"], &["unhealthy", "unhealthier", "unhealthiest"]),
    (&["overweight"], &["underweight"]),
];

/// Word (or two-word form) -> its `pair * 2 + side` ids.
fn antonym_index() -> &'static HashMap<&'static str, Vec<u16>> {
    static INDEX: OnceLock<HashMap<&'static str, Vec<u16>>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index: HashMap<&'static str, Vec<u16>> = HashMap::new();
        for (pair, (a, b)) in ANTONYMS.iter().enumerate() {
            for (side, words) in [a, b].into_iter().enumerate() {
                for w in words.iter() {
                    index.entry(*w).or_default().push((pair * 2 + side) as u16);
                }
            }
        }
        index
    })
}

fn polar_words(tokens: &[Token]) -> BTreeSet<u16> {
    let index = antonym_index();
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
/// not the word.
fn antonym_flip(a: &[u16], b: &[u16]) -> bool {
    let has = |set: &[u16], id: u16| set.binary_search(&id).is_ok();
    a.iter().any(|&id| !has(a, id ^ 1) && has(b, id ^ 1) && !has(b, id))
}

// -------------------------------------------------------------- encoding

fn push_list<'a>(out: &mut String, items: impl Iterator<Item = &'a str>) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        for c in item.chars() {
            match c {
                '%' | ';' | ',' => out.push_str(&format!("%{:02X}", c as u32)),
                _ => out.push(c),
            }
        }
    }
}

fn parse_list(s: &str) -> Option<Vec<String>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(unescape).collect()
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            let code = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 2)?;
            out.push(char::from_u32(code)?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) -> bool {
        let (fa, fb) = (Fingerprint::of(a), Fingerprint::of(b));
        let ab = fa.compatible(&fb);
        assert_eq!(ab, fb.compatible(&fa), "asymmetric: {a:?} / {b:?}");
        ab
    }

    #[test]
    fn negation_differs() {
        assert!(!same("Which foods contain gluten?", "Which foods don't contain gluten?"));
        assert!(!same("Is Pluto a planet?", "Why is Pluto not a planet?"));
        assert!(!same("Recommend songs with lyrics", "Recommend songs without lyrics"));
        assert!(!same("Which animals can swim?", "Which animals cannot swim?"));
        assert!(!same("Run the container as root", "Run the container as a non-root user"));
        assert!(!same("Why should I always use semicolons?", "Why should I never use semicolons?"));
    }

    #[test]
    fn negation_agrees() {
        assert!(same("Why won't my iPhone charge?", "My iPhone isn't charging, why?"));
        assert!(same("I can't log in to my account.", "I'm unable to log into my account."));
        assert!(same("Print without a newline", "print with no newline"));
        assert!(same("Is it not only fast but cheap?", "Is it fast and cheap?"));
    }

    #[test]
    fn antonyms_differ() {
        assert!(!same("Is it safe to swim after eating?", "Is it dangerous to swim after eating?"));
        assert!(!same("How do I increase the font size?", "How do I decrease the font size?"));
        assert!(!same("Should I stretch before running?", "Should I stretch after running?"));
        assert!(!same("How do I turn on Bluetooth?", "How do I turn off Bluetooth?"));
        assert!(!same("Sort in ascending order", "Sort in descending order"));
        assert!(!same("What is the largest planet?", "What is the smallest planet?"));
    }

    #[test]
    fn antonyms_agree() {
        // Both sides on one side of the pair, or one side silent.
        assert!(same("How do I delete my account?", "I want to remove my account."));
        assert!(same("How can I lower my blood pressure?", "How can I reduce high blood pressure?"));
        assert!(same("What's the fastest way to thaw chicken?", "How can I defrost chicken quickly?"));
        assert!(same("How do I turn off notifications?", "How can I disable notifications?"));
    }

    #[test]
    fn numbers() {
        assert!(!same("Convert 5 km to miles", "Convert 8 km to miles"));
        assert!(same("Convert 5 kilometers to miles", "How many miles is five kilometers?"));
        assert!(same("What is the square root of 144?", "square root of one hundred forty-four"));
        assert!(same("laptop under 1000 dollars", "laptop under $1,000"));
        assert!(same("top 10 rows", "the first ten rows"));
        assert!(same("the 2nd law of thermodynamics", "the second law of thermodynamics"));
        assert!(same("run a 10K", "run a 10,000 meter race"));
        assert!(same("in 2024", "in two thousand twenty four"));
        assert!(same("Give me one example", "Give me an example"));
        assert!(!same("Python 3.11", "Python 3.12"));
        assert!(!same("Is 5 hours of sleep enough?", "Is eight hours of sleep enough?"));
        assert!(!same("the 2nd largest country", "the third largest country"));
        assert!(!same("a 3-year-old", "a 5-year-old"));
        assert!(!same("a twelve-year-old boy", "a sixteen-year-old boy"));
        assert!(!same("lose 1 pound a week", "lose 2 pounds a week"));
        let fp = Fingerprint::of("two million three hundred thousand and five");
        assert_eq!(fp.numbers, vec!["2300005".to_string()]);
    }

    #[test]
    fn entities() {
        assert!(!same("What is the capital of France?", "What is the capital of Spain?"));
        assert!(!same("How do I reverse a string in python?", "How do I reverse a string in rust?"));
        assert!(!same("How do I use useEffect?", "How do I use useState?"));
        assert!(!same("How tall is Mount Everest?", "How tall is K2?"));
        assert!(!same("how to center a div in tailwind", "how to center a div in bootstrap"));
        assert!(!same("exchange rate from USD to EUR", "exchange rate from USD to GBP"));
        assert!(!same("What does \"foo\" mean?", "What does \"bar\" mean?"));
        // Case and possessives don't matter.
        assert!(same("What is the population of France?", "what's france's population"));
        assert!(same("How do I exit Vim?", "how do you quit vim"));
        assert!(same("What is a REST API?", "Can you explain REST APIs?"));
    }

    #[test]
    fn aliases() {
        assert!(same("population of the US", "How many people live in the United States?"));
        assert!(same("renew a US passport", "renew a passport in the USA"));
        assert!(same("weather in NYC", "weather in New York City"));
        assert!(same("deploy to k8s", "deploy on Kubernetes"));
        assert!(same("What is a closure in JS?", "Explain closures in JavaScript"));
        assert!(same("Who leads the UK?", "Who leads the United Kingdom?"));
        assert!(same("When did WWII end?", "What year did World War II end?"));
        assert!(same("HTTP request in Go", "HTTP request using Golang"));
        assert!(same("connect to Wi-Fi", "connect to wifi"));
        assert!(same("train from SF to LA", "train from San Francisco to Los Angeles"));
        // "us" the pronoun is not the country.
        assert!(same("Can you tell us the time?", "Tell me the time"));
    }

    #[test]
    fn encode_round_trips() {
        for text in [
            "",
            "Is it safe to swim after eating?",
            "What does \"a, b; 100%\" mean in Python 3.12 on the US server?",
            "Convert 5 km to miles without a calculator",
        ] {
            let fp = Fingerprint::of(text);
            let encoded = fp.encode();
            assert_eq!(Fingerprint::decode(&encoded), Some(fp), "{encoded}");
        }
        assert_eq!(Fingerprint::decode(&Fingerprint::default().encode()), Some(Fingerprint::default()));
        for bad in ["", "g1", "g2;0;;;;", "g1;2;;;;", "g1;0;;x;;", "g1;0;;;;zz", "g1;0;%G1;;;"] {
            assert_eq!(Fingerprint::decode(bad), None, "{bad}");
        }
    }
}
