//! A node's bounded memory of one value per client, shared by the store's clones: what the
//! node has seen, kept only as a shortcut or a safeguard, so that forgetting an entry is
//! always safe. Beyond its bound an arbitrary entry is forgotten to make room.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use herald_core::ClientId;

/// At most `max` clients' values.
pub(crate) struct Memo<V> {
    map: Mutex<HashMap<String, V>>,
    max: usize,
}

impl<V: Copy> Memo<V> {
    /// Remembers at most `max` clients (0: none).
    pub(crate) fn new(max: usize) -> Memo<V> {
        Memo {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, V>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `client`'s value, if remembered.
    pub(crate) fn get(&self, client: &str) -> Option<V> {
        self.map().get(client).copied()
    }

    /// Sets `client`'s value to `f` of its current one (`None` when not remembered), making
    /// room by forgetting another client when full.
    pub(crate) fn update(&self, client: &str, f: impl FnOnce(Option<V>) -> V) {
        let mut map = self.map();
        if let Some(v) = map.get_mut(client) {
            *v = f(Some(*v));
            return;
        }
        if map.len() >= self.max {
            let Some(victim) = map.keys().next().cloned() else {
                return; // max is 0: remember nothing
            };
            map.remove(&victim);
        }
        map.insert(client.to_owned(), f(None));
    }

    /// Forgets `client`'s value.
    pub(crate) fn forget(&self, client: &str) {
        self.map().remove(client);
    }

    /// How many clients are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

/// Ids a read passed without having seen them, though they might still be inserted (another
/// API node's insert slower than `settle`). A slot's mark must not move over such an id: if
/// the copy lands later, it is still read (after the messages that passed it) instead of
/// being taken for acknowledged. Per client, the lowest such id, for at most
/// [`PASSED_HOLES_MAX`] clients (beyond, an arbitrary one is forgotten); such holes are rare.
pub(crate) struct PassedHoles(Memo<i64>);

/// Most clients whose passed holes a node remembers.
const PASSED_HOLES_MAX: usize = 10_000;

impl Default for PassedHoles {
    fn default() -> Self {
        PassedHoles(Memo::new(PASSED_HOLES_MAX))
    }
}

impl PassedHoles {
    /// A read of `client` passed `id`.
    pub(crate) fn pass(&self, client: &ClientId, id: i64) {
        self.0
            .update(client.as_str(), |lowest| lowest.map_or(id, |l| l.min(id)));
    }

    /// How far a mark of `client` may move: below the lowest id passed.
    pub(crate) fn cap(&self, client: &ClientId, through: i64) -> i64 {
        match self.0.get(client.as_str()) {
            Some(hole) => through.min(hole - 1),
            None => through,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_is_bounded_and_forgets_on_demand() {
        let memo = Memo::new(2);
        memo.update("a", |_| 1);
        memo.update("b", |_| 2);
        memo.update("a", |old| old.map_or(0, |v| v + 2));
        assert_eq!((memo.get("a"), memo.get("b")), (Some(3), Some(2)));
        memo.update("c", |_| 4);
        assert_eq!(memo.len(), 2, "one forgotten to make room");
        assert_eq!(memo.get("c"), Some(4));
        memo.forget("c");
        assert_eq!(memo.get("c"), None);
        let none = Memo::new(0);
        none.update("a", |_| 1);
        assert_eq!(none.get("a"), None);
    }
}
