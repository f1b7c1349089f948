//! The roster version a change was made under, carried in the change's
//! commit message so the change hash covers it.

use automerge::ChangeHash;

/// The line that carries the claim, after any human-readable message.
const PREFIX: &str = "accord-roster:";
const MAX_CLAIM_HEADS: usize = 64;

/// The commit message for a change made under roster version `roster_heads`.
pub fn with_claim(message: &str, roster_heads: &[ChangeHash]) -> String {
    let mut heads: Vec<String> = roster_heads.iter().map(|h| h.to_string()).collect();
    heads.sort();
    let line = format!("{PREFIX}{}", heads.join(","));
    if message.is_empty() {
        line
    } else {
        format!("{message}\n{line}")
    }
}

/// The roster heads a message claims, or `None` when it makes no valid claim.
pub fn parse(message: Option<&str>) -> Option<Vec<ChangeHash>> {
    let line = message?.lines().rev().find(|l| l.starts_with(PREFIX))?;
    let list = &line[PREFIX.len()..];
    if list.is_empty() {
        return None;
    }
    let heads: Option<Vec<ChangeHash>> = list
        .split(',')
        .take(MAX_CLAIM_HEADS + 1)
        .map(|h| h.parse().ok())
        .collect();
    heads.filter(|h| h.len() <= MAX_CLAIM_HEADS)
}

/// The human part of a message, without the claim line.
pub fn human(message: &str) -> &str {
    match message.rfind(PREFIX) {
        Some(at) => message[..at].trim_end(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip() {
        let heads = vec![ChangeHash([1; 32]), ChangeHash([2; 32])];
        let message = with_claim("Edited purpose", &heads);
        assert_eq!(parse(Some(&message)), Some(heads.clone()));
        assert_eq!(human(&message), "Edited purpose");
        let bare = with_claim("", &heads);
        assert_eq!(parse(Some(&bare)), Some(heads));
        assert_eq!(human(&bare), "");
    }

    #[test]
    fn bad_claims_are_none() {
        assert_eq!(parse(None), None);
        assert_eq!(parse(Some("Edited purpose")), None);
        assert_eq!(parse(Some("accord-roster:")), None);
        assert_eq!(parse(Some("accord-roster:zz")), None);
    }
}
