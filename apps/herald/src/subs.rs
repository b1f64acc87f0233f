//! Broker subscriptions shared by the engine and the REST watchers, and the registry of
//! waiting `GET /watch` requests.
//!
//! A node subscribes to a client's broker channels while anything on the node needs them: a
//! session (the Hub asks) or a watcher (the REST API asks). Counts are kept here so that one
//! side ending never unsubscribes the other. Changes are serialized by one async lock, so a
//! subscribe and an unsubscribe of the same client can never reach the broker out of order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_std::channel::{Receiver, Sender};
use herald_core::{Broker, BrokerError, ClientId};

/// Reference-counted broker subscriptions of one node.
pub struct Subscriptions<B> {
    broker: Arc<B>,
    /// How many holders each subscribed client has. Guarded by an async lock held across the
    /// broker call, so the broker sees changes in the order they were decided.
    counts: async_std::sync::Mutex<HashMap<ClientId, usize>>,
}

impl<B: Broker> Subscriptions<B> {
    /// Subscriptions over `broker`.
    pub fn new(broker: Arc<B>) -> Self {
        Subscriptions {
            broker,
            counts: async_std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Adds a holder of `client`'s subscription, subscribing on the broker for the first one.
    ///
    /// # Errors
    /// When the broker call fails; then no holder was added.
    pub async fn subscribe(&self, client: &ClientId) -> Result<(), BrokerError> {
        let mut counts = self.counts.lock().await;
        let n = counts.get(client).copied().unwrap_or(0);
        if n == 0 {
            self.broker.subscribe(client).await?;
        }
        counts.insert(client.clone(), n + 1);
        Ok(())
    }

    /// Removes a holder, unsubscribing on the broker after the last one. Removing a holder that
    /// was never added does nothing.
    ///
    /// # Errors
    /// When the broker call fails; the holder is removed anyway (a stale subscription only costs
    /// unneeded events, which are ignored).
    pub async fn unsubscribe(&self, client: &ClientId) -> Result<(), BrokerError> {
        let mut counts = self.counts.lock().await;
        match counts.get(client).copied() {
            None | Some(0) => Ok(()),
            Some(1) => {
                counts.remove(client);
                self.broker.unsubscribe(client).await
            }
            Some(n) => {
                counts.insert(client.clone(), n - 1);
                Ok(())
            }
        }
    }

    /// The broker behind these subscriptions.
    pub fn broker(&self) -> &Arc<B> {
        &self.broker
    }
}

/// The registered watchers of each client: (registration id, wake-up sender).
type Waiting = HashMap<ClientId, Vec<(u64, Sender<()>)>>;

/// Waiting `GET /watch` requests, woken when their client's queue grows.
#[derive(Default)]
pub struct Watchers {
    next: std::sync::atomic::AtomicU64,
    waiting: Mutex<Waiting>,
}

/// One registered watcher; dropping it removes the registration.
pub struct WatchGuard<'a> {
    watchers: &'a Watchers,
    client: ClientId,
    id: u64,
    /// Receives a unit whenever the client's queue may have grown.
    pub woken: Receiver<()>,
}

impl Watchers {
    /// Registers a watcher of `client`.
    pub fn register(&self, client: &ClientId) -> WatchGuard<'_> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = async_std::channel::bounded(1);
        self.lock()
            .entry(client.clone())
            .or_default()
            .push((id, tx));
        WatchGuard {
            watchers: self,
            client: client.clone(),
            id,
            woken: rx,
        }
    }

    /// Wakes every watcher of `client`.
    pub fn wake(&self, client: &ClientId) {
        if let Some(list) = self.lock().get(client) {
            for (_, tx) in list {
                // A full channel already holds a wake-up: nothing is lost.
                let _ = tx.try_send(());
            }
        }
    }

    /// Wakes every watcher (after a broker resync, when notifications may have been missed).
    pub fn wake_all(&self) {
        for list in self.lock().values() {
            for (_, tx) in list {
                let _ = tx.try_send(());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // A panic while holding this lock cannot leave the map inconsistent: recover it.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.watchers.lock();
        if let Some(list) = map.get_mut(&self.client) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[async_std::test]
    async fn watchers_are_woken_per_client_and_removed_on_drop() {
        let w = Watchers::default();
        let a = ClientId::new("a").unwrap();
        let b = ClientId::new("b").unwrap();
        let ga = w.register(&a);
        let gb = w.register(&b);
        w.wake(&a);
        w.wake(&a); // a second wake while one is pending is absorbed
        assert!(ga.woken.try_recv().is_ok());
        assert!(ga.woken.try_recv().is_err());
        assert!(gb.woken.try_recv().is_err());
        w.wake_all();
        assert!(gb.woken.try_recv().is_ok());
        drop(ga);
        drop(gb);
        assert!(w.lock().is_empty());
    }
}
