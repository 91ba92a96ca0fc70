//! Roles: the same words with their roles swapped ask something else
//! ("convert 5 km to miles" / "convert 5 miles to km", "is A bigger than
//! B" / "is B bigger than A", "did A beat B" / "did B beat A").
//!
//! Two signals, both read from the content words (the words of the word set,
//! lightly stemmed: "running" = "run", "acquired" = "acquire"):
//!
//! - **marked roles**: the word a role marker governs ("to", "into", "from",
//!   "than", "over", "before", "after", "by", "against": `words/markers.txt`),
//!   the first content word after it or an object pronoun ("to me"). Two
//!   questions differ when, for a role both use, one gives it a word `x` the
//!   other does not, the other gives it a word `y` the first does not, and
//!   each mentions the other's word elsewhere: `x` and `y` traded places.
//!   A word the other side merely lacks, or a role one side does not use,
//!   proves nothing ("how many km is 5 miles" / "convert 5 miles to km").
//! - **order**: three shared content words in one order on one side and in
//!   the reverse order on the other ("Germany beat Brazil" / "Brazil beat
//!   Germany", "how many km is 5 miles" / "how many miles is 5 km"). Moving
//!   a clause to the front only rotates the order ("from Paris to Rome, how
//!   far" / "how far from Paris to Rome") and keeps it; words joined by
//!   "and", "or" or "vs" share a place ("TCP and UDP" = "UDP and TCP"); and a
//!   passive agent (the word after "by") is left out, since "A acquired B" /
//!   "B was acquired by A" reverses the order and keeps the roles.
//!
//! - **two words**: two questions of the same two content words and no
//!   marker, in the other order ("is a square a rectangle" / "is a
//!   rectangle a square").
//!
//! The speaker and the listener are implied by every question, so "to me"
//! trades places with "to a dealer" when the dealer moves elsewhere.
//!
//! It cannot see roles swapped with no marker among more words that keep
//! their order ("legal to buy alcohol for a minor" / "legal for a minor to
//! buy alcohol"), nor a
//! swap said with other words ("lend to" / "borrow from"); and it refuses
//! some true paraphrases that move a marked word ("map host port 8080 to
//! container port 80" / "map container port 80 to host port 8080") or
//! reverse a compound ("python list reverse" / "reverse a list in python").

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use super::encoding::{parse_list, push_list};
use super::entities::{is_stopword, word_key};
use super::tokens::Token;
use super::words;

/// Content words kept in order; a long text's tail is not compared.
const MAX_ORDER: usize = 40;

/// Persons every question implies: the one asking and the one asked.
const IMPLICIT_PERSONS: [&str; 2] = ["me", "you"];

/// How far after a marker its object may sit (skipping function words).
const OBJECT_REACH: usize = 4;

/// Marker form -> its role name.
static MARKERS: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for line in words::lines(include_str!("words/markers.txt")) {
        let (role, forms) = line.split_once(':').expect("markers.txt: `role: forms`");
        for form in forms.split_whitespace() {
            assert!(map.insert(form, role.trim()).is_none(), "markers.txt: `{form}` is listed twice");
        }
    }
    map
});

static SYMMETRIC: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words::word_set(include_str!("words/symmetric.txt")));

/// Pronoun form -> its person's key, and the object forms ("me", not "my").
static PRONOUNS: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for line in words::lines(include_str!("words/object_pronouns.txt")) {
        let (key, forms) = line.split_once(':').expect("object_pronouns.txt: `key: forms`");
        for form in forms.split_whitespace() {
            map.insert(form, key.trim());
        }
    }
    map
});

/// Whether a pronoun form can be a marker's object: the key's own form.
fn object_pronoun(lower: &str) -> Option<&'static str> {
    PRONOUNS.get(lower).copied().filter(|key| *key == lower)
}

/// A question's roles: its content words in order and what its markers govern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Roles {
    /// Stemmed content words in order; an item starting with `&` shares the
    /// previous item's place.
    order: Vec<String>,
    /// `role/word` for each marker's object, sorted and deduplicated.
    marked: Vec<String>,
    /// Person keys of the pronouns said ("me" for "I", "my", "me").
    persons: Vec<String>,
}

