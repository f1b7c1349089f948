//! What a new agreement starts with, drawn from good practice in
//! partnership working: not a blank page, but the usual content a
//! partnership then adapts. Open questions stay as section prompts.

use crate::roster::RosterView;
use crate::schema::DocKind;
use crate::{Agreement, ModelError};

type Item = &'static [(&'static str, &'static str)];

const MOU_MILESTONES: &[Item] = &[
    &[
        ("title", "All partners sign this agreement"),
        ("status", "planned"),
    ],
    &[
        ("title", "First partnership review meeting"),
        ("status", "planned"),
    ],
];

const MOU_VARIATION: &str = "Any partner may propose a change in writing. Changes take effect once every decision maker has signed off the new version.";

const VALUES: &[Item] = &[
    &[
        ("name", "Equality"),
        (
            "description",
            "Every partner's voice carries equal weight, whatever its size or funding.",
        ),
    ],
    &[
        ("name", "Openness"),
        (
            "description",
            "We share information, plans and problems early and honestly.",
        ),
    ],
    &[
        ("name", "Respect"),
        (
            "description",
            "We value each partner's expertise, independence and ways of working.",
        ),
    ],
    &[
        ("name", "Accountability"),
        (
            "description",
            "We do what we say we will, and say early when we cannot.",
        ),
    ],
];

const GROUND_RULES: &[Item] = &[
    &[("text", "Treat all partners equally.")],
    &[("text", "Give all partners time to speak in meetings.")],
    &[(
        "text",
        "Listen to all opinions, and disagree with ideas, not people.",
    )],
    &[(
        "text",
        "Record decisions and share them with every partner within a week.",
    )],
    &[(
        "text",
        "Keep confidential what partners share in confidence.",
    )],
];

const DISPUTE_PURPOSE: &str = "Disagreements are normal in partnership working. This process helps partners resolve them early, fairly and in a way that keeps the partnership working.";

const DISPUTE_STEPS: &[Item] = &[
    &[
        ("title", "Talk it through"),
        (
            "what",
            "The people directly involved meet informally to understand each other's view and agree a way forward.",
        ),
        ("who", "The staff directly involved"),
        ("days", "10"),
    ],
    &[
        ("title", "Leads meet"),
        (
            "what",
            "The named leads of the partners concerned meet, with notes shared with all partners.",
        ),
        ("who", "Partnership leads"),
        ("days", "15"),
    ],
    &[
        ("title", "Partnership meeting"),
        (
            "what",
            "All decision makers discuss the dispute and try to agree a resolution.",
        ),
        ("who", "All decision makers"),
        ("days", "20"),
    ],
];

const DISPUTE_ESCALATION: &str = "If the steps above do not resolve the dispute, partners will ask an independent mediator agreed by all of them. Costs are shared equally unless partners agree otherwise.";

/// Fills a freshly created agreement with its kind's starting content.
pub(crate) fn fill(agreement: &mut Agreement, roster: &RosterView) -> Result<(), ModelError> {
    match agreement.kind() {
        DocKind::Mou => {
            for member in &roster.members {
                agreement.ensure_org_entries(&member.key)?;
            }
            add_items(agreement, "milestones", MOU_MILESTONES, roster)?;
            agreement.set("variation", MOU_VARIATION, roster)
        }
        DocKind::Values => {
            add_items(agreement, "values", VALUES, roster)?;
            add_items(agreement, "ground_rules", GROUND_RULES, roster)
        }
        DocKind::Dispute => {
            agreement.set("purpose", DISPUTE_PURPOSE, roster)?;
            add_items(agreement, "steps", DISPUTE_STEPS, roster)?;
            agreement.set("escalation", DISPUTE_ESCALATION, roster)
        }
    }
}

fn add_items(
    agreement: &mut Agreement,
    list: &str,
    items: &[Item],
    roster: &RosterView,
) -> Result<(), ModelError> {
    for item in items {
        let values: Vec<(String, String)> = item
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        agreement.add_item(list, &values, roster)?;
    }
    Ok(())
}
