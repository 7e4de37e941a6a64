#![allow(clippy::unwrap_used)]

use super::*;

fn every_error() -> Vec<StartupError> {
    let addr: SocketAddr = "127.0.0.1:6420".parse().unwrap();
    let table = "t".to_owned();
    let dynamo = |problem| StartupError::Dynamo {
        table: table.clone(),
        problem,
    };
    vec![
        StartupError::ConfigUnreadable {
            path: "a.toml".into(),
            reason: "no such file or directory".into(),
        },
        StartupError::ConfigInvalid {
            path: "a.toml".into(),
            line: 3,
            reason: "expected a value".into(),
        },
        StartupError::Setting {
            field: "store",
            reason: "unknown".into(),
        },
        StartupError::PortInUse { addr },
        StartupError::Bind {
            addr,
            reason: "permission denied".into(),
        },
        StartupError::DataDir {
            path: "d".into(),
            reason: "it is a file".into(),
        },
        StartupError::DataFile {
            path: "d/rivulet.redb".into(),
            reason: "damaged".into(),
        },
        dynamo(TableProblem::NoRegion),
        dynamo(TableProblem::NoCredentials("none".into())),
        dynamo(TableProblem::Unreachable("refused".into())),
        dynamo(TableProblem::AccessDenied("403".into())),
        dynamo(TableProblem::Missing("t".into())),
        dynamo(TableProblem::WrongSchema {
            table: "t".into(),
            found: "id (HASH, S)".into(),
        }),
        dynamo(TableProblem::NotActive {
            table: "t".into(),
            status: "deleting".into(),
        }),
        dynamo(TableProblem::Other("x".into())),
        StartupError::Internal("x".into()),
    ]
}

#[test]
fn every_startup_error_is_one_line_with_a_sysexits_code() {
    for err in every_error() {
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text:?}");
        assert!(!text.is_empty());
        assert!(
            [EX_USAGE, EX_UNAVAILABLE, EX_SOFTWARE].contains(&err.exit_code()),
            "{text}"
        );
    }
}

#[test]
fn only_an_unreachable_store_is_unavailable_and_only_internal_is_software() {
    for err in every_error() {
        let expected = match &err {
            StartupError::Dynamo {
                problem: TableProblem::Unreachable(_),
                ..
            } => EX_UNAVAILABLE,
            StartupError::Internal(_) => EX_SOFTWARE,
            _ => EX_USAGE,
        };
        assert_eq!(err.exit_code(), expected, "{err}");
    }
}

#[test]
fn a_missing_table_names_both_ways_to_create_it() {
    let err = StartupError::Dynamo {
        table: "prod".into(),
        problem: TableProblem::Missing("prod".into()),
    };
    let text = err.to_string();
    assert!(
        text.contains("rivulet schema --apply --table prod"),
        "{text}"
    );
    assert!(text.contains("terraform/"), "{text}");
}

#[test]
fn toml_errors_become_one_line_with_the_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "port = 1\n\nhost = [\n").unwrap();
    let err: StartupError =
        crate::config::Config::load(Some(&path), crate::config::Overrides::default())
            .map(|_| ())
            .unwrap_err()
            .into();
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text:?}");
    assert!(text.contains("line 3") || text.contains("line 4"), "{text}");
}

#[test]
fn os_reasons_lose_the_error_number() {
    let e = std::io::Error::from_raw_os_error(2);
    assert_eq!(os_reason(&e), "no such file or directory");
}
