//! Exported copies of an agreement: the Markdown and the printable page.
//!
//! Both end with a sign-off block (who signed which version and when, with
//! fingerprints and the full version, its change hashes) and the comments.
//! The Markdown also carries the machine-readable record (see
//! [`Workspace::export_record`]), so `accord verify` checks a copy against
//! any partner's replica: its body must be the model's plain rendering,
//! followed by [`SIGNOFF_HEADING`]. The CLI and the web page both export
//! through here, so their copies are the same.

use accord_model::markdown::{self, RenderOptions};
use accord_model::{Role, join_heads};

use crate::WorkspaceError;
use crate::audit::SIGNOFF_HEADING;
use crate::trust::{CommentView, MemberStatus, SignOffState};
use crate::workspace::Workspace;

impl Workspace {
    /// The agreement as Markdown, with its sign-off block, comments and record.
    pub fn export_markdown(&self, id: &str) -> Result<String, WorkspaceError> {
        let (view, roster) = self.view(id)?;
        let mut text = markdown::render(&view, &roster, &RenderOptions::default());
        text.push_str(&SignOffBlock::new(self, id)?.markdown());
        text.push_str(&comments_markdown(&self.comments(id)?));
        text.push_str(&self.export_record(id)?);
        Ok(text)
    }

    /// The agreement as a printable page, with its sign-off block and comments.
    pub fn export_html(&self, id: &str) -> Result<String, WorkspaceError> {
        let (view, roster) = self.view(id)?;
        let page = markdown::render_html(&view, &roster, &RenderOptions::default());
        let block = SignOffBlock::new(self, id)?.html() + &comments_html(&self.comments(id)?);
        // Before the footer (which names the version), inside the page.
        Ok(match page.find("<footer>") {
            Some(at) => format!("{}{block}{}", &page[..at], &page[at..]),
            None => page.replacen("</body>", &format!("{block}</body>"), 1),
        })
    }
}

/// The sign-off state of one agreement, as printed.
struct SignOffBlock {
    /// The version this copy shows (its heads, comma-separated hex).
    version: String,
    members: Vec<MemberStatus>,
}

/// One member's line: name, fingerprint, and what they signed.
struct Line {
    name: String,
    fingerprint: String,
    state: String,
    /// The version signed and the statement, for those who signed.
    signed: Option<(String, String)>,
}

impl SignOffBlock {
    fn new(ws: &Workspace, id: &str) -> Result<Self, WorkspaceError> {
        let (view, _) = ws.view(id)?;
        let mut heads = view.heads.clone();
        heads.sort();
        Ok(Self {
            version: heads.join(","),
            members: ws.status(id)?,
        })
    }

    fn lines(&self) -> Vec<Line> {
        self.members
            .iter()
            .map(|m| {
                let state = match (&m.state, &m.signoff) {
                    (SignOffState::Current, Some(s)) => {
                        format!("signed this version on {}", time(s.at))
                    }
                    (SignOffState::Earlier, Some(s)) => format!(
                        "signed an earlier version on {}; the text has changed since",
                        time(s.at)
                    ),
                    _ if m.role == Role::DecisionMaker => "has not signed".to_owned(),
                    _ => format!("{} (does not sign)", m.role),
                };
                Line {
                    name: m.name.clone(),
                    fingerprint: m.key.fingerprint().to_string(),
                    state,
                    signed: m
                        .signoff
                        .as_ref()
                        .map(|s| (join_heads(&s.heads), s.statement.clone())),
                }
            })
            .collect()
    }

