//! moka in front of a shared store: reads try the in-process L1 first and fill it from the
//! shared store; writes go to the shared store first (a failure fails the write, so an
//! answer never claims an id that was not stored) and then to the L1.
//!
//! Each replica's L1 may keep a code that another replica has since overwritten (an id
//! relabeled with a different text) until it is evicted; `--cache-ttl-s` bounds that window.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{IdStore, StoreError, StoredCode};

pub struct TieredStore {
    pub l1: Arc<dyn IdStore>,
    pub shared: Arc<dyn IdStore>,
}

impl IdStore for TieredStore {
    fn get_many<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<StoredCode>>>, StoreError>> {
        Box::pin(async move {
            let mut found = self.l1.get_many(ids).await?;
            let missing: Vec<usize> = (0..ids.len()).filter(|&i| found[i].is_none()).collect();
            if missing.is_empty() {
                return Ok(found);
            }
            let keys: Vec<String> = missing.iter().map(|&i| ids[i].clone()).collect();
            let shared = self.shared.get_many(&keys).await?;
            let mut fill = Vec::new();
            for (&i, hit) in missing.iter().zip(shared) {
                if let Some(code) = hit {
                    fill.push((ids[i].clone(), code.clone()));
                    found[i] = Some(code);
                }
            }
            if !fill.is_empty() {
                self.l1.put_many(fill).await?;
            }
            Ok(found)
        })
    }

    fn put_many(
        &self,
        entries: Vec<(String, Arc<StoredCode>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.shared.put_many(entries.clone()).await?;
            self.l1.put_many(entries).await
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.shared.health()
    }

    fn report(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.l1.report().await;
            self.shared.report().await;
        })
    }
}