/// A key lightly stemmed: "-ing" and "-ed" cut, a doubled last consonant
/// undone ("running" = "run"), a final "e" dropped ("acquire" =
/// "acquired"). Only used to compare words here.
fn stem(key: &str) -> String {
    if !key.chars().all(|c| c.is_ascii_lowercase()) {
        return key.to_string();
    }
    let mut s = key.to_string();
    for suffix in ["ing", "ed"] {
        if s.len() > suffix.len() + 2 && s.ends_with(suffix) {
            s.truncate(s.len() - suffix.len());
            let b = s.as_bytes();
            let n = b.len();
            if n > 2 && b[n - 1] == b[n - 2] && !b"aeioulsz".contains(&b[n - 1]) {
                s.pop();
            }
            break;
        }
    }
    if s.len() > 3 && s.ends_with('e') {
        s.pop();
    }
    s
}

/// A token's word here: its key stemmed, an all-caps word kept whole
/// ("HTTPS" is not the plural of "HTTP").
fn role_word(t: &Token) -> String {
    if t.raw.len() > 2 && t.raw.ends_with('S') && t.raw.chars().all(|c| c.is_ascii_uppercase()) {
        return t.lower.clone();
    }
    stem(&word_key(t))
}

fn is_content(t: &Token) -> bool {
    t.alias || !is_stopword(&t.lower)
}

/// The roles of a question's tokens (after aliasing).
pub(super) fn roles(tokens: &[Token]) -> Roles {
    let markers = &*MARKERS;
    let mut order = Vec::new();
    let mut marked = BTreeSet::new();
    let mut persons = BTreeSet::new();
    let mut join = false;
    for (i, t) in tokens.iter().enumerate() {
        let lower = t.lower.as_str();
        if let Some(person) = PRONOUNS.get(lower) {
            persons.insert((*person).to_string());
        }
        if lower == "of" || t.raw.ends_with("'s") {
            // "the population of France" = "France's population": an order
            // that may turn round; kept as a role with no word, which only
            // keeps the two-word check off.
            marked.insert("of/".to_string());
        }
        if SYMMETRIC.contains(lower) {
            join = !order.is_empty();
            continue;
        }
        if let Some(role) = markers.get(lower) {
            if let Some(object) = object_of(&tokens[i + 1..]) {
                marked.insert(format!("{role}/{object}"));
            }
            join = false;
            continue;
        }
        if t.starts_sentence {
            join = false;
        }
        if !is_content(t) || order.len() >= MAX_ORDER {
            continue;
        }
        let word = role_word(t);
        if word.is_empty() {
            continue;
        }
        order.push(if join { format!("&{word}") } else { word });
        join = false;
    }
    Roles { order, marked: marked.into_iter().collect(), persons: persons.into_iter().collect() }
}

/// A marker's object: the first content word or object pronoun after it, in
/// its sentence, before another marker.
fn object_of(after: &[Token]) -> Option<String> {
    for t in after.iter().take(OBJECT_REACH) {
        if t.starts_sentence || MARKERS.contains_key(t.lower.as_str()) {
            return None;
        }
        if let Some(person) = object_pronoun(&t.lower) {
            return Some(person.to_string());
        }
        if is_content(t) {
            let word = role_word(t);
            if !word.is_empty() {
                return Some(word);
            }
        }
    }
    None
}

impl Roles {
    /// Whether the question says `word` (a stemmed key or a person key);
    /// the speaker and the listener ("me", "you") are always there.
    fn says(&self, word: &str) -> bool {
        IMPLICIT_PERSONS.contains(&word)
            || self.order.iter().any(|w| w.strip_prefix('&').unwrap_or(w) == word)
            || self.persons.binary_search_by(|p| p.as_str().cmp(word)).is_ok()
    }

