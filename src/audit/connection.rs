//! Connecting to the audit store: the readers' pool and the writer's own
//! connection from one URL (SQLite in WAL mode, or PostgreSQL), and, for a
//! SQLite file, which file it is, so that a file removed from under the
//! server is noticed instead of written to and lost.

use std::{os::unix::fs::MetadataExt, path::PathBuf, time::Duration};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use secrecy::{ExposeSecret, SecretString};

use super::{migration, records::AuditError};

/// How long connecting, or waiting for a pooled connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct Connector {
    url: SecretString,
    max_connections: u32,
}

impl Connector {
    pub fn new(url: &SecretString, max_connections: u32) -> Connector {
        Connector {
            url: url.clone(),
            max_connections,
        }
    }

    /// The pool the store's reads use.
    pub async fn connect_readers(&self) -> Result<DatabaseConnection, AuditError> {
        self.connect(self.max_connections).await
    }

    /// Whether the database lives in memory: one pool, shared by the writer
    /// and the readers, and never reconnected (that would be a new database).
    pub fn is_memory(&self) -> bool {
        let url = self.url.expose_secret();
        url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory"))
    }

    /// The writer's one connection (an in-memory database's only pool),
    /// with the schema brought up to date.
    pub async fn connect_writer(&self) -> Result<DatabaseConnection, AuditError> {
        let connections = if self.is_memory() {
            self.max_connections
        } else {
            1
        };
        let connection = self.connect(connections).await?;
        migration::Migrator::up(&connection, None).await?;
        Ok(connection)
    }

    async fn connect(&self, max_connections: u32) -> Result<DatabaseConnection, AuditError> {
        let mut options = ConnectOptions::new(self.url.expose_secret().to_owned());
        options
            .max_connections(max_connections)
            .connect_timeout(CONNECT_TIMEOUT)
            .acquire_timeout(CONNECT_TIMEOUT)
            .sqlx_logging(false);
        let db = Database::connect(options).await?;
        if db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            // WAL lets readers (GetBatch, ListRegistrations) run beside the writer.
            db.execute_unprepared(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
            )
            .await?;
        }
        Ok(db)
    }

    /// The file a `sqlite:` URL names; `None` for PostgreSQL and in-memory databases.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.url.expose_secret();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
            return None;
        }
        Some(PathBuf::from(path))
    }
}

/// A SQLite file as it was when opened: its device and inode.
pub(super) struct SqliteFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl SqliteFile {
    pub fn at(path: PathBuf) -> Result<SqliteFile, AuditError> {
        let metadata = std::fs::metadata(&path).map_err(|error| {
            AuditError::Unavailable(format!(
                "the SQLite audit file {} cannot be read: {error}",
                path.display()
            ))
        })?;
        Ok(SqliteFile {
            path,
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whether the path still names the file that was opened.
    pub fn is_in_place(&self) -> bool {
        std::fs::metadata(&self.path)
            .is_ok_and(|metadata| (metadata.dev(), metadata.ino()) == self.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_file_is_read_off_the_url() {
        let path = |url: &str| Connector::new(&SecretString::from(url), 1).sqlite_path();
        assert_eq!(
            path("sqlite://data/audit.db?mode=rwc"),
            Some(PathBuf::from("data/audit.db"))
        );
        assert_eq!(
            path("sqlite:///var/lib/registrar/audit.db"),
            Some(PathBuf::from("/var/lib/registrar/audit.db"))
        );
        assert_eq!(path("sqlite::memory:"), None);
        assert_eq!(path("postgres://registrar@db/audit"), None);
    }
}
