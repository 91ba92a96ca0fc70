//! Answer quality against a reference: ROUGE-L F1 over lower-cased word
//! tokens (longest common subsequence). Cheap and lexical: it rewards saying
//! the same things in the same order, not being right in other words; a
//! judge plugin's score is preferred when the gateway reports one.

/// Words, lower-cased; punctuation splits and is dropped.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(2000).map(str::to_lowercase).collect()
}

/// ROUGE-L F1 of `answer` against `reference`, in [0, 1].
pub fn rouge_l(answer: &str, reference: &str) -> f64 {
    let (a, r) = (tokens(answer), tokens(reference));
    if a.is_empty() || r.is_empty() {
        return 0.0;
    }
    // LCS length, one row at a time.
    let mut prev = vec![0u32; r.len() + 1];
    let mut row = vec![0u32; r.len() + 1];
    for x in &a {
        for (j, y) in r.iter().enumerate() {
            row[j + 1] = if x == y { prev[j] + 1 } else { row[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    let lcs = f64::from(prev[r.len()]);
    if lcs == 0.0 {
        return 0.0;
    }
    let (precision, recall) = (lcs / a.len() as f64, lcs / r.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use crate::bench::quality::rouge_l;

    #[test]
    fn identical_disjoint_and_partial() {
        assert!((rouge_l("The cat sat.", "the cat sat") - 1.0).abs() < 1e-9);
        assert_eq!(rouge_l("dogs bark", "the cat sat"), 0.0);
        // LCS "the cat" (2); precision 2/3, recall 2/4.
        let f = rouge_l("the cat ran", "the big cat sat");
        assert!((f - 2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5)).abs() < 1e-9, "{f}");
        assert_eq!(rouge_l("", "x"), 0.0);
    }
}
