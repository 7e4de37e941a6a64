//! What can stop the gateway before it serves, said in one line with what to do about it.
//!
//! A new user's first minutes go to these: a config file with a typo, a port another process
//! holds, a data directory that is a file, a DynamoDB table not yet created, no AWS
//! credentials. Each is a [`StartupError`] whose `Display` is one line naming the problem and
//! the fix, and whose [`StartupError::exit_code`] follows sysexits: `EX_USAGE` (64) for what the
//! person starting it must change, `EX_UNAVAILABLE` (69) for a service that did not answer,
//! `EX_SOFTWARE` (70) for what is nobody's typo. `main` prints it and exits; nothing here
//! prints an SDK's error chain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, ConfigError, StoreConfig};
use crate::store::dynamo::{DynamoStore, TableProblem};
use crate::store::embedded::EmbeddedStore;
use crate::store::Store;

/// sysexits `EX_USAGE`: the command line, config or environment must change.
pub const EX_USAGE: u8 = 64;
/// sysexits `EX_UNAVAILABLE`: a service the gateway needs did not answer.
pub const EX_UNAVAILABLE: u8 = 69;
/// sysexits `EX_SOFTWARE`: an internal failure.
pub const EX_SOFTWARE: u8 = 70;

/// A reason the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}; check the path given to --config / RIVULET_CONFIG")]
    ConfigUnreadable {
        /// The file.
        path: PathBuf,
        /// The OS's reason.
        reason: String,
    },
    /// The config file is not valid.
    #[error("config file {path}, line {line}: {reason}")]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A setting is out of range (from a flag, the environment or the file).
    #[error("invalid setting {field}: {reason}")]
    Setting {
        /// Which setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The listen address is taken.
    #[error("{addr} is already in use (another rivulet?); stop that process or choose another port with --port / RIVULET_PORT")]
    PortInUse {
        /// The address.
        addr: SocketAddr,
    },
    /// The listen address cannot be bound for another reason.
    #[error("cannot listen on {addr}: {reason}; choose another --host / --port")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS's reason.
        reason: String,
    },
    /// The embedded store's directory cannot be used.
    #[error("data dir {path} cannot be used: {reason}; choose another with --data-dir / RIVULET_DATA_DIR")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The embedded store's file exists but cannot be opened.
    #[error("cannot open the store file {path}: {reason}")]
    DataFile {
        /// The file.
        path: PathBuf,
        /// Why (including what to do).
        reason: String,
    },
    /// DynamoDB cannot be used as configured.
    #[error("{}", dynamo_line(.table, .problem))]
    Dynamo {
        /// The table.
        table: String,
        /// What is wrong.
        problem: TableProblem,
    },
    /// Anything else (the async runtime did not start, a task panicked).
    #[error("{0}")]
    Internal(String),
}

impl StartupError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::ConfigUnreadable { .. }
            | StartupError::ConfigInvalid { .. }
            | StartupError::Setting { .. }
            | StartupError::PortInUse { .. }
            | StartupError::Bind { .. }
            | StartupError::DataDir { .. }
            | StartupError::DataFile { .. } => EX_USAGE,
            StartupError::Dynamo { problem, .. } => match problem {
                TableProblem::Unreachable(_) => EX_UNAVAILABLE,
                TableProblem::NoRegion
                | TableProblem::NoCredentials(_)
                | TableProblem::AccessDenied(_)
                | TableProblem::Missing(_)
                | TableProblem::WrongSchema { .. }
                | TableProblem::NotActive { .. }
                | TableProblem::Other(_) => EX_USAGE,
            },
            StartupError::Internal(_) => EX_SOFTWARE,
        }
    }
}

impl From<ConfigError> for StartupError {
    fn from(err: ConfigError) -> Self {
        match err {
            ConfigError::Read { path, source } => StartupError::ConfigUnreadable {
                path,
                reason: os_reason(&source),
            },
            ConfigError::Parse { path, source } => {
                let line = match (source.span(), std::fs::read_to_string(&path)) {
                    (Some(span), Ok(text)) => {
                        text[..span.start.min(text.len())].matches('\n').count() + 1
                    }
                    _ => 0,
                };
                StartupError::ConfigInvalid {
                    path,
                    line,
                    reason: one_line(source.message()),
                }
            }
            ConfigError::Invalid { field, reason } => StartupError::Setting { field, reason },
        }
    }
}

