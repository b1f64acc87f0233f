//! What the store's test files share (each test binary uses part of it).
#![allow(dead_code)]

/// A small xorshift generator: the model tests are reproducible from their seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The stores of a contract suite: each in a fresh data directory (so purge counts are
/// exact), kept until this is dropped.
#[derive(Default)]
pub struct FreshStores(std::cell::RefCell<Vec<tempfile::TempDir>>);

impl FreshStores {
    /// A new store with `retention`.
    pub fn open(
        &self,
        retention: herald_core::Retention,
    ) -> std::future::Ready<herald_store_embedded::EmbeddedStore> {
        use herald_store_embedded::{EmbeddedConfig, EmbeddedStore};
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(EmbeddedConfig::new(dir.path()).retention(retention)).unwrap();
        self.0.borrow_mut().push(dir);
        std::future::ready(store)
    }
}
