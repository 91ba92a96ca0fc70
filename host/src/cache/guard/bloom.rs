//! The fingerprint's word set: a 512-bit Bloom set of word keys.
//!
//! It answers "may this question contain this word?" with no false "no" and
//! a few false "yes" (more as a long text fills the set). The hash is
//! FNV-1a, stable across builds and processes, so a set stored in Redis
//! stays valid across restarts and replicas. Which words go in is up to the
//! fingerprint.

/// Words (of 64 bits) in the set.
pub(super) const BLOOM_WORDS: usize = 8;

/// A Bloom set of words.
pub(super) type WordSet = [u64; BLOOM_WORDS];

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The three bit positions of a word in the set.
fn bloom_bits(word: &str) -> [usize; 3] {
    let h = fnv1a(word);
    let bits = BLOOM_WORDS * 64;
    [(h % bits as u64) as usize, ((h >> 21) % bits as u64) as usize, ((h >> 42) % bits as u64) as usize]
}

pub(super) fn bloom_insert(set: &mut WordSet, word: &str) {
    for b in bloom_bits(word) {
        set[b / 64] |= 1 << (b % 64);
    }
}

pub(super) fn bloom_contains(set: &WordSet, word: &str) -> bool {
    bloom_bits(word).iter().all(|&b| set[b / 64] & (1 << (b % 64)) != 0)
}
