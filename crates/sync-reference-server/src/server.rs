//! The listener, the connections and the on/off switch.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{Dialect, IdempotencyMode, ServerConfig, normalize_prefix};
use crate::error::Error;
use crate::fault::FaultPlan;
use crate::handler::{SeedError, Shared};
use crate::log::RequestRecord;
use crate::persist;
use crate::store::{Collections, Snapshot};

/// How long going down waits for requests in progress to be answered
/// before cutting their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long to pause after a failed accept (out of file descriptors, say),
/// so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Where port `0` picks a port: below the ephemeral ranges of Linux
/// (32768–60999), macOS and Windows (49152–65535). The kernel hands out
/// ephemeral ports on its own (another server's port 0, a client's source
/// port), and while a server is down one of those could take its port and
/// break the resume; ports outside the range are only ever taken on
/// purpose.
const PICKED_PORTS: Range<u16> = 20_000..32_768;

/// How many ports to try before leaving the choice to the kernel.
const PICK_ATTEMPTS: u16 = 64;

/// A running reference server on `127.0.0.1`.
///
/// Dropping it stops it too, without waiting; [`ReferenceServer::shutdown`]
/// waits until the port is closed.
#[derive(Debug)]
pub struct ReferenceServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The serving task while online; `None` while down.
    running: Mutex<Option<Running>>,
    /// Mirrors `running.is_some()` for a lock-free [`Self::is_online`].
    online: AtomicBool,
}

