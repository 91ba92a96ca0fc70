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
//! - **roles**: the same words in swapped roles ("convert 5 km to miles" /
//!   "5 miles to km", "A bigger than B" / "B bigger than A", "A beat B" /
//!   "B beat A"): what the role markers (to, from, than, over, before,
//!   after, by, against) govern, and the order of the content words (see
//!   `roles`). Reorderings that keep each word's role agree.
//!
//! What it cannot catch: swapped subjects that look like ordinary words
//! ("bake bread" / "bake cookies", "weather in seattle" / "in portland",
//! "measles" / "mumps"), which are left to the embedding threshold; roles
//! swapped without a marker or an order change ("to buy alcohol for a minor"
//! / "for a minor to buy alcohol"); the
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
//!
//! Module map: `fingerprint` (the fingerprint, its comparison and its text
//! form, with `encoding` for the lists in it); `tokens` (the tokeniser);
//! `aliases`, `numbers`, `negation`, `polarity` (antonyms), `entities` and
//! `roles`, one check each; `bloom` (the word set). The word lists are text files in
//! `words/`, read by `words` and parsed by each check on first use.

mod aliases;
mod bloom;
mod encoding;
mod entities;
mod fingerprint;
mod negation;
mod numbers;
mod polarity;
mod roles;
mod tokens;
mod words;

pub use fingerprint::Fingerprint;
