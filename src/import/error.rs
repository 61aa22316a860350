//! Why an import could not run to its end (exit code 2): a usage error, a
//! file that cannot be read, an unknown column or malformed rows (named by
//! line before anything is sent), a server out of reach, or a refusal.

use super::columns;

/// Why an import could not run to its end: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {error}")]
    File { what: String, error: std::io::Error },
    #[error(
        "{input}: line {line}: unknown column{} {}; nothing was sent. The known columns are {}",
        if names.len() == 1 { "" } else { "s" },
        names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", "),
        columns::known_columns()
    )]
    UnknownColumns {
        input: String,
        line: u64,
        names: Vec<String>,
    },
    #[error("{input}: {count} row(s) describe no user; nothing was sent:\n{}", shown.iter().map(|row| format!("  line {}: {}", row.line, row.message)).collect::<Vec<_>>().join("\n"))]
    BadRows {
        input: String,
        count: u64,
        shown: Vec<BadRow>,
    },
    #[error("cannot reach {server}: {message}")]
    Connection { server: String, message: String },
    #[error("the server refused the import: {:?}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
}

impl ImportError {
    pub fn file(what: &str, error: std::io::Error) -> ImportError {
        ImportError::File {
            what: what.to_owned(),
            error,
        }
    }
}

/// A row that describes no user (a malformed line, a value of the wrong type).
#[derive(Debug, Clone)]
pub struct BadRow {
    pub line: u64,
    pub message: String,
}