    fn verdict(&self) -> &'static str {
        let mut deciders = self
            .members
            .iter()
            .filter(|m| m.role == Role::DecisionMaker)
            .peekable();
        let any = deciders.peek().is_some();
        if any && deciders.all(|m| m.state == SignOffState::Current) {
            "Every decision maker has signed this exact version."
        } else {
            "Not every decision maker has signed this version."
        }
    }

    fn markdown(&self) -> String {
        let mut out = format!(
            "\n{SIGNOFF_HEADING}\n\n{}\n\nThis copy is version `{}`.\n\n",
            self.verdict(),
            self.version
        );
        for line in self.lines() {
            out.push_str(&format!(
                "- **{}** (fingerprint `{}`): {}",
                line.name, line.fingerprint, line.state
            ));
            if let Some((version, statement)) = &line.signed {
                out.push_str(&format!(", version `{version}`: \"{statement}\""));
            }
            out.push('\n');
        }
        out
    }

    fn html(&self) -> String {
        let mut rows = String::new();
        for line in self.lines() {
            let (version, statement) = match &line.signed {
                Some((v, s)) => (
                    format!("<code>{}</code>", escape(v)),
                    format!("“{}”", escape(s)),
                ),
                None => (String::new(), String::new()),
            };
            rows.push_str(&format!(
                "<tr><th scope=\"row\">{}</th><td><code>{}</code></td><td>{}</td><td class=\"version\">{version}</td><td>{statement}</td></tr>\n",
                escape(&line.name),
                escape(&line.fingerprint),
                escape(&line.state),
            ));
        }
        format!(
            "<section class=\"signoff\" aria-labelledby=\"signoff-h\">\n<h2 id=\"signoff-h\">Sign-off</h2>\n<p>{}</p>\n<p>This copy is version <code class=\"version\">{}</code>.</p>\n<table>\n<thead><tr><th scope=\"col\">Organisation</th><th scope=\"col\">Fingerprint</th><th scope=\"col\">Sign-off</th><th scope=\"col\">Version signed</th><th scope=\"col\">Statement</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n<style>.signoff table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }} .signoff th, .signoff td {{ text-align: left; vertical-align: top; border-bottom: 1px solid #ccc; padding: 0.3rem; }} .signoff .version {{ word-break: break-all; font-size: 0.75rem; }}</style>\n</section>\n",
            self.verdict(),
            escape(&self.version)
        )
    }
}

/// The comments of an agreement as a Markdown section (empty when there are none).
pub fn comments_markdown(comments: &[CommentView]) -> String {
    if comments.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n## Comments\n\n");
    for c in comments {
        out.push_str(&format!(
            "- **{}** on `{}`, {}",
            c.author_name,
            c.comment.field,
            time(c.comment.created)
        ));
        if let Some(by) = &c.resolved_by {
            out.push_str(&format!(" (resolved by {by})"));
        }
        out.push_str(": ");
        if let Some(quote) = &c.comment.quote {
            out.push_str(&format!("> \"{quote}\" "));
        }
        out.push_str(&c.comment.text);
        out.push('\n');
    }
    out.push('\n');
    out
}

fn comments_html(comments: &[CommentView]) -> String {
    if comments.is_empty() {
        return String::new();
    }
    let mut items = String::new();
    for c in comments {
        let quote = c
            .comment
            .quote
            .as_ref()
            .map(|q| format!("<blockquote>{}</blockquote>", escape(q)))
            .unwrap_or_default();
        let resolved = c
            .resolved_by
            .as_ref()
            .map(|by| format!(" (resolved by {})", escape(by)))
            .unwrap_or_default();
        items.push_str(&format!(
            "<li><strong>{}</strong> on <code>{}</code>, {}{resolved}:{quote}<p>{}</p></li>\n",
            escape(&c.author_name),
            escape(&c.comment.field),
            time(c.comment.created),
            escape(&c.comment.text),
        ));
    }
    format!(
        "<section class=\"comments\" aria-labelledby=\"comments-h\">\n<h2 id=\"comments-h\">Comments</h2>\n<ul>\n{items}</ul>\n</section>\n"
    )
}

/// A time as printed: minutes in UTC, the same on every partner's copy.
fn time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}

/// Partners' words as text, never markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
