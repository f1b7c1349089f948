//! `org.key`: the organisation's secret seed, in a small text file.
//!
//! Format (version 1): `accord-org-key v1\n<64 hex digits>\n`. Text, so a
//! person can back it up or inspect it; versioned, so a later format can be
//! told apart from damage.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use accord_identity::OrgSecret;

use crate::error::StoreError;

/// File name of the key inside the data folder.
pub(crate) const KEY_FILE: &str = "org.key";

const HEADER: &str = "accord-org-key v1";
const SEED_LEN: usize = 32;

/// Writes a new key file; fails rather than overwrite one (a lost key cannot be recovered).
pub(crate) fn write_new(path: &Path, secret: &OrgSecret) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            ErrorKind::AlreadyExists => StoreError::AlreadyInitialised {
                dir: path.parent().unwrap_or(path).to_owned(),
            },
            _ => StoreError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    let text = format!("{HEADER}\n{}\n", hex(&secret.seed()));
    write_durably(&mut file, text.as_bytes()).map_err(StoreError::io(path))
}

fn write_durably(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// Reads the key file, refusing anything that is not exactly a v1 key.
pub(crate) fn read(path: &Path) -> Result<OrgSecret, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => StoreError::MissingKey {
            path: path.to_owned(),
        },
        ErrorKind::InvalidData => StoreError::corrupt(path, "the key file is not text"),
        _ => StoreError::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    warn_if_exposed(path);
    parse(&text)
        .map(OrgSecret::from_seed)
        .map_err(|detail| StoreError::corrupt(path, detail))
}

fn parse(text: &str) -> Result<[u8; SEED_LEN], String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("the key file does not start with {HEADER:?}"));
    }
    let seed_line = lines.next().unwrap_or("").trim();
    if lines.any(|line| !line.trim().is_empty()) {
        return Err("the key file has unexpected extra lines".to_owned());
    }
    unhex(seed_line).ok_or_else(|| "the key is not 64 hex digits".to_owned())
}

/// Logs a warning when group or others may read the secret; it does not refuse,
/// because the person may have a reason (and refusing would lock them out).
fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the organisation key file is readable by other users; run `chmod 600` on it"
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; SEED_LEN]> {
    if text.len() != SEED_LEN * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut seed = [0u8; SEED_LEN];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_and_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let secret = OrgSecret::from_seed([9; 32]);
        write_new(&path, &secret).unwrap();
        assert_eq!(read(&path).unwrap().seed(), secret.seed());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn existing_key_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        write_new(&path, &OrgSecret::from_seed([1; 32])).unwrap();
        let before = std::fs::read(&path).unwrap();
        let again = write_new(&path, &OrgSecret::from_seed([2; 32]));
        assert!(matches!(again, Err(StoreError::AlreadyInitialised { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn damaged_or_missing_keys_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        assert!(matches!(read(&path), Err(StoreError::MissingKey { .. })));
        for text in [
            "",
            "accord-org-key v2\n00\n",
            "accord-org-key v1\nzz\n",
            "accord-org-key v1\n",
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(
                matches!(read(&path), Err(StoreError::Corrupt { .. })),
                "{text:?}"
            );
        }
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(read(&path), Err(StoreError::Corrupt { .. })));
    }
}
