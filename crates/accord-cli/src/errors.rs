//! Turning errors into what a person reads, and an exit code.

use std::io::Write;

use accord_store::StoreError;
use accord_workspace::WorkspaceError;

use crate::commands::Forwarded;

/// Exit code for problems with the replica itself (missing, in use,
/// damaged, too new), so scripts can tell them from a bad argument.
pub const EXIT_REPLICA: u8 = 3;

/// Writes `error` with its causes and returns the exit code for it.
pub fn report(error: &anyhow::Error, err: &mut dyn Write) -> u8 {
    if let Some(Forwarded(code)) = error.downcast_ref::<Forwarded>() {
        return *code;
    }
    let _ = writeln!(err, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(err, "  because: {cause}");
    }
    exit_code(error)
}

fn exit_code(error: &anyhow::Error) -> u8 {
    let store = error
        .chain()
        .find_map(|e| match e.downcast_ref::<WorkspaceError>() {
            Some(WorkspaceError::Store(s)) => Some(s),
            _ => e.downcast_ref::<StoreError>(),
        });
    match store {
        Some(
            StoreError::NotInitialised { .. }
            | StoreError::InUse { .. }
            | StoreError::NotAReplica { .. }
            | StoreError::Corrupt { .. }
            | StoreError::TooNew { .. },
        ) => EXIT_REPLICA,
        _ => 1,
    }
}

/// `accord doc show X | head` closing the pipe early is not an error.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    })
}
