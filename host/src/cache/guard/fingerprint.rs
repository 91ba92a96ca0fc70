//! A question's [`Fingerprint`]: what must agree between two questions for
//! one's cached answer to serve the other, and its text form for Redis.
//!
//! [`Fingerprint::of`] tokenises once, folds aliases, then asks each check
//! (numbers, negation, polarity, entities) for its part and fills the word
//! set; [`Fingerprint::compatible`] compares two. The checks themselves, and
//! what each catches and misses, live in the sibling modules; the module
//! `guard` says what the whole guard cannot catch.

use std::collections::BTreeSet;

use super::aliases::apply_aliases;
use super::bloom::{BLOOM_WORDS, WordSet, bloom_contains, bloom_insert};
use super::encoding::{parse_list, push_list};
use super::entities::{is_entity, is_stopword, word_key};
use super::negation::negation_cues;
use super::numbers::numbers;
use super::polarity::{antonym_flip, polar_words};
use super::roles::{Roles, roles, roles_swapped};
use super::tokens::tokenize;

/// Version tag of [`Fingerprint::encode`]'s format. "g1" had no roles: a
/// stored "g1" fingerprint does not decode, so its entry is not loaded into
/// the semantic index (its exact-cache entry still serves).
const ENCODING_TAG: &str = "g2";

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
    words: WordSet,
    /// Content words in order and what the role markers govern.
    roles: Roles,
}

impl Fingerprint {
    pub fn of(text: &str) -> Fingerprint {
        let (tokens, quotes) = tokenize(text);
        let (tokens, at) = apply_aliases(tokens);

        let mut entities = BTreeSet::new();
        let mut words = [0u64; BLOOM_WORDS];
        for t in &tokens {
            let key = word_key(t);
            if key.is_empty() || (!t.alias && is_stopword(&t.lower)) {
                continue;
            }
            bloom_insert(&mut words, &key);
            if is_entity(t) {
                entities.insert(key);
            }
        }
        for (start, end) in quotes {
            // The quote's tokens after aliasing merged phrases.
            let (start, end) = (at[start], at[end]);
            // Its content words: the stopwords are not in the word set.
            let phrase: Vec<String> = tokens[start..end]
                .iter()
                .filter(|t| t.alias || !is_stopword(&t.lower))
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
            roles: roles(&tokens),
        }
    }

    /// Whether an answer cached for `self` may be served for `other`.
    pub fn compatible(&self, other: &Fingerprint) -> bool {
        self.negated == other.negated
            && self.numbers == other.numbers
            && !antonym_flip(&self.polar, &other.polar)
            && self.entities.iter().all(|e| other.mentions(e))
            && other.entities.iter().all(|e| self.mentions(e))
            && !roles_swapped(&self.roles, &other.roles)
    }

    /// A compact string form for storage (e.g. in Redis) and its parser;
    /// round-trips. Layout: `g2;<negated 0|1>;<numbers>;<polar>;<entities>;
    /// <words as hex>;<roles>`, lists comma-separated, `%`, `;` and `,` in
    /// items percent-escaped; the roles are three lists joined by `|`.
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
        out.push(';');
        self.roles.encode(&mut out);
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
        let roles = Roles::decode(parts.next()?)?;
        if parts.next().is_some() || hex.len() != BLOOM_WORDS * 16 || !hex.is_ascii() {
            return None;
        }
        let mut words = [0u64; BLOOM_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u64::from_str_radix(&hex[i * 16..(i + 1) * 16], 16).ok()?;
        }
        Some(Fingerprint { numbers, negated, polar, entities, words, roles })
    }

    /// Whether this question names `entity`, as an entity or as plain words.
    fn mentions(&self, entity: &str) -> bool {
        self.entities.binary_search_by(|e| e.as_str().cmp(entity)).is_ok()
            || entity.split(' ').all(|w| bloom_contains(&self.words, w))
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::guard::fingerprint::Fingerprint;

    fn same(a: &str, b: &str) -> bool {
        let (fa, fb) = (Fingerprint::of(a), Fingerprint::of(b));
        let ab = fa.compatible(&fb);
        assert_eq!(ab, fb.compatible(&fa), "asymmetric: {a:?} / {b:?}");
        ab
    }

    #[test]
    fn number_words_saturate_instead_of_overflowing() {
        // The largest number, scaled, then continued by an ordinal.
        let f = Fingerprint::of("18446744073709551615 hundred ninety first");
        assert!(f.numbers.iter().any(|n| n == &format!("#{}", u64::MAX)), "{:?}", f.numbers);
        assert!(same("the 5th of 18446744073709551615 thousand", "the 5th of 18446744073709551615 thousand"));
    }

    #[test]
    fn quotes_after_a_merged_phrase_keep_their_words() {
        // "machine learning" becomes one alias token before the quote's
        // range is read: the range must follow it.
        let f = Fingerprint::of("Explain machine learning \"gradient\" in one line");
        assert!(f.entities.iter().any(|e| e == "gradient"), "{:?}", f.entities);
        assert!(same("What is machine learning \"overfitting\"?", "What is machine learning \"overfitting\"?"));
        assert!(!same("Define machine learning \"bias\"", "Define machine learning \"variance\""));
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
    fn swapped_roles_differ() {
        assert!(!same("convert 5 miles to km", "convert 5 km to miles"));
        assert!(!same("How many km is 5 miles?", "How many miles is 5 km?"));
        assert!(!same("Is Canada bigger than Russia?", "Is Russia bigger than Canada?"));
        assert!(!same("Should I stretch before running?", "Should I run before stretching?"));
        assert!(!same("Did Germany beat Brazil?", "Did Brazil beat Germany?"));
        assert!(!same("Redirect HTTP to HTTPS", "Redirect HTTPS to HTTP"));
        assert!(!same("Can I gift stock to my son?", "Can my son gift stock to me?"));
        assert!(!same("Is a square a rectangle?", "Is a rectangle a square?"));
    }

    #[test]
    fn reordered_roles_agree() {
        assert!(same("convert 5 miles to km", "How many km is 5 miles?"));
        assert!(same("From Paris to Rome, how far is it?", "How far is it from Paris to Rome?"));
        assert!(same("Before running, should I stretch?", "Should I stretch before running?"));
        assert!(same("Did Microsoft acquire GitHub?", "Was GitHub acquired by Microsoft?"));
        assert!(same("difference between TCP and UDP", "UDP vs TCP difference"));
        assert!(same("Is Venus closer to the Sun than Earth?", "Compared to Earth, is Venus closer to the Sun?"));
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
        // A "g1" fingerprint (before roles) is not read.
        let old = Fingerprint::default().encode().replacen("g2", "g1", 1);
        let old = old.rsplit_once(';').map(|(head, _)| head.to_string()).unwrap_or_default();
        assert_eq!(Fingerprint::decode(&old), None, "{old}");
        for bad in
            ["", "g2", "g1;0;;;;", "g2;2;;;;;||", "g2;0;;x;;;||", "g2;0;;;;zz;||", "g2;0;%G1;;;;||", "g2;0;;;;;|"]
        {
            assert_eq!(Fingerprint::decode(bad), None, "{bad}");
        }
    }
}
