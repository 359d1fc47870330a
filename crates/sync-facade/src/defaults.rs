//! [`OfflineSync::builder`]: an engine with the default layers, a SQLite
//! file in a directory, the REST adapter at a base URL and the
//! connectivity monitor.

use std::path::PathBuf;
use std::sync::Arc;

use sync_core::ConflictResolver;
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions, SyncError};
use sync_net::{
    HttpSyncApiAdapter, HttpSyncApiAdapterBuilder, InternetCheckOption, InternetConnectionMonitor, NetError,
};
use sync_store_sqlite::SqliteStoreOptions;

/// Why the default engine could not be opened.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The adapter or the monitor is misconfigured.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] sync_core::StoreError),
    /// The engine could not be built.
    #[error(transparent)]
    Engine(#[from] SyncError),
}

/// Entry point for an engine with the default layers.
#[derive(Debug, Clone, Copy)]
pub struct OfflineSync;

impl OfflineSync {
    /// An engine storing `offline_sync.db` in `dir` and sending to the REST
    /// API at `base_url`.
    pub fn builder(dir: impl Into<PathBuf>, base_url: impl Into<String>) -> OfflineSyncBuilder {
        let base_url = base_url.into();
        OfflineSyncBuilder {
            dir: dir.into(),
            adapter: HttpSyncApiAdapter::builder(base_url.clone()),
            base_url,
            options: OfflineSyncOptions::default(),
            resolver: None,
            health_path: None,
            store: None,
            root_certificates: Vec::new(),
        }
    }
}

/// Builds an engine with the default layers; every setting has a default.
#[must_use]
pub struct OfflineSyncBuilder {
    dir: PathBuf,
    base_url: String,
    adapter: HttpSyncApiAdapterBuilder,
    options: OfflineSyncOptions,
    resolver: Option<Arc<dyn ConflictResolver>>,
    health_path: Option<String>,
    store: Option<SqliteStoreOptions>,
    root_certificates: Vec<Vec<u8>>,
}

impl OfflineSyncBuilder {
    /// Sync options. Default [`OfflineSyncOptions::default`].
    pub fn options(mut self, options: OfflineSyncOptions) -> Self {
        self.options = options;
        self
    }

    /// Resolves conflicts before every update. Default: none (local wins).
    pub fn conflict_resolver(mut self, resolver: impl ConflictResolver + 'static) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Adjusts the REST adapter (headers, auth hook, path builder, TLS
    /// roots, timeouts).
    pub fn adapter(
        mut self,
        configure: impl FnOnce(HttpSyncApiAdapterBuilder) -> HttpSyncApiAdapterBuilder,
    ) -> Self {
        self.adapter = configure(self.adapter);
        self
    }

    /// Probes `base_url + path` (such as `/health`) instead of public
    /// endpoints to decide whether the API is reachable. Default: the
    /// public endpoints.
    pub fn probe_api_health(mut self, path: impl Into<String>) -> Self {
        self.health_path = Some(path.into());
        self
    }

    /// Trusts an extra root certificate (PEM or DER), such as your own CA,
    /// for the REST adapter and the connectivity probe alike (a root added
    /// through [`Self::adapter`] reaches the adapter only, so a probe of
    /// [`Self::probe_api_health`] would find your server untrusted). The
    /// Mozilla roots stay trusted too. Default: none.
    pub fn add_root_certificate(mut self, certificate: impl Into<Vec<u8>>) -> Self {
        let certificate = certificate.into();
        self.adapter = self.adapter.add_root_certificate(certificate.clone());
        self.root_certificates.push(certificate);
        self
    }

    /// Store options, replacing the default file in the directory.
    pub fn store_options(mut self, options: SqliteStoreOptions) -> Self {
        self.store = Some(options);
        self
    }

    /// Opens the store, builds the adapter and monitor, and builds the
    /// engine (recovering items interrupted mid-attempt).
    ///
    /// # Errors
    /// [`OpenError`] naming the layer that failed.
    pub async fn build(self) -> Result<OfflineSyncEngine, OpenError> {
        let adapter = self.adapter.build()?;
        let mut monitor = InternetConnectionMonitor::builder();
        for certificate in self.root_certificates {
            monitor = monitor.add_root_certificate(certificate);
        }
        if let Some(interval) = self.options.connectivity_check_interval {
            monitor = monitor.check_interval(interval);
        }
        if let Some(path) = &self.health_path {
            let url = format!("{}{path}", self.base_url.trim_end_matches('/'));
            monitor = monitor
                .use_default_options(false)
                .add_option(InternetCheckOption::new(&url)?);
        }
        let monitor = monitor.build()?;
        let store = self
            .store
            .unwrap_or_else(|| SqliteStoreOptions::in_dir(&self.dir))
            .open()
            .await?;
        let mut engine = OfflineSyncEngine::builder(Arc::new(store), Arc::new(adapter), Arc::new(monitor))
            .options(self.options);
        if let Some(resolver) = self.resolver {
            engine = engine.conflict_resolver_arc(resolver);
        }
        Ok(engine.build().await?)
    }
}