#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ReferenceServer {
    /// Loads the data file (when configured and present), binds
    /// `127.0.0.1:{port}` and starts serving.
    ///
    /// # Errors
    /// [`Error::InvalidPrefix`], [`Error::InvalidField`],
    /// [`Error::ReadDataFile`],
    /// [`Error::InvalidDataFile`] (the file is left untouched), or
    /// [`Error::Bind`] when the port is taken.
    pub async fn start(config: ServerConfig) -> Result<Self, Error> {
        let prefix = normalize_prefix(&config.prefix)?;
        let options = config.store_options()?;
        let collections = match &config.data_file {
            Some(path) => persist::load(path, version_base_after_restart(), options)?,
            None => Collections::new(0, options),
        };
        let listener = if config.port == 0 {
            pick_port()?
        } else {
            bind(local(config.port))?
        };
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: local(config.port),
            source,
        })?;
        let shared = Arc::new(Shared::new(prefix, config.dialect, config.data_file, collections));
        shared.set_faults(config.faults);
        shared.require_bearer(config.bearer_token);
        shared.set_idempotency(config.idempotency);
        shared.set_assigned_ids(config.assigned_ids);
        let running = Running::spawn(listener, Arc::clone(&shared));
        Ok(Self {
            shared,
            addr,
            running: Mutex::new(Some(running)),
            online: AtomicBool::new(true),
        })
    }

    /// The address served, `127.0.0.1:{port}`; the same after a
    /// [`Self::resume`].
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's origin, `http://127.0.0.1:{port}`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL clients put routes after: [`Self::url`] plus the prefix,
    /// such as `http://127.0.0.1:3000/api`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("{}{}", self.url(), self.shared.prefix())
    }

    /// Whether the server is up (started or resumed, not stopped).
    #[must_use]
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::SeqCst)
    }

    /// Takes the server down, keeping its data: the listener is closed (new
    /// connections are refused), idle connections are closed, and requests
    /// in progress are answered first (those still running after 5 s are
    /// cut). Returns once all of that is done; does nothing when already
    /// down.
    ///
    /// On Unix a child process spawned at that very moment holds a copy of
    /// the listener until it executes its program, and the port accepts
    /// connections until then: tests that count on refusals should not
    /// spawn processes meanwhile.
    pub async fn stop(&self) {
        let mut running = self.running.lock().await;
        if let Some(current) = running.take() {
            self.online.store(false, Ordering::SeqCst);
            current.stop().await;
        }
    }

    /// Brings a stopped server back on the same port with the same data,
    /// idempotency keys and request log. Does nothing when already up.
    ///
    /// # Errors
    /// [`Error::Bind`] if something else took the port meanwhile (with port
    /// `0` the port is outside the kernel's ephemeral range, so only
    /// something binding it on purpose can); the server stays down and
    /// `resume` may be tried again.
    pub async fn resume(&self) -> Result<(), Error> {
        let mut running = self.running.lock().await;
        if running.is_none() {
            let listener = bind(self.addr)?;
            *running = Some(Running::spawn(listener, Arc::clone(&self.shared)));
            self.online.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Stops the server for good: as [`Self::stop`], then drops it.
    pub async fn shutdown(self) {
        self.stop().await;
    }

    /// The data now: collection → id → object. Collections without records
    /// are left out.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// The records of `collection` now, in insertion order (as
    /// `GET /{collection}` lists them without parameters, but for
    /// soft-deleted records, which are left out as in [`Self::snapshot`]);
    /// empty for a collection without records.
    #[must_use]
    pub fn records(&self, collection: &str) -> Vec<Value> {
        self.shared.records(collection)
    }

    /// How many records `collection` holds now (soft-deleted ones not
    /// counted): the length of [`Self::records`], without copying them.
    #[must_use]
    pub fn record_count(&self, collection: &str) -> usize {
        self.shared.record_count(collection)
    }

    /// Every request addressed to a collection so far, oldest first.
    #[must_use]
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.request_log()
    }

    /// The requests that changed the data, oldest first: the log filtered
    /// on [`RequestRecord::applied`].
    #[must_use]
    pub fn applied_requests(&self) -> Vec<RequestRecord> {
        let mut log = self.shared.request_log();
        log.retain(|record| record.applied);
        log
    }

    /// Empties the request log (the data and the idempotency keys stay), so
    /// a test can count from a known point.
    pub fn clear_request_log(&self) {
        self.shared.clear_request_log();
    }

    /// Puts `plan` in force from the next request on, or (with `None`)
    /// ends the fault mode. A new plan starts counting afresh: its bursts
    /// are whole and every operation is new to it (the same plan set
    /// again replays the same decisions for the same requests).
    pub fn set_faults(&self, plan: Option<FaultPlan>) {
        self.shared.set_faults(plan);
    }

    /// How many faults were injected since the server started, by
    /// [`crate::Fault::name`] (kinds never injected are absent). Not reset
    /// by [`Self::set_faults`] nor [`Self::clear_request_log`]; the
    /// request log tells which request got which.
    #[must_use]
    pub fn fault_counts(&self) -> BTreeMap<String, u64> {
        self.shared.fault_counts()
    }

    /// From the next request on, requires `Authorization: Bearer {token}`
    /// (exactly) on requests to collections, or (with `None`) nothing.
    /// Others get `401` with a JSON error and `WWW-Authenticate: Bearer`,
    /// are not applied, not faulted, and are logged. `/health` stays
    /// open.
    pub fn require_bearer(&self, token: Option<String>) {
        self.shared.require_bearer(token);
    }

    /// From the next request on, honours `Idempotency-Key` on writes
    /// ([`IdempotencyMode::Replay`]) or ignores it as most real APIs do
    /// ([`IdempotencyMode::Ignore`]). The keys remembered so far are kept
    /// (though not consulted while ignored): switching back replays them
    /// again, and writes applied while ignoring are not remembered.
    pub fn set_idempotency(&self, mode: IdempotencyMode) {
        self.shared.set_idempotency(mode);
    }

    /// The [`IdempotencyMode`] in force.
    #[must_use]
    pub fn idempotency(&self) -> IdempotencyMode {
        self.shared.idempotency()
    }

    /// From the next request on, assigns the ids of created records on the
    /// server (`true`) or lets the clients name them (`false`); see
    /// [`ServerConfig::assigned_ids`]. The ids assigned so far are
    /// remembered either way, so switching back on goes on after the last
    /// one.
    pub fn set_assigned_ids(&self, assign: bool) {
        self.shared.set_assigned_ids(assign);
    }

    /// Whether the server assigns the ids of created records now.
    #[must_use]
    pub fn assigned_ids(&self) -> bool {
        self.shared.assigned_ids()
    }

    /// The last id assigned in `collection` (with a data file, in this run
    /// or an earlier one), `0` when none was: the next create there gets a
    /// greater one.
    #[must_use]
    pub fn last_assigned_id(&self, collection: &str) -> u64 {
        self.shared.last_assigned_id(collection)
    }

    /// The [`Dialect`] spoken (fixed at start).
    #[must_use]
    pub fn dialect(&self) -> Dialect {
        self.shared.dialect()
    }

    /// The version of record `id` in `collection`, `None` when there is no
    /// such record: the answers carrying the record send it as
    /// `ETag: "{version}"`, and `If-Match` compares with it. Every change
    /// applied to the record gives it a new one, never handed out before
    /// on this server.
    #[must_use]
    pub fn record_version(&self, collection: &str, id: &str) -> Option<u64> {
        self.shared.record_version(collection, id)
    }

    /// Forgets the deletions (tombstones, and soft-deleted records, which
    /// leave the lists too) of `collection` whose change stamp is at most
    /// `through` (`None`: all of them), as
    /// `POST /_admin/{collection}/purge-tombstones[?through=N]` does; from
    /// then on a change-feed `since` below the latest one forgotten gets
    /// `410 Gone` ([`Self::oldest_cursor`]). Returns how many were
    /// forgotten. With a data file, the file is written again when
    /// soft-deleted records went (on failure it is written at the next
    /// change).
    pub fn purge_tombstones(&self, collection: &str, through: Option<u64>) -> usize {
        self.shared.purge_tombstones(collection, through).count
    }

    /// The last change stamp of `collection`: every create, update, patch
    /// and delete applied to it took the next one, in the order they were
    /// applied (`0` for a collection never written, or the start time in
    /// microseconds with a data file). A feed page's `cursor` is one of
    /// them.
    #[must_use]
    pub fn change_stamp(&self, collection: &str) -> u64 {
        self.shared.feed_bounds(collection).1
    }

    /// The smallest `since` the change feed of `collection` answers: the
    /// stamp of the latest deletion forgotten, or where the stamps
    /// started (a cursor of an earlier run is older). A `since` below it,
    /// or above [`Self::change_stamp`], gets `410 Gone`.
    #[must_use]
    pub fn oldest_cursor(&self, collection: &str) -> u64 {
        self.shared.feed_bounds(collection).0
    }

    /// From now on every write stamps exactly `value` in the stamp field
    /// ([`ServerConfig::stamp_field`]), so that records share a value as
    /// they can on a real server; `None` goes back to the clock, past
    /// every value handed out so far.
    pub fn pin_stamp(&self, value: Option<u64>) {
        self.shared.pin_stamp(value);
    }

    /// Stores `records` in `collection` as writes would, only faster (no
    /// HTTP, no request log, one write of the data file): each is created,
    /// or replaced when its id is live, with a new version, change stamp
    /// and stamp field value. For filling a server before a test or a
    /// benchmark. Returns how many were stored.
    ///
    /// # Errors
    /// [`Error::InvalidRecords`] when one is not a JSON object with a
    /// non-empty string or number `"id"`, or `collection` is
    /// `_assigned_ids` (the data file's name for the assigned ids):
    /// nothing is stored then. Or
    /// [`Error::WriteDataFile`] (the records are stored in memory).
    pub fn seed(&self, collection: &str, records: impl IntoIterator<Item = Value>) -> Result<usize, Error> {
        self.shared
            .seed(collection, records.into_iter().collect())
            .map_err(|error| match error {
                SeedError::Invalid(reason) => Error::InvalidRecords { reason },
                SeedError::Save(source) => Error::WriteDataFile {
                    path: self.shared.data_file().map(Path::to_path_buf).unwrap_or_default(),
                    source,
                },
            })
    }

    /// How many requests a [`crate::Fault::DelayedApply`] holds right now,
    /// not yet handled (nor logged).
    #[must_use]
    pub fn delayed_applies_pending(&self) -> usize {
        self.shared.delayed_applies_pending()
    }

    /// Waits until no request is held by a [`crate::Fault::DelayedApply`]:
    /// every one received so far has been handled and logged, so the
    /// snapshot and the request log are final for them. Returns at once
    /// when none is held. Held requests are handled even while the server
    /// is stopped (they were received before), and even after it was
    /// dropped, as long as the tokio runtime runs.
    pub async fn wait_for_delayed_applies(&self) {
        self.shared.wait_for_delayed_applies().await;
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        // No waiting in a destructor: the task closes everything on its own.
        if let Some(running) = self.running.get_mut() {
            let _stopped = running.stop.send(true);
        }
    }
}

