//! The check a gateway makes once before it serves from DynamoDB: credentials can be loaded,
//! the endpoint answers, and the table exists with the key schema the store writes. Each
//! failure is a [`TableProblem`] a person can act on, instead of the SDK's error chain
//! surfacing from the first request a client happens to make.

use aws_sdk_dynamodb::config::ProvideCredentials;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{KeyType, TableStatus};
use aws_sdk_dynamodb::Client;

/// Why the table cannot be used, in terms of what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableProblem {
    /// No AWS region in the environment or profile.
    #[error("no AWS region is configured")]
    NoRegion,
    /// The credential chain found nothing usable.
    #[error("no AWS credentials could be loaded ({0})")]
    NoCredentials(String),
    /// The request never got an answer (endpoint down, DNS, TLS, timeout).
    #[error("DynamoDB did not answer ({0})")]
    Unreachable(String),
    /// The credentials were refused, or lack permission for the table.
    #[error("DynamoDB refused the credentials ({0})")]
    AccessDenied(String),
    /// DescribeTable found no such table.
    #[error("table {0} does not exist")]
    Missing(String),
    /// The table exists but is not keyed the way the store writes.
    #[error("table {table} has key schema {found}, not pk (HASH, string) + sk (RANGE, string)")]
    WrongSchema {
        /// The table.
        table: String,
        /// What DescribeTable reported.
        found: String,
    },
    /// The table exists but is being deleted or is otherwise unusable.
    #[error("table {table} is {status}")]
    NotActive {
        /// The table.
        table: String,
        /// Its status.
        status: String,
    },
    /// Anything else DescribeTable answered.
    #[error("DynamoDB answered {0}")]
    Other(String),
}

/// Loads credentials once through the client's own provider, so a missing credential is
/// named as such rather than as a failed request.
pub(super) async fn check_credentials(conf: &aws_config::SdkConfig) -> Result<(), TableProblem> {
    let Some(provider) = conf.credentials_provider() else {
        return Err(TableProblem::NoCredentials(
            "the SDK has no credentials provider".to_owned(),
        ));
    };
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| TableProblem::NoCredentials(first_line(&e.to_string())))
}

/// DescribeTable, classified.
pub(super) async fn check_table(client: &Client, table: &str) -> Result<(), TableProblem> {
    // A person is waiting at a terminal: three quick tries, not the store's eight.
    let retry = aws_sdk_dynamodb::config::Builder::default().retry_config(
        aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(3),
    );
    let out = match client
        .describe_table()
        .table_name(table)
        .customize()
        .config_override(retry)
        .send()
        .await
    {
        Ok(out) => out,
        Err(err) => return Err(classify(table, err)),
    };
    let Some(desc) = out.table() else {
        return Err(TableProblem::Other(
            "DescribeTable without a table".to_owned(),
        ));
    };
    match desc.table_status() {
        Some(TableStatus::Active) | Some(TableStatus::Updating) | None => {}
        Some(other) => {
            return Err(TableProblem::NotActive {
                table: table.to_owned(),
                status: other.as_str().to_lowercase(),
            })
        }
    }
    let attr_type = |name: &str| {
        desc.attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == name)
            .map(|a| a.attribute_type().as_str().to_owned())
    };
    let keys: Vec<(String, KeyType)> = desc
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    let expected = keys.len() == 2
        && keys.contains(&("pk".to_owned(), KeyType::Hash))
        && keys.contains(&("sk".to_owned(), KeyType::Range))
        && attr_type("pk").as_deref() == Some("S")
        && attr_type("sk").as_deref() == Some("S");
    if expected {
        return Ok(());
    }
    let found = keys
        .iter()
        .map(|(name, kind)| {
            format!(
                "{name} ({}, {})",
                kind.as_str(),
                attr_type(name).unwrap_or_else(|| "?".to_owned())
            )
        })
        .collect::<Vec<_>>()
        .join(" + ");
    Err(TableProblem::WrongSchema {
        table: table.to_owned(),
        found,
    })
}

fn classify(table: &str, err: SdkError<DescribeTableError>) -> TableProblem {
    match &err {
        SdkError::ServiceError(se) => {
            if let DescribeTableError::ResourceNotFoundException(_) = se.err() {
                return TableProblem::Missing(table.to_owned());
            }
            let meta = se.err().meta();
            let code = meta.code().unwrap_or("unknown error");
            let msg = first_line(meta.message().unwrap_or(""));
            let status = se.raw().status().as_u16();
            let detail = if msg.is_empty() {
                code.to_owned()
            } else {
                format!("{code}: {msg}")
            };
            if status == 403
                || code.contains("AccessDenied")
                || code.contains("UnrecognizedClient")
                || code.contains("InvalidSignature")
                || code.contains("ExpiredToken")
            {
                TableProblem::AccessDenied(detail)
            } else {
                TableProblem::Other(detail)
            }
        }
        SdkError::TimeoutError(_) => TableProblem::Unreachable("timed out".to_owned()),
        // The innermost source carries the reason (connection refused, DNS).
        SdkError::DispatchFailure(_) => TableProblem::Unreachable(innermost(&err)),
        SdkError::ResponseError(_) => {
            TableProblem::Unreachable("the answer could not be read".to_owned())
        }
        SdkError::ConstructionFailure(_) => TableProblem::Other(innermost(&err)),
        _ => TableProblem::Other(first_line(&err.to_string())),
    }
}

fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err;
    while let Some(next) = last.source() {
        last = next;
    }
    first_line(&last.to_string())
}

/// The first line, without Rust's "(os error N)" suffix.
fn first_line(s: &str) -> String {
    crate::util::without_os_error(s.lines().next().unwrap_or("").trim()).to_owned()
}
