//! Printing for people and for scripts.

use std::io::Write;

use anyhow::Result;

/// Prints `value` as pretty JSON followed by a newline.
pub fn json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints text as-is (for documents that already end in a newline).
pub fn text(value: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(value.as_bytes())?;
    if !value.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

/// A time from a change's claimed clock, in UTC, for people.
pub fn time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}
