//! Collecting figures, printing them as a table, writing them as JSON.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::trace::Trace;

/// One compared figure: Accord (or a variant) against raw Automerge.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub benchmark: &'static str,
    pub figure: String,
    pub unit: &'static str,
    pub raw: f64,
    pub accord: f64,
    /// `accord / raw`.
    pub ratio: f64,
    /// What the issue asks for, if anything (context rows have none).
    pub target: Option<String>,
    pub pass: Option<bool>,
}

pub struct Report {
    trace: Value,
    figures: Vec<Figure>,
    details: Map<String, Value>,
}

impl Report {
    pub fn new(trace: &Trace) -> Report {
        Report {
            trace: json!({
                "name": trace.name,
                "patches": trace.patches.len(),
                "txns": trace.txns,
                "final_chars": trace.end_content.chars().count(),
            }),
            figures: Vec::new(),
            details: Map::new(),
        }
    }

    /// A figure with a ratio target: passes when `accord / raw <= max_ratio`.
    pub fn ratio(
        &mut self,
        benchmark: &'static str,
        figure: &str,
        unit: &'static str,
        raw: f64,
        accord: f64,
        max_ratio: f64,
    ) {
        let ratio = accord / raw;
        self.figures.push(Figure {
            benchmark,
            figure: figure.to_owned(),
            unit,
            raw,
            accord,
            ratio,
            target: Some(format!("<= {max_ratio}x raw")),
            pass: Some(ratio <= max_ratio),
        });
    }

    /// A figure with an absolute target on the Accord value: passes when `accord < limit`.
    pub fn below(
        &mut self,
        benchmark: &'static str,
        figure: &str,
        unit: &'static str,
        raw: f64,
        accord: f64,
        limit: f64,
    ) {
        self.figures.push(Figure {
            benchmark,
            figure: figure.to_owned(),
            unit,
            raw,
            accord,
            ratio: accord / raw,
            target: Some(format!("< {limit} {unit}")),
            pass: Some(accord < limit),
        });
    }

    /// A figure shown for context only.
    pub fn context(
        &mut self,
        benchmark: &'static str,
        figure: &str,
        unit: &'static str,
        raw: f64,
        accord: f64,
    ) {
        self.figures.push(Figure {
            benchmark,
            figure: figure.to_owned(),
            unit,
            raw,
            accord,
            ratio: accord / raw,
            target: None,
            pass: None,
        });
    }

    /// Free-form measurements (breakdowns, per-round numbers) for the JSON file.
    pub fn detail(&mut self, key: &str, value: Value) {
        self.details.insert(key.to_owned(), value);
    }

    pub fn print(&self) {
        let headers = [
            "benchmark",
            "figure",
            "raw",
            "accord",
            "ratio",
            "target",
            "result",
        ];
        let rows: Vec<[String; 7]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.benchmark.to_owned(),
                    f.figure.clone(),
                    format!("{} {}", num(f.raw), f.unit),
                    format!("{} {}", num(f.accord), f.unit),
                    format!("{:.2}x", f.ratio),
                    f.target.clone().unwrap_or_else(|| "context".to_owned()),
                    match f.pass {
                        Some(true) => "PASS".to_owned(),
                        Some(false) => "FAIL".to_owned(),
                        None => "-".to_owned(),
                    },
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                // Text left-aligned, numbers right-aligned.
                if (2..=4).contains(&i) {
                    out.push_str(&format!("{cell:>w$}  "));
                } else {
                    out.push_str(&format!("{cell:<w$}  "));
                }
            }
            println!("{}", out.trim_end());
        };
        println!();
        println!(
            "accord-bench on {} ({} patches), ratios are accord / raw Automerge in the same run",
            self.trace["name"].as_str().unwrap_or("?"),
            self.trace["patches"]
        );
        line(&headers.map(str::to_owned));
        line(&widths.map(|w| "-".repeat(w)));
        for row in &rows {
            line(row);
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let out = json!({
            "tool": "accord-bench",
            "date_utc": utc_date(),
            "machine": {
                "available_parallelism": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                "note": "shared, noisy machine: compare ratios, not absolute times",
            },
            "trace": self.trace,
            "figures": self.figures,
            "details": self.details,
        });
        let text = serde_json::to_string_pretty(&out)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Today's date (UTC) as `YYYY-MM-DD`, from the system clock.
pub fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
