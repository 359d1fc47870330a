//! [`OfflineSync::builder`]: an engine with the default layers, a SQLite
//! file in a directory, the REST adapter at a base URL and the
//! connectivity monitor probing that same API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sync_core::ConflictResolver;
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions, SyncError};
use sync_net::{
    HttpSyncApiAdapter, HttpSyncApiAdapterBuilder, InternetCheckOption, InternetConnectionMonitor, NetError,
    PullStrategy, RequestShape,
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
    ///
    /// The engine counts as online when that API answers a `GET` of
    /// `base_url` with any HTTP status (a 404 or a 401 proves it reachable
    /// as well as a 200); a refused connection, a failed DNS lookup or TLS
    /// handshake, or no answer within 3 s is offline. No other host is
    /// contacted unless you ask for it
    /// ([`OfflineSyncBuilder::probe_public_internet`]).
    pub fn builder(dir: impl Into<PathBuf>, base_url: impl Into<String>) -> OfflineSyncBuilder {
        let base_url = base_url.into();
        OfflineSyncBuilder {
            dir: dir.into(),
            adapter: HttpSyncApiAdapter::builder(base_url.clone()),
            base_url,
            options: OfflineSyncOptions::default(),
            resolver: None,
            health_path: None,
            public_probes: false,
            store: None,
            root_certificates: Vec::new(),
            references: Vec::new(),
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
    public_probes: bool,
    store: Option<SqliteStoreOptions>,
    root_certificates: Vec<Vec<u8>>,
    /// Declared references: (entity, field, parent).
    references: Vec<(String, String, String)>,
}

impl OfflineSyncBuilder {
    /// Declares that documents of `entity` name a record of `parent` in
    /// their `field`: changes reach the server parent first, even with
    /// several requests out, and a parked parent holds its dependants (see
    /// [`sync_engine::OfflineSyncEngineBuilder::reference`]). Cycles are
    /// refused at build.
    pub fn reference(mut self, entity: &str, field: &str, parent: &str) -> Self {
        self.references
            .push((entity.to_owned(), field.to_owned(), parent.to_owned()));
        self
    }

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

    /// How every entity is spoken to: a preset for your server
    /// ([`RequestShape::json_server`], [`RequestShape::django_rest_framework`],
    /// [`RequestShape::pocketbase`], [`RequestShape::directus`],
    /// [`RequestShape::postgrest`]) or your own. Default
    /// [`RequestShape::rest`], the reference server's shape.
    pub fn shape(mut self, shape: RequestShape) -> Self {
        self.adapter = self.adapter.shape(shape);
        self
    }

    /// Pulls `entity`'s server changes down with `strategy`: the change
    /// feed of `docs/server-contract.md` ([`PullStrategy::change_feed`]),
    /// a filtered list ([`PullStrategy::filtered_list`]) or a snapshot
    /// ([`PullStrategy::snapshot`]). Every sync run then pushes first and
    /// pulls after; a pending local change is never overwritten. Declaring
    /// an entity again replaces its strategy. Default: nothing is pulled.
    pub fn pull(mut self, entity: impl Into<String>, strategy: impl Into<PullStrategy>) -> Self {
        self.adapter = self.adapter.pull(entity, strategy);
        self
    }

    /// How one entity is spoken to, overriding [`Self::shape`] for it.
    pub fn entity_shape(mut self, entity: impl Into<String>, shape: RequestShape) -> Self {
        self.adapter = self.adapter.entity_shape(entity, shape);
        self
    }

    /// Adjusts the REST adapter (headers, auth hook, request shapes, TLS
    /// roots, timeouts).
    pub fn adapter(
        mut self,
        configure: impl FnOnce(HttpSyncApiAdapterBuilder) -> HttpSyncApiAdapterBuilder,
    ) -> Self {
        self.adapter = configure(self.adapter);
        self
    }

    /// Probes `GET base_url + path` (such as `/health`) instead of
    /// `base_url` itself to decide whether the API is reachable; success is
    /// a 2xx or 3xx status within 3 s, so a server up but unhealthy counts
    /// as offline. Default: any answer to `GET base_url` counts.
    pub fn probe_api_health(mut self, path: impl Into<String>) -> Self {
        self.health_path = Some(path.into());
        self
    }

    /// Also probes public endpoints run by third parties for connectivity
    /// checks ([`sync_net::public_check_options`]: Cloudflare, Google,
    /// Apple): online when any of them or your API answers. Each probe
    /// tells those operators the device's IP address. Default: off, only
    /// your API is probed.
    pub fn probe_public_internet(mut self) -> Self {
        self.public_probes = true;
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
    /// Cancel safety: cancel-safe. Dropped before it returns, it leaves no
    /// engine; a store it had opened is closed as it is dropped, and its
    /// file lock goes once the store's writer task has ended (an open
    /// right after may briefly get `StoreErrorKind::InUse`: retry).
    ///
    /// # Errors
    /// [`OpenError`] naming the layer that failed.
    pub async fn build(self) -> Result<OfflineSyncEngine, OpenError> {
        // The adapter first: a bad base URL is reported as such.
        let adapter = self.adapter.build()?;
        let monitor = default_monitor(
            &self.base_url,
            self.health_path.as_deref(),
            self.public_probes,
            &self.root_certificates,
            self.options.connectivity_check_interval,
        )?;
        let store = self
            .store
            .unwrap_or_else(|| SqliteStoreOptions::in_dir(&self.dir))
            .open()
            .await?;
        let adapter = Arc::new(adapter);
        let mut engine = OfflineSyncEngine::builder(
            Arc::new(store),
            Arc::clone(&adapter) as Arc<dyn sync_core::SyncApiAdapter>,
            Arc::new(monitor),
        )
        .options(self.options);
        for entity in adapter.pulled_entities() {
            engine = engine.pull(
                entity.as_str(),
                Arc::clone(&adapter) as Arc<dyn sync_core::PullSource>,
            );
        }
        for (entity, field, parent) in &self.references {
            engine = engine.reference(entity, field, parent);
        }
        if let Some(resolver) = self.resolver {
            engine = engine.conflict_resolver_arc(resolver);
        }
        Ok(engine.build().await?)
    }
}

/// The default connectivity monitor: the API's base URL (any answer
/// counts) or its health path, and the public endpoints only when asked for.
fn default_monitor(
    base_url: &str,
    health_path: Option<&str>,
    public_probes: bool,
    root_certificates: &[Vec<u8>],
    check_interval: Option<Duration>,
) -> Result<InternetConnectionMonitor, NetError> {
    let mut monitor = InternetConnectionMonitor::builder();
    for certificate in root_certificates {
        monitor = monitor.add_root_certificate(certificate.clone());
    }
    if let Some(interval) = check_interval {
        monitor = monitor.check_interval(interval);
    }
    let api = match health_path {
        Some(path) => InternetCheckOption::new(&format!("{}{path}", base_url.trim_end_matches('/')))?,
        None => InternetCheckOption::any_answer(base_url)?,
    };
    monitor = monitor.add_option(api);
    if public_probes {
        monitor = monitor.probe_public_internet();
    }
    monitor.build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use sync_core::ConnectivityMonitor;
    use tokio_stream::StreamExt;

    use super::*;

    /// A loopback HTTP server answering 404 to every request, on threads
    /// of its own; counts the requests.
    fn not_found_server() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                });
            }
        });
        (url, requests)
    }

    /// A loopback URL where nothing listens.
    fn closed_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    /// The first connectivity value of the default engine for `base_url`.
    async fn first_connectivity(base_url: &str) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let engine = OfflineSync::builder(dir.path(), base_url).build().await.unwrap();
        let online = tokio::time::timeout(Duration::from_secs(30), engine.watch_connectivity().next())
            .await
            .expect("the probe took longer than its timeout")
            .expect("the stream gave a first value");
        engine.close().await;
        online
    }

    #[tokio::test]
    async fn the_default_engine_is_online_when_its_api_answers_even_404() {
        let (url, requests) = not_found_server();
        assert!(first_connectivity(&url).await, "a 404 from the API is online");
        assert!(requests.load(Ordering::SeqCst) >= 1, "the API itself was probed");
    }

    #[tokio::test]
    async fn the_default_engine_is_offline_when_its_api_does_not_answer() {
        assert!(!first_connectivity(&closed_port()).await);
    }

    fn hosts(monitor: &InternetConnectionMonitor) -> Vec<String> {
        monitor
            .options()
            .iter()
            .map(|option| option.uri().to_string())
            .collect()
    }

    #[test]
    fn no_default_probe_names_a_third_party_host() {
        let base = "https://api.example.com/v2/";
        let default = default_monitor(base, None, false, &[], None).unwrap();
        assert_eq!(hosts(&default), ["https://api.example.com/v2/"]);
        let health = default_monitor(base, Some("/health"), false, &[], None).unwrap();
        assert_eq!(hosts(&health), ["https://api.example.com/v2/health"]);
        let public = default_monitor(base, None, true, &[], None).unwrap();
        let probed = hosts(&public);
        assert_eq!(probed[0], "https://api.example.com/v2/");
        assert_eq!(
            probed.len(),
            1 + sync_net::public_check_options().len(),
            "{probed:?}"
        );
    }

    #[tokio::test]
    async fn the_health_probe_wants_a_success_status_and_the_default_any_answer() {
        let (url, _) = not_found_server();
        let default = default_monitor(&url, None, false, &[], None).unwrap();
        assert!(default.is_connected().await);
        let health = default_monitor(&url, Some("/health"), false, &[], None).unwrap();
        assert!(!health.is_connected().await, "a 404 health check is not healthy");
    }
}
