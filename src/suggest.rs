//! "Did you mean …?" by edit distance.

/// Longer words get no suggestion: the edit distance costs the product of
/// the two lengths in time and memory (two 4000-character host names: 128 MB
/// and seconds, for each candidate).
const MAX_WORD: usize = 100;

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub fn closest<'a, I, S>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str> + 'a,
{
    let word_len = word.chars().count();
    if word_len > MAX_WORD {
        return None;
    }
    let lower = word.to_lowercase();
    let lower_len = lower.chars().count();
    let mut best: Option<(usize, String)> = None;
    for c in candidates {
        let c = c.as_ref();
        let limit = (word_len.max(c.chars().count()) / 3).max(1);
        let prefix = c.len() >= 3 && (c.starts_with(&lower) || lower.starts_with(c));
        let c_lower = c.to_lowercase();
        // The distance is at least the difference in length: skip those
        // that cannot be close without computing it.
        if !prefix && c_lower.chars().count().abs_diff(lower_len) > limit {
            continue;
        }
        let d = strsim::damerau_levenshtein(&lower, &c_lower);
        if (d <= limit || prefix) && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, c.to_string()));
        }
    }
    best.map(|(_, c)| c)
}

/// `Some("did you mean 'x'?")` for a near miss.
pub fn did_you_mean<'a, I, S>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str> + 'a,
{
    closest(word, candidates).map(|c| format!("did you mean '{c}'?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["dest", "src", "content", "mode"];
        assert_eq!(closest("dst", keys), Some("dest".into()));
        assert_eq!(closest("contnet", keys), Some("content".into()));
        assert_eq!(closest("zzzzzz", keys), None);
        assert_eq!(closest("shel", ["shell", "command"]), Some("shell".into()));
    }

    #[test]
    fn long_words_get_no_suggestion() {
        // Fuzzing: `--host` with a 400-character name beside hundreds of
        // such hosts spent seconds in the edit distance.
        let word = "x".repeat(MAX_WORD + 1);
        let near = format!("{word}y");
        assert_eq!(closest(&word, [near.as_str()]), None);
        let word = "x".repeat(MAX_WORD);
        let near = format!("{word}y");
        assert_eq!(closest(&word, [near.as_str()]), Some(near.clone()));
        // Far in length, not computed, still not suggested.
        assert_eq!(
            closest("abc", ["abcdefghijklmnop"]),
            Some("abcdefghijklmnop".into())
        );
        assert_eq!(closest("xyz", ["abcdefghijklmnop"]), None);
    }
}