fn dynamo_line(table: &str, problem: &TableProblem) -> String {
    match problem {
        TableProblem::NoRegion => {
            "no AWS region is configured for the DynamoDB store; set AWS_REGION (or a region in your AWS profile)".to_owned()
        }
        TableProblem::NoCredentials(why) => format!(
            "no AWS credentials for the DynamoDB store ({why}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where an IAM role is attached"
        ),
        TableProblem::Unreachable(why) => format!(
            "DynamoDB did not answer ({why}); check the network, AWS_REGION and AWS_ENDPOINT_URL_DYNAMODB"
        ),
        TableProblem::AccessDenied(why) => format!(
            "DynamoDB refused access to table {table} ({why}); check the credentials and that their policy allows the table (terraform/ has the gateway's policy)"
        ),
        TableProblem::Missing(_) => format!(
            "DynamoDB table {table} does not exist; create it with `rivulet schema --apply --table {table}` or the Terraform in terraform/"
        ),
        TableProblem::WrongSchema { found, .. } => format!(
            "DynamoDB table {table} has key schema {found}, but rivulet needs pk (HASH, S) + sk (RANGE, S); point --table at a table made by `rivulet schema --apply`"
        ),
        TableProblem::NotActive { status, .. } => format!(
            "DynamoDB table {table} is {status}; wait until it is active, or use another --table"
        ),
        TableProblem::Other(why) => format!("DynamoDB table {table} cannot be used: {why}"),
    }
}

/// Opens the configured store. With `create_table`, a missing DynamoDB table is created
/// (`rivulet dev`); `rivulet serve` never creates infrastructure.
pub async fn open_store(
    config: &Config,
    create_table: bool,
) -> Result<Arc<dyn Store>, StartupError> {
    match &config.store {
        StoreConfig::Embedded => {
            let dir = config.data_dir.clone();
            let store = tokio::task::spawn_blocking(move || open_embedded(&dir))
                .await
                .map_err(|e| StartupError::Internal(format!("opening the store: {e}")))??;
            Ok(Arc::new(store))
        }
        StoreConfig::Dynamodb { table } => {
            let store = DynamoStore::connect_checked(table, create_table)
                .await
                .map_err(|problem| StartupError::Dynamo {
                    table: table.clone(),
                    problem,
                })?;
            tracing::info!(%table, "using the DynamoDB store");
            Ok(Arc::new(store))
        }
    }
}

/// Opens (or creates) `DIR/rivulet.redb`, saying which part is unusable. Runs on a blocking
/// thread: opening may replay redb's journal.
fn open_embedded(dir: &Path) -> Result<EmbeddedStore, StartupError> {
    let data_dir = |reason: String| StartupError::DataDir {
        path: dir.to_path_buf(),
        reason,
    };
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(data_dir("it is a file, not a directory".into())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| data_dir(os_reason(&e)))?;
        }
        Err(e) => return Err(data_dir(os_reason(&e))),
    }
    // Creating and removing a file proves the directory is writable before redb tries.
    let probe = dir.join(format!(".rivulet-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| data_dir(format!("not writable: {}", os_reason(&e))))?;
    let _ = std::fs::remove_file(&probe);
    let path = dir.join("rivulet.redb");
    if path.is_dir() {
        return Err(StartupError::DataFile {
            path,
            reason: "it is a directory; remove it or choose another --data-dir".into(),
        });
    }
    EmbeddedStore::open(&path).map_err(|e| {
        let text = e.to_string();
        let reason = if text.contains("already open") || text.contains("lock") {
            "another rivulet process is using it; stop that one or choose another --data-dir"
                .to_owned()
        } else {
            format!(
                "{} (not a Rivulet data file, or damaged); move it aside or choose another --data-dir",
                one_line(&text)
            )
        };
        StartupError::DataFile { path, reason }
    })
}

/// Binds the listen address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartupError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => StartupError::PortInUse { addr },
            _ => StartupError::Bind {
                addr,
                reason: os_reason(&e),
            },
        })
}

/// The OS's words without Rust's "(os error N)" suffix.
fn os_reason(e: &std::io::Error) -> String {
    crate::util::without_os_error(&e.to_string()).to_lowercase()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
