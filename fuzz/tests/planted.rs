//! The fuzzer reports what it exists to find: a planted panic fails the run and saves the
//! input, which replays; a planted hang ends the process with status 2.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn fuzz(args: &[&str], out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rivulet-fuzz"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn a_planted_panic_is_found_saved_and_replayable() {
    let dir = tempfile::tempdir().unwrap();
    let run = fuzz(
        &["planted-panic", "--seconds", "30", "--seed", "1"],
        dir.path(),
    );
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains(r#""target":"planted-panic""#), "{stdout}");
    assert!(stdout.contains(r#""ok":false"#), "{stdout}");
    let saved: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(saved.len(), 1);
    let input = saved[0].as_ref().unwrap().path();
    assert!(std::fs::read(&input)
        .unwrap()
        .windows(3)
        .any(|w| w == [0xff, 0xff, 0xff]));
    let replay = Command::new(env!("CARGO_BIN_EXE_rivulet-fuzz"))
        .args(["planted-panic", "--replay"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!replay.status.success(), "the saved input must fail again");
}

#[test]
fn a_planted_hang_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = fuzz(
        &["planted-hang", "--seconds", "30", "--hang-ms", "300"],
        dir.path(),
    );
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("ran longer than"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn the_real_targets_pass_a_short_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = fuzz(&["--seconds", "0.5"], dir.path());
    assert!(run.status.success(), "{run:?}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(stdout.matches(r#""ok":true"#).count(), 7, "{stdout}");
    assert!(!stdout.contains(r#""execs":0,"#), "{stdout}");
}
