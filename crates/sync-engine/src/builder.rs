//! [`OfflineSyncEngineBuilder`]: an engine from any store, adapter and
//! monitor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::time::Duration;

use sync_core::depends::{Reference, References};
use sync_core::{
    Clock, ConflictResolver, ConnectivityMonitor, EntityName, PullSource, SyncApiAdapter, SyncStore,
};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;

use crate::engine::OfflineSyncEngine;
use crate::error::SyncError;
use crate::lease::StoreLease;
use crate::link::Link;
use crate::manager::SyncReport;
use crate::options::OfflineSyncOptions;
use crate::pull::{PullProgress, PullSetup};
use crate::shared::Shared;

/// How long probes back off at most while offline when the app set no
/// `connectivity_check_interval`.
const DEFAULT_MAX_OFFLINE_BACKOFF: Duration = Duration::from_secs(30);

/// Builds an [`OfflineSyncEngine`] from any store, adapter and monitor.
#[must_use]
pub struct OfflineSyncEngineBuilder {
    store: Arc<dyn SyncStore>,
    adapter: Arc<dyn SyncApiAdapter>,
    monitor: Arc<dyn ConnectivityMonitor>,
    resolver: Option<Arc<dyn ConflictResolver>>,
    options: OfflineSyncOptions,
    clock: Arc<dyn Clock>,
    /// Entities to pull, as the app named them (checked at build).
    pulls: Vec<(String, Arc<dyn PullSource>)>,
    /// References as declared: (entity, field, parent), checked at build.
    references: Vec<(String, String, String)>,
}

impl OfflineSyncEngineBuilder {
    pub(crate) fn new(
        store: Arc<dyn SyncStore>,
        adapter: Arc<dyn SyncApiAdapter>,
        monitor: Arc<dyn ConnectivityMonitor>,
    ) -> Self {
        Self {
            store,
            adapter,
            monitor,
            resolver: None,
            options: OfflineSyncOptions::default(),
            clock: Arc::new(sync_core::SystemClock),
            pulls: Vec::new(),
            references: Vec::new(),
        }
    }

    /// Declares that documents of `entity` name a record of `parent` in
    /// their `field` (a string or an integer id; `null` or missing refers
    /// to nothing). A change to such a document is sent only once the
    /// parent's create has reached the server: while the parent's attempt
    /// is out (concurrent requests included) it waits, and while the
    /// parent has failed it is held, with the reason in its item's
    /// `last_error` (a parked parent holds its dependants, not the rest of
    /// the queue). Default: none. Cycles (an entity referring to itself
    /// included) are refused at build.
    pub fn reference(mut self, entity: &str, field: &str, parent: &str) -> Self {
        self.references
            .push((entity.to_owned(), field.to_owned(), parent.to_owned()));
        self
    }

    /// Pulls `entity`'s server changes from `source`: every sync run pushes
    /// first, then pulls each declared entity in declaration order;
    /// [`crate::SyncManager::pull_now`] pulls at once, and auto-sync pulls
    /// when connectivity returns and every
    /// [`OfflineSyncOptions::pull_interval`]. Declaring an entity again
    /// replaces its source. Default: nothing is pulled.
    pub fn pull(mut self, entity: &str, source: Arc<dyn PullSource>) -> Self {
        self.pulls.retain(|(name, _)| name != entity);
        self.pulls.push((entity.to_owned(), source));
        self
    }

    /// Resolves conflicts before every update. Default: none (local wins).
    pub fn conflict_resolver(mut self, resolver: impl ConflictResolver + 'static) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Like [`Self::conflict_resolver`], for a resolver already shared.
    pub fn conflict_resolver_arc(mut self, resolver: Arc<dyn ConflictResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Sync options. Default [`OfflineSyncOptions::default`].
    pub fn options(mut self, options: OfflineSyncOptions) -> Self {
        self.options = options;
        self
    }

    /// The clock for timestamps and retry times. Default: the system
    /// clock. Tests with paused tokio time pass [`crate::TokioClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the engine and recovers items left in flight by a previous
    /// process. Must run inside a tokio runtime.
    ///
    /// Cancel safety: dropping the future before it completes leaves no
    /// engine and no lease; the recovery it may have run is idempotent.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for options that cannot work (zero retries,
    /// zero concurrency, a zero pull page size), a pulled entity's
    /// invalid name, or references with an invalid name or a cycle
    /// ([`sync_core::ValidationError::ReferenceCycle`]); [`SyncError::StoreInUse`] when another engine of
    /// this process drives the store; [`SyncError::Store`] if recovery
    /// fails.
    pub async fn build(self) -> Result<OfflineSyncEngine, SyncError> {
        let policy = self.options.retry_policy()?;
        if self.options.concurrency == 0 {
            return Err(SyncError::Invalid(sync_core::ValidationError::ZeroConcurrency));
        }
        if self.options.pull_page_size == 0 {
            return Err(SyncError::Invalid(sync_core::ValidationError::ZeroPullPageSize));
        }
        let mut pull = PullSetup::default();
        for (name, source) in self.pulls {
            pull.sources.push((EntityName::new(name)?, source));
        }
        let mut declared = Vec::with_capacity(self.references.len());
        for (entity, field, parent) in self.references {
            declared.push(Reference {
                entity: EntityName::new(entity)?,
                field,
                parent: EntityName::new(parent)?,
            });
        }
        let references = References::new(declared)?;
        // Nothing of this engine is in flight yet: anything marked so was
        // left by a process that stopped mid-attempt, unless another engine
        // of this process drives the same store, which the lease refuses.
        let lease = StoreLease::acquire(&self.store)?;
        let recovered = self.store.recover_interrupted(self.clock.now()).await?;
        if recovered > 0 {
            tracing::info!(recovered, "recovered items interrupted mid-attempt");
        }
        // The clock may have moved back while no engine ran.
        let now = self.clock.now();
        let link = Link::new(
            self.options.connectivity_probe_min_interval_while_online,
            self.options
                .connectivity_check_interval
                .unwrap_or(DEFAULT_MAX_OFFLINE_BACKOFF),
            self.options.connectivity_probe_timeout,
        );
        let shared = Arc::new(Shared {
            store: self.store,
            adapter: self.adapter,
            monitor: self.monitor,
            resolver: self.resolver,
            policy,
            options: self.options,
            clock: self.clock,
            link,
            pull,
            pull_progress: tokio::sync::watch::channel(PullProgress::default()).0,
            events: crate::events::EventBus::default(),
            references,
            last_pull: std::sync::Mutex::new(None),
            run_lock: Mutex::new(()),
            full_requested: AtomicU64::new(0),
            full_claimed: AtomicU64::new(0),
            full_served: AtomicU64::new(0),
            wake: Notify::new(),
            work: Notify::new(),
            timers_changed: Notify::new(),
            background_pending: AtomicBool::new(false),
            claims_unsettled: AtomicBool::new(false),
            latest_now: AtomicI64::new(now.as_millis()),
            clock_moved_back: AtomicBool::new(false),
            shutdown: tokio::sync::watch::channel(false).0,
            last_report: std::sync::Mutex::new(SyncReport::default()),
            closed: AtomicBool::new(false),
            tasks: std::sync::Mutex::new(JoinSet::new()),
            auto_sync: std::sync::Mutex::new(None),
            closing: tokio::sync::OnceCell::new(),
            lease: std::sync::Mutex::new(Some(lease)),
        });
        shared.rebase_timers(now).await?;
        Ok(OfflineSyncEngine::from_shared(shared))
    }
}