impl Running {
    fn spawn(listener: TcpListener, shared: Arc<Shared>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, shared, stopped));
        Self { stop, task }
    }

    async fn stop(self) {
        let _sent = self.stop.send(true);
        // The task only ends by itself; a join error would mean it was
        // cancelled with its runtime, which leaves nothing to wait for.
        let _joined = self.task.await;
    }
}

/// Where the versions (ETags) and the change stamps of a server with a
/// data file start: the microseconds since the Unix epoch. Versions are not kept in the file
/// (it has json-server's shape), so an earlier run over the same file
/// handed out versions from its own start time on, one per change; as
/// long as it made fewer than a million changes a second (each one writes
/// and syncs the file), this start is past all of them, and an ETag a
/// client kept from that run cannot match a record of this one. Nor can a
/// change-feed cursor of that run be mistaken for one of this run (whose
/// deletions before the start are unknown): it is below the start, and
/// expired.
fn version_base_after_restart() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_micros()).unwrap_or(u64::MAX / 2))
        // A clock before 1970: no better guess than a fresh count.
        .unwrap_or(0)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Listens on `addr` with `SO_REUSEADDR`, so a resume can take the port back
/// while the connections closed by the stop linger in `TIME_WAIT`. (Not on
/// Windows, where the option would let another socket share a live port.)
fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let bind_error = |source| Error::Bind { addr, source };
    let socket = TcpSocket::new_v4().map_err(bind_error)?;
    #[cfg(not(windows))]
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    socket.listen(1024).map_err(bind_error)
}

