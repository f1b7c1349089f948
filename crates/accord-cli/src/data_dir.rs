//! Where the replica lives when the user does not say.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `--data` / `ACCORD_DATA` when given (clap reads both), else the
/// platform's data folder, e.g. `~/.local/share/accord` on Linux.
pub fn resolve(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    let dirs = directories::ProjectDirs::from("org", "Accord", "accord").context(
        "could not find your home folder's data directory: pass --data DIR or set ACCORD_DATA",
    )?;
    Ok(dirs.data_dir().to_path_buf())
}
