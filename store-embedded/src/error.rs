//! Why the embedded store failed.

use herald_core::StoreError;

/// An error of the embedded store: opening it, a log operation, or converting an earlier
/// version's database.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another process (or another store in this one) has the data directory open.
    #[error("the data directory is in use by another process (lock file {0})")]
    Locked(std::path::PathBuf),
    /// Reading, writing or syncing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The log holds something this version cannot read.
    #[error("the log {path} cannot be read at byte {offset}: {reason}")]
    Log {
        /// The log.
        path: std::path::PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The log is damaged before its end: an intact record follows the damage, so it is not a
    /// write a crash cut short. The file was left as it was.
    #[error(
        "the log {path} is damaged at byte {offset} ({reason}; the next intact record starts at \
         byte {next}, {} bytes later); the file was left untouched. Restore the data directory \
         from a backup, or open it with recovery, which skips the damaged bytes, keeps every \
         intact record and sets the damaged file aside",
        next - offset
    )]
    Damaged {
        /// The log.
        path: std::path::PathBuf,
        /// Where the first damaged record starts.
        offset: u64,
        /// Where the next intact record starts.
        next: u64,
        /// What was wrong at `offset`.
        reason: String,
    },
    /// An earlier version's database holds something that cannot be converted.
    #[error("the earlier version's database cannot be converted: {0}")]
    Legacy(String),
    /// The store's thread could not be started.
    #[error("cannot start the store thread: {0}")]
    Thread(std::io::Error),
    /// Opening an earlier version's database failed (locked, corrupt, I/O).
    #[error("cannot open the earlier version's database: {0}")]
    Database(#[from] redb::DatabaseError),
    /// A transaction could not begin.
    #[error("database transaction failed: {0}")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error("database table error: {0}")]
    Table(#[from] redb::TableError),
    /// Reading or writing the file failed.
    #[error("database storage error: {0}")]
    Storage(#[from] redb::StorageError),
}

impl From<EmbeddedError> for StoreError {
    /// Every runtime failure of the local database is reported as unavailability: the caller
    /// answers 503 and retries, it does not drop the message.
    fn from(e: EmbeddedError) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }
}
