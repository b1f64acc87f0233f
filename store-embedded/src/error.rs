//! Why the embedded store failed.

use herald_core::StoreError;

/// An error of the embedded store: opening it, or a database operation.
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
    /// The store's thread could not be started.
    #[error("cannot start the store thread: {0}")]
    Thread(std::io::Error),
    /// Opening or creating the database failed (locked by another process, corrupt, I/O).
    #[error("cannot open the database: {0}")]
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
    /// A commit failed; nothing of the transaction was stored.
    #[error("database commit failed: {0}")]
    Commit(#[from] redb::CommitError),
    /// A transaction's durability could not be set.
    #[error("database durability setting failed: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    /// A stored record could not be decoded (the file is corrupt or from another program).
    #[error("corrupt record for client {client} id {id}: {reason}")]
    Corrupt {
        /// The client.
        client: String,
        /// The message id.
        id: u64,
        /// What was wrong.
        reason: String,
    },
}

impl From<EmbeddedError> for StoreError {
    /// Every runtime failure of the local database is reported as unavailability: the caller
    /// answers 503 and retries, it does not drop the message.
    fn from(e: EmbeddedError) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }
}
