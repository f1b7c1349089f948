//! The smallest character splices that turn one text into another.
//!
//! Splicing only what changed (instead of replacing the whole text) is what
//! lets a partner's concurrent edit elsewhere in the same field survive the
//! merge. The common prefix and suffix are trimmed first (linear time), and
//! the middle is diffed per character with a time budget, so replacing a
//! long text never stalls an edit: past the budget the diff is coarser,
//! never wrong.

use std::time::Duration;

use similar::{Algorithm, ChangeTag, TextDiff};

/// How long the character diff of the changed middle may take.
const BUDGET: Duration = Duration::from_millis(100);

/// Splices `(position, chars to delete, text to insert)` in Unicode code
/// points, to be applied one after another in the order given (each
/// position counts in the text as the earlier splices left it).
pub(crate) fn splices(old: &str, new: &str) -> Vec<(usize, usize, String)> {
    if old == new {
        return Vec::new();
    }
    let old_chars: Vec<char> = old.chars().collect();
    let new_chars: Vec<char> = new.chars().collect();
    let prefix = old_chars
        .iter()
        .zip(&new_chars)
        .take_while(|(a, b)| a == b)
        .count();
    let max_suffix = old_chars.len().min(new_chars.len()) - prefix;
    let suffix = old_chars
        .iter()
        .rev()
        .zip(new_chars.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    let old_mid: String = old_chars[prefix..old_chars.len() - suffix].iter().collect();
    let new_mid: String = new_chars[prefix..new_chars.len() - suffix].iter().collect();
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(BUDGET)
        .diff_chars(&old_mid, &new_mid);
    let mut out: Vec<(usize, usize, String)> = Vec::new();
    let mut pos = prefix;
    // Walk the changes in order, merging runs into one splice each.
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Equal => pos += change.value().chars().count(),
            ChangeTag::Delete => {
                let n = change.value().chars().count();
                match out.last_mut() {
                    Some((p, d, ins)) if *p + ins.chars().count() == pos && ins.is_empty() => {
                        *d += n
                    }
                    _ => out.push((pos, n, String::new())),
                }
            }
            ChangeTag::Insert => {
                match out.last_mut() {
                    Some((p, _, ins)) if *p + ins.chars().count() == pos => {
                        ins.push_str(change.value())
                    }
                    _ => out.push((pos, 0, change.value().to_owned())),
                }
                pos += change.value().chars().count();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies splices in order, as Automerge will.
    fn apply(old: &str, splices: &[(usize, usize, String)]) -> String {
        let mut chars: Vec<char> = old.chars().collect();
        for (pos, delete, insert) in splices {
            chars.splice(*pos..*pos + *delete, insert.chars());
        }
        chars.into_iter().collect()
    }

    #[test]
    fn splices_turn_old_into_new_touching_only_what_changed() {
        let old = "We meet. We share.";
        let new = "We meet monthly. We share openly.";
        let s = splices(old, new);
        assert_eq!(apply(old, &s), new);
        assert!(s.iter().all(|(_, d, _)| *d == 0), "pure insertions: {s:?}");
        assert!(splices("same", "same").is_empty());
        assert_eq!(
            apply("héllo 🎉", &splices("héllo 🎉", "hello 🎉!")),
            "hello 🎉!"
        );
    }

    #[test]
    fn replacing_a_long_text_is_fast_and_right() {
        let old = "template prompt text ".repeat(50);
        let new: String = (0..120_000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let started = std::time::Instant::now();
        let s = splices(&old, &new);
        assert_eq!(apply(&old, &s), new);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    proptest::proptest! {
        #[test]
        fn any_edit_round_trips(old in "[a-cé🎉 ]{0,40}", new in "[a-cé🎉 ]{0,40}") {
            proptest::prop_assert_eq!(apply(&old, &splices(&old, &new)), new);
        }
    }
}
