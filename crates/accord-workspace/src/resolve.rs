//! Finding a partnership or document from what a person typed: an id, an
//! id prefix, or a case-insensitive prefix of its name.

/// Why a selector did not name exactly one thing.
pub(crate) enum Miss {
    None,
    Many(String),
}

/// Picks the one item `selector` names. Exact matches (id or whole name)
/// win over prefixes, so "MOU" still works when "MOU 2027" also exists.
pub(crate) fn resolve<T>(
    selector: &str,
    items: Vec<T>,
    id: impl Fn(&T) -> String,
    name: impl Fn(&T) -> String,
) -> Result<T, Miss> {
    let wanted = selector.trim().to_lowercase();
    if wanted.is_empty() {
        return Err(Miss::None);
    }
    let exact = |t: &T| id(t) == wanted || name(t).to_lowercase() == wanted;
    let prefix = |t: &T| {
        (wanted.len() >= 4 && id(t).starts_with(&wanted))
            || name(t).to_lowercase().starts_with(&wanted)
    };
    let (exact_hits, rest): (Vec<T>, Vec<T>) = items.into_iter().partition(|t| exact(t));
    let hits = if exact_hits.is_empty() {
        rest.into_iter().filter(|t| prefix(t)).collect()
    } else {
        exact_hits
    };
    match hits.len() {
        0 => Err(Miss::None),
        1 => Ok(hits.into_iter().next().expect("one hit")),
        _ => Err(Miss::Many(
            hits.iter()
                .map(|t| format!("{:?} ({})", name(t), id(t)))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(selector: &str) -> Result<&'static str, String> {
        let items = vec![
            ("abcd1111", "Sharing Our Strengths"),
            ("abce2222", "Sharing Power"),
            ("ffff3333", "MOU"),
        ];
        resolve(selector, items, |t| t.0.to_owned(), |t| t.1.to_owned())
            .map(|t| t.0)
            .map_err(|m| match m {
                Miss::None => "none".to_owned(),
                Miss::Many(c) => c,
            })
    }

    #[test]
    fn ids_names_and_prefixes_resolve() {
        assert_eq!(pick("abcd1111"), Ok("abcd1111"));
        assert_eq!(pick("abcd"), Ok("abcd1111"));
        assert_eq!(pick("sharing our"), Ok("abcd1111"));
        assert_eq!(pick("mou"), Ok("ffff3333"));
    }

    #[test]
    fn ambiguity_names_the_candidates_and_misses_are_misses() {
        let many = pick("sharing").unwrap_err();
        assert!(many.contains("Sharing Our Strengths") && many.contains("Sharing Power"));
        assert_eq!(pick("abc"), Err("none".to_owned()));
        assert_eq!(pick(""), Err("none".to_owned()));
    }
}
