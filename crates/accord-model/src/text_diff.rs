//! The smallest character splices that turn one text into another.
//!
//! Splicing only what changed (instead of replacing the whole text) is what
//! lets a partner's concurrent edit elsewhere in the same field survive the
//! merge. The common prefix and suffix are trimmed first (linear time), and
//! the middle is diffed per character, or per word when that would be too
//! much work, or replaced whole past that: replacing a long text never
//! stalls an edit, and the result is coarser, never wrong.
//!
//! The bound is on the size of the work, not on time: every replica and
//! every rerun of a simulation must make the same splices for the same
//! texts, however busy the machine is.

use similar::{Algorithm, ChangeTag, TextDiff};

/// Most `old tokens × new tokens` a diff may face (Myers' worst case is
/// proportional to it): about 2,000 × 2,000 characters.
const WORK_LIMIT: usize = 4_000_000;

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
    let (old_len, new_len) = (old_mid.chars().count(), new_mid.chars().count());
    if old_len.saturating_mul(new_len) > WORK_LIMIT {
        let words = |t: &str| t.split_inclusive(char::is_whitespace).count();
        if words(&old_mid).saturating_mul(words(&new_mid)) > WORK_LIMIT {
            return vec![(prefix, old_len, new_mid)];
        }
        let diff = TextDiff::configure()
            .algorithm(Algorithm::Myers)
            .diff_words(&old_mid, &new_mid);
        return merge_changes(&diff, prefix);
    }
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .diff_chars(&old_mid, &new_mid);
    merge_changes(&diff, prefix)
}

/// Turns a diff of the middle (which starts at code point `prefix`) into
/// splices, merging runs into one splice each.
fn merge_changes<'a>(
    diff: &TextDiff<'a, 'a, 'a, str>,
    prefix: usize,
) -> Vec<(usize, usize, String)> {
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
    fn replacing_a_long_text_is_bounded_and_right() {
        let old = "template prompt text ".repeat(150);
        let new: String = (0..120_000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let s = splices(&old, &new);
        assert_eq!(apply(&old, &s), new);
        assert_eq!(
            s.len(),
            1,
            "past the work limit the middle is replaced whole"
        );
        assert_eq!(
            s,
            splices(&old, &new),
            "the same texts give the same splices"
        );
    }

    #[test]
    fn long_texts_with_words_changed_are_diffed_by_word() {
        let old = "alpha beta gamma delta ".repeat(120);
        let new = old
            .replacen("gamma", "GAMMA", 1)
            .replacen("delta", "DELTA", 100);
        let s = splices(&old, &new);
        assert_eq!(apply(&old, &s), new);
        assert!(
            s.len() > 1,
            "word-level splices, not one replacement: {}",
            s.len()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_edit_round_trips(old in "[a-cé🎉 ]{0,40}", new in "[a-cé🎉 ]{0,40}") {
            proptest::prop_assert_eq!(apply(&old, &splices(&old, &new)), new);
        }
    }
}
