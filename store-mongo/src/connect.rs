//! Opening the store: the connection, the collections and their indexes.

use std::sync::Arc;
use std::time::Duration;

use herald_core::Runtime;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, IndexModel};
use tokio::sync::Semaphore;

use crate::append::Counters;
use crate::batch::Batcher;
use crate::memo::PassedHoles;
use crate::{MongoConfig, MongoError, MongoStore, outbox, receipts};

/// The indexes of the `messages` collection: one message per client and id, the TTL index on
/// the expiry, and the history order. Public so that a benchmark of the raw database (herald-bench
/// `bound`) pays for the same indexes as the store.
pub fn message_indexes() -> Vec<IndexModel> {
    vec![
        IndexModel::builder()
            .keys(doc! {"c": 1, "i": 1})
            .options(IndexOptions::builder().unique(true).build())
            .build(),
        IndexModel::builder()
            .keys(doc! {"x": 1})
            .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
            .build(),
        IndexModel::builder().keys(doc! {"c": 1, "t": 1}).build(),
        // The copies of one push (status, receipts, recall).
        IndexModel::builder().keys(doc! {"p": 1}).build(),
    ]
}

impl MongoStore {
    /// Connects and creates the indexes (idempotent). The store waits on `runtime`'s timer; the
    /// driver needs a tokio context wherever the store's futures run.
    ///
    /// # Errors
    /// [`MongoError`] when the URL is invalid or the server refuses the indexes.
    pub async fn connect(
        config: MongoConfig,
        runtime: Arc<dyn Runtime>,
    ) -> Result<MongoStore, MongoError> {
        let mut options = ClientOptions::parse(&config.url).await?;
        options.app_name = Some("herald".into());
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(Duration::from_secs(5));
        }
        let reads = options.max_pool_size.unwrap_or(DEFAULT_POOL_SIZE).max(1);
        let client = Client::with_options(options)?;
        let db = client.database(&config.database);
        let messages = db.collection::<Document>("messages");
        let counters = db.collection::<Document>("counters");
        messages.create_indexes(message_indexes()).await?;
        let pushes = db.collection::<Document>("pushes");
        let idempotency = db.collection::<Document>("idempotency");
        pushes.create_index(receipts::receipt_indexes()).await?;
        pushes.create_index(receipts::unreported_index()).await?;
        idempotency
            .create_index(receipts::receipt_indexes())
            .await?;
        let outbox = db.collection::<Document>("outbox");
        outbox.create_indexes(outbox::outbox_indexes()).await?;
        log::info!(
            "mongodb store ready: database {} (cap {}, ttl {}s)",
            config.database,
            config.retention.cap,
            config.retention.ttl.as_secs()
        );
        Ok(MongoStore {
            db,
            messages,
            counters,
            counters_seen: Arc::new(Counters::new(config.known_counters)),
            retention: config.retention,
            settle: config.settle,
            appends: Arc::new(Batcher::new()),
            acks: Arc::new(Batcher::new()),
            counter_reads: Arc::new(Batcher::new()),
            reads: Arc::new(Semaphore::new(reads as usize)),
            passed_holes: Arc::new(PassedHoles::default()),
            runtime,
            pushes,
            idempotency,
            receipts: Arc::new(Batcher::new()),
            outbox,
        })
    }
}

/// The driver's connection pool size when the URL sets no `maxPoolSize` (the driver's own
/// default).
const DEFAULT_POOL_SIZE: u32 = 10;
