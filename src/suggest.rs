//! "Did you mean …?" by edit distance.

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub fn closest<'a, I, S>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str> + 'a,
{
    let lower = word.to_lowercase();
    let mut best: Option<(usize, String)> = None;
    for c in candidates {
        let c = c.as_ref();
        let d = strsim::damerau_levenshtein(&lower, &c.to_lowercase());
        let limit = (word.chars().count().max(c.chars().count()) / 3).max(1);
        let prefix = c.len() >= 3 && (c.starts_with(&lower) || lower.starts_with(c));
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
}