    /// The objects of `role`.
    fn objects<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.marked.iter().filter_map(move |m| m.split_once('/').filter(|(r, _)| *r == role).map(|(_, w)| w))
    }

    /// Each word's first place (words joined by "and" share one).
    fn places(&self) -> HashMap<&str, usize> {
        let mut places = HashMap::new();
        let mut place = 0;
        for (i, w) in self.order.iter().enumerate() {
            let word = match w.strip_prefix('&') {
                Some(word) => word,
                None => {
                    if i > 0 {
                        place += 1;
                    }
                    w.as_str()
                }
            };
            places.entry(word).or_insert(place);
        }
        places
    }

    /// The form stored in a fingerprint: `order|marked|persons`, each a list.
    pub(super) fn encode(&self, out: &mut String) {
        push_list(out, self.order.iter().map(String::as_str));
        out.push('|');
        push_list(out, self.marked.iter().map(String::as_str));
        out.push('|');
        push_list(out, self.persons.iter().map(String::as_str));
    }

    pub(super) fn decode(s: &str) -> Option<Roles> {
        let mut parts = s.split('|');
        let order = parse_list(parts.next()?)?;
        let marked = parse_list(parts.next()?)?;
        let persons = parse_list(parts.next()?)?;
        if parts.next().is_some()
            || order.len() > MAX_ORDER
            || !marked.iter().all(|m| m.contains('/'))
            || !marked.is_sorted()
            || !persons.is_sorted()
        {
            return None;
        }
        Some(Roles { order, marked, persons })
    }
}

/// Whether `a` and `b` hold the same words in swapped roles (symmetric).
pub(super) fn roles_swapped(a: &Roles, b: &Roles) -> bool {
    marked_swap(a, b) || order_reversed(a, b) || pair_reversed(a, b)
}

/// Two questions of the same two words and no marker (nor "of" or a
/// possessive), in the other order ("is a square a rectangle" / "is a
/// rectangle a square").
fn pair_reversed(a: &Roles, b: &Roles) -> bool {
    let pair = |r: &Roles| match &r.order[..] {
        [x, y] if r.marked.is_empty() && !y.starts_with('&') && x != y => Some((x.clone(), y.clone())),
        _ => None,
    };
    matches!((pair(a), pair(b)), (Some((x, y)), Some((v, w))) if x == w && y == v)
}

/// A role both use governs `x` on one side and `y` on the other, and each
/// side says the other's word.
fn marked_swap(a: &Roles, b: &Roles) -> bool {
    let roles: BTreeSet<&str> = a.marked.iter().filter_map(|m| m.split_once('/')).map(|(r, _)| r).collect();
    roles.into_iter().any(|role| {
        let only = |this: &Roles, that: &Roles| -> bool {
            this.objects(role).any(|x| !that.objects(role).any(|o| o == x) && that.says(x))
        };
        b.objects(role).next().is_some() && only(a, b) && only(b, a)
    })
}

/// Three shared words in one order on one side and reversed on the other,
/// a passive agent aside.
fn order_reversed(a: &Roles, b: &Roles) -> bool {
    let (pa, pb) = (a.places(), b.places());
    let agents: HashSet<&str> = a.objects("by").chain(b.objects("by")).collect();
    let shared: Vec<(usize, usize)> =
        pa.iter().filter(|(w, _)| !agents.contains(*w)).filter_map(|(w, &i)| pb.get(w).map(|&j| (i, j))).collect();
    // A middle word with one before it on side a that is after it on side b,
    // and one after it on side a that is before it on side b.
    shared.iter().any(|&(ia, ib)| {
        shared.iter().any(|&(xa, xb)| xa < ia && xb > ib) && shared.iter().any(|&(ya, yb)| ya > ia && yb < ib)
    })
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn stems() {
        for (a, b) in [("running", "run"), ("acquired", "acquire"), ("stretching", "stretch"), ("eating", "eat")] {
            assert_eq!(stem(a), stem(b), "{a} / {b}");
        }
        assert_eq!(stem("need"), "need");
        assert_eq!(stem("3.12"), "3.12");
    }
}
