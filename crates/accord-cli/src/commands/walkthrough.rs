//! A guided tour: runs the real `accord` commands against a temporary data
//! folder, printing each command before its output, so a newcomer sees the
//! whole story (and what to type) without touching their own replica.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

struct Tour {
    exe: std::path::PathBuf,
}

impl Tour {
    /// Runs `accord --data DIR ARGS...`, echoing the command and its output.
    fn step(&self, note: &str, data: &Path, args: &[&str]) -> Result<String> {
        println!("\n# {note}");
        println!(
            "$ accord {}",
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = Command::new(&self.exe)
            .arg("--data")
            .arg(data)
            .args(args)
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("the walkthrough step `accord {}` failed", args.join(" "));
        }
        Ok(stdout)
    }
}

fn shell_quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.=/".contains(c))
    {
        arg.to_owned()
    } else {
        format!("\"{}\"", arg.replace('"', "\\\""))
    }
}

pub fn run() -> Result<()> {
    let folder = tempfile::Builder::new()
        .prefix("accord-walkthrough-")
        .tempdir()?;
    let lead = folder.path().join("womens-centre");
    let partner = folder.path().join("cvs");
    let tour = Tour {
        exe: std::env::current_exe().context("could not find the accord program")?,
    };
    println!(
        "Accord walkthrough: a sample partnership in {} (deleted at the end).",
        folder.path().display()
    );

    tour.step(
        "Each organisation creates its replica and key once.",
        &lead,
        &["init", "--org", "Women's Centre Wandsworth"],
    )?;
    let partner_json = tour.step(
        "A partner organisation does the same on its own machine.",
        &partner,
        &["init", "--org", "CVS Wandsworth", "--json"],
    )?;
    let partner_key = serde_json::from_str::<serde_json::Value>(&partner_json)?["key"]
        .as_str()
        .context("whoami --json printed no key")?
        .to_owned();

    tour.step(
        "Start a partnership: you become its lead partner.",
        &lead,
        &["partnership", "new", "Sharing Our Strengths"],
    )?;
    tour.step(
        "Add the partner by its public key, as a consultee.",
        &lead,
        &[
            "member",
            "add",
            "Sharing",
            "--name",
            "CVS Wandsworth",
            "--key",
            &partner_key,
            "--role",
            "consultee",
        ],
    )?;
    tour.step(
        "Create the three agreements from their templates.",
        &lead,
        &[
            "doc",
            "new",
            "Sharing",
            "--kind",
            "mou",
            "--title",
            "Memorandum of Understanding",
        ],
    )?;
    tour.step(
        "",
        &lead,
        &[
            "doc",
            "new",
            "Sharing",
            "--kind",
            "values",
            "--title",
            "Shared values and ground rules",
        ],
    )?;
    tour.step(
        "",
        &lead,
        &[
            "doc",
            "new",
            "Sharing",
            "--kind",
            "dispute",
            "--title",
            "Dispute-resolution process",
        ],
    )?;
    tour.step("Write the purpose of the MOU.", &lead, &[
        "doc", "set", "Memorandum", "purpose",
        "To support women in Wandsworth into work by combining our advice services with CVS volunteering placements.",
    ])?;
    tour.step(
        "Add an objective and date a milestone.",
        &lead,
        &[
            "doc",
            "add",
            "Memorandum",
            "objectives",
            "text=Place 40 women in volunteering roles by March 2027",
        ],
    )?;
    tour.step(
        "",
        &lead,
        &["doc", "set", "Memorandum", "milestones.1.due", "2027-01-31"],
    )?;
    tour.step(
        "Record what each partner is responsible for.",
        &lead,
        &[
            "doc",
            "set",
            "Memorandum",
            "roles.CVS",
            "Find and support volunteering placements.",
        ],
    )?;
    tour.step(
        "Add a shared value.",
        &lead,
        &[
            "doc",
            "add",
            "Shared values",
            "values",
            "name=Inclusion",
            "description=Everyone is welcome in every meeting.",
        ],
    )?;
    tour.step("Read the MOU.", &lead, &["doc", "show", "Memorandum"])?;
    tour.step("See who changed what.", &lead, &["history", "Memorandum"])?;
    tour.step(
        "Everything is listed here.",
        &lead,
        &["partnership", "show", "Sharing"],
    )?;
    println!(
        "\nThat is the whole story. Try it for real with: accord init --org \"Your organisation\""
    );
    Ok(())
}
