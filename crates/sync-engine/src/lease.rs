//! [`StoreLease`]: one engine's exclusive claim on a store within this
//! process.
//!
//! Building an engine recovers every item left in flight, and a pass
//! reclaims items no send of its own owns; both are only right when no
//! other engine is sending from the same store: two engines over one store
//! would release each other's attempts and send the same item twice at
//! once. (Across processes the SQLite store's file lock does the same job.)

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use sync_core::SyncStore;

use crate::error::SyncError;
use crate::shared::lock;

/// The stores driven by a live engine of this process, by address.
static DRIVEN_STORES: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

/// Held while an engine drives a store; dropping it gives the store back.
pub(crate) struct StoreLease {
    address: usize,
}

impl StoreLease {
    pub(crate) fn acquire(store: &Arc<dyn SyncStore>) -> Result<Self, SyncError> {
        // The address identifies the store while the lease lives: the
        // engine holding the lease keeps the store alive.
        let address = Arc::as_ptr(store).cast::<()>() as usize;
        if lock(&DRIVEN_STORES).insert(address) {
            Ok(Self { address })
        } else {
            Err(SyncError::StoreInUse)
        }
    }
}

impl Drop for StoreLease {
    fn drop(&mut self) {
        lock(&DRIVEN_STORES).remove(&self.address);
    }
}
