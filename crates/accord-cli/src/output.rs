//! Printing for people and for scripts.

use std::io::Write;

use anyhow::Result;

/// Where a command writes: the terminal, or buffers sent back over the
/// control socket when a running node executes the command.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Prints `value` as pretty JSON followed by a newline.
pub fn json<T: serde::Serialize>(io: &mut Io<'_>, value: &T) -> Result<()> {
    serde_json::to_writer_pretty(&mut *io.out, value)?;
    writeln!(io.out)?;
    Ok(())
}

/// Prints text as-is (for documents that already end in a newline).
pub fn text(io: &mut Io<'_>, value: &str) -> Result<()> {
    io.out.write_all(value.as_bytes())?;
    if !value.ends_with('\n') {
        writeln!(io.out)?;
    }
    Ok(())
}

/// A time from a change's claimed clock, in UTC, for people.
pub fn time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}