/// Listens on a free port of [`PICKED_PORTS`], starting at a random one;
/// on the kernel's choice if none of [`PICK_ATTEMPTS`] is free.
fn pick_port() -> Result<TcpListener, Error> {
    let span = PICKED_PORTS.end - PICKED_PORTS.start;
    // Randomly keyed per process and per call: parallel servers, in this
    // process or others, start at different ports.
    let start = RandomState::new().hash_one(std::process::id());
    for attempt in 0..PICK_ATTEMPTS {
        let offset = u16::try_from(start.wrapping_add(u64::from(attempt)) % u64::from(span)).unwrap_or(0);
        match bind(local(PICKED_PORTS.start + offset)) {
            Ok(listener) => return Ok(listener),
            Err(Error::Bind { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                ) => {}
            Err(error) => return Err(error),
        }
    }
    bind(local(0))
}

/// Accepts connections until told to stop, then closes the listener and
/// winds the connections down.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            // A dropped sender also means stop.
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared), stopped.clone()));
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
        }
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    // From here on connections are refused, as from an unreachable API.
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

/// Serves one connection; on stop, finishes the request in progress (if
/// any) and closes it.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    // Small JSON answers: send them at once rather than wait for Nagle.
    let _nodelay = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        // An error closes the connection without an answer: a lost response.
        async move { shared.handle(request).await }
    });
    // No timer, so no header read timeout: hyper would also apply it to
    // idle keep-alive connections, and a server closing those on its own
    // races with a client reusing them, a spurious failure in a test. Idle
    // connections close when the client drops them or on stop.
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    // Connection errors (a client hanging up mid-request) concern only that
    // client; there is no one to report them to.
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            let _closed = connection.await;
        }
    }
}
