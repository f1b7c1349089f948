//! What people see when something is wrong: a clear message that says what
//! to do, a non-zero exit code, and never a panic or a rewritten file.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::{Org, script};

/// Exit code for problems with the replica itself.
const EXIT_REPLICA: i32 = 3;

#[test]
fn commands_before_init_say_how_to_start() {
    let org = Org::empty();
    let (code, err) = org.fails(&["partnership", "list"]);
    assert_eq!(code, EXIT_REPLICA);
    assert!(err.contains("accord init --org"), "{err}");
}

#[test]
fn init_twice_is_refused_and_keeps_the_key() {
    let org = Org::init("Women's Centre");
    let key = org.key();
    let (_, err) = org.fails(&["init", "--org", "Someone else"]);
    assert!(err.to_lowercase().contains("already"), "{err}");
    assert_eq!(org.key(), key);
}

#[test]
fn a_foreign_file_is_refused_and_left_untouched() {
    let org = Org::init("Women's Centre");
    let foreign = b"this is somebody's spreadsheet, not a replica".repeat(100);
    std::fs::write(org.replica_file(), &foreign).unwrap();
    let (code, err) = org.fails(&["partnership", "list"]);
    assert_eq!(code, EXIT_REPLICA);
    assert!(
        err.contains("not an Accord replica") || err.contains("not a"),
        "{err}"
    );
    assert_eq!(std::fs::read(org.replica_file()).unwrap(), foreign);
}

#[test]
fn truncated_and_damaged_replicas_give_clean_errors() {
    let org = Org::init("Women's Centre");
    org.ok(&["partnership", "new", "Sharing Our Strengths"]);
    let original = std::fs::read(org.replica_file()).unwrap();
    for len in [0, 100, original.len() / 2] {
        std::fs::write(org.replica_file(), &original[..len]).unwrap();
        let (code, _) = org.fails(&["partnership", "list"]);
        assert_eq!(code, EXIT_REPLICA, "truncated to {len} bytes");
    }
    // Bit flips across the file: the command either works or fails cleanly.
    for offset in (4096..original.len()).step_by(original.len() / 16 + 1) {
        let mut damaged = original.clone();
        damaged[offset] ^= 0x5a;
        std::fs::write(org.replica_file(), &damaged).unwrap();
        let out = org.run(&["partnership", "list"]);
        crate::support::assert_no_panic(&String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_second_process_is_told_the_replica_is_in_use() {
    let org = Org::init("Women's Centre");
    org.ok(&["partnership", "new", "Sharing Our Strengths"]);
    org.new_doc("Sharing", "mou", "MOU");
    // An editor that holds `doc edit` open until we say so: it announces
    // itself on stdout and waits for a line on stdin.
    let dir = org.data.parent().unwrap();
    let editor = script(dir, "hold.sh", r#"echo editor-open; read _line || true"#);
    let mut holder = org
        .command(&["doc", "edit", "MOU"])
        .env("EDITOR", &editor)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "editor-open");

    let (code, err) = org.fails(&["partnership", "list"]);
    assert_eq!(code, EXIT_REPLICA);
    assert!(err.contains("in use by process"), "{err}");
    assert!(
        err.contains(&holder.id().to_string()),
        "names the holder's pid: {err}"
    );

    drop(holder.stdin.take()); // the editor's `read` sees end of input and exits
    assert!(holder.wait().unwrap().success());
    org.ok(&["partnership", "list"]);
}

#[test]
fn bad_arguments_explain_themselves() {
    let org = Org::init("Women's Centre");
    org.ok(&["partnership", "new", "Sharing Our Strengths"]);
    let (_, err) = org.fails(&[
        "doc", "new", "Sharing", "--kind", "contract", "--title", "X",
    ]);
    assert!(err.contains("mou, values or dispute"), "{err}");
    let (_, err) = org.fails(&["member", "add", "Sharing", "--name", "X", "--key", "abc"]);
    assert!(err.contains("accord whoami"), "{err}");
    let help = org.ok(&["--help"]);
    assert!(help.contains("partnership") && help.contains("ACCORD_DATA"));
}
