//! Security checks end to end: TLS verification on by default, no payload,
//! token or auth header in logs below trace, owner-only database files, and
//! no id that leaves its entity's path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use sync_facade::implement::SyncApiAdapter;
use sync_facade::prelude::*;
use sync_facade::{ApiError, AuthHook, ErrorKind, HttpSyncApiAdapter};
use sync_reference_server::{ReferenceServer, ServerConfig};
use sync_testkit::{FakeMonitor, MemoryStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Only a guard against hangs: nothing asserts on how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn manual() -> OfflineSyncOptions {
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options
}

async fn sync(engine: &OfflineSyncEngine) -> SyncReport {
    tokio::time::timeout(HANG_GUARD, engine.sync_manager().sync_now())
        .await
        .expect("sync_now hung")
        .unwrap()
}

use sync_facade::SyncReport;

// ---------------------------------------------------------------------------
// Log capture: a minimal `tracing` subscriber writing every event and span
// field at DEBUG and above (everything below TRACE) into one buffer.

/// Everything logged by this test binary at DEBUG or above.
fn captured() -> &'static Mutex<String> {
    static CAPTURED: OnceLock<Mutex<String>> = OnceLock::new();
    CAPTURED.get_or_init(|| Mutex::new(String::new()))
}

struct Capture {
    next_id: AtomicU64,
}

/// Writes fields as `name=value`, each value in its Display and Debug forms
/// (errors with their whole source chain), so nothing hides behind one of
/// them.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let _ = write!(self.0, " {}={value} / {value:?}", field.name());
        let mut source = value.source();
        while let Some(error) = source {
            let _ = write!(self.0, " caused by {error} / {error:?}");
            source = error.source();
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // TRACE is the most verbose level: everything else is captured.
        *metadata.level() <= Level::DEBUG
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {} {}:", span.metadata().target(), span.metadata().name());
        span.record(&mut Fields(&mut line));
        line.push('\n');
        captured().lock().unwrap().push_str(&line);
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &Id, values: &Record<'_>) {
        let mut line = String::from("span record:");
        values.record(&mut Fields(&mut line));
        line.push('\n');
        captured().lock().unwrap().push_str(&line);
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut line = format!("{} {}:", metadata.level(), metadata.target());
        event.record(&mut Fields(&mut line));
        line.push('\n');
        captured().lock().unwrap().push_str(&line);
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Installs the capture once for the whole test binary.
fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Capture {
            next_id: AtomicU64::new(1),
        })
        .expect("no other subscriber in this binary");
    });
}

/// An auth hook handing out a bearer token, counting refreshes.
struct Bearer {
    token: String,
    refreshes: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl AuthHook for Bearer {
    async fn headers(&self) -> Result<http::HeaderMap, ApiError> {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::try_from(format!("Bearer {}", self.token)).unwrap(),
        );
        Ok(headers)
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A full sync run at DEBUG, with a bearer token, an API key header and
/// payloads carrying a marker, against a server that echoes the request
/// body (and so the payload) in its answers, errors included: neither the
/// marker nor the token nor the key appears in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_payload_token_or_auth_header_reaches_the_logs_below_trace() {
    capture_logs();
    const MARKER: &str = "PAYLOADMARKER7f3a9c";
    const TOKEN: &str = "TOKENSECRET5b1e77";
    const API_KEY: &str = "APIKEYSECRET0d9c21";

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let echo = |status: u16| {
        move |request: &Request| {
            ResponseTemplate::new(status).set_body_raw(request.body.clone(), "application/json")
        }
    };
    // Entity → status of every answer, each echoing the request body.
    let statuses: [(&str, u16); 8] = [
        ("accepted", 201),
        ("server_error", 500),
        ("rejected", 400),
        ("unprocessable", 422),
        ("conflict", 409),
        ("unauthorized", 401),
        ("throttled", 429),
        ("gone_update", 404),
    ];
    for (entity, status) in statuses {
        for verb in ["POST", "PUT", "DELETE"] {
            let route = if verb == "POST" {
                format!("/{entity}")
            } else {
                format!("/{entity}/1")
            };
            Mock::given(method(verb))
                .and(path(route))
                .respond_with(echo(status))
                .mount(&server)
                .await;
        }
    }
    // A success answer that is not JSON but quotes the payload.
    Mock::given(method("POST"))
        .and(path("/garbled"))
        .respond_with(|request: &Request| {
            let mut body = b"<html>".to_vec();
            body.extend_from_slice(&request.body);
            ResponseTemplate::new(200).set_body_raw(body, "text/html")
        })
        .mount(&server)
        .await;
    // A resolver's fetch answered with the payload in an error.
    Mock::given(method("GET"))
        .and(path("/fetched/1"))
        .respond_with(ResponseTemplate::new(503).set_body_string(format!("{{\"echo\":\"{MARKER}\"}}")))
        .mount(&server)
        .await;

    let refreshes = Arc::new(AtomicUsize::new(0));
    let hook = Bearer {
        token: TOKEN.to_owned(),
        refreshes: Arc::clone(&refreshes),
    };
    let mut options = manual();
    options.max_retries = 2;
    options.retry_base_delay = Duration::from_millis(5);
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.uri())
        .probe_api_health("/health")
        .options(options.clone())
        .adapter(|adapter| adapter.auth(hook).default_header("X-Api-Key", API_KEY))
        .build()
        .await
        .unwrap();
    let mut entities: Vec<&str> = statuses.iter().map(|(entity, _)| *entity).collect();
    entities.push("garbled");
    for entity in &entities {
        engine
            .save(
                entity,
                "1",
                json!({"id": "1", "secret": MARKER, "token": TOKEN}),
                SyncOperation::Create,
            )
            .await
            .unwrap();
    }
    sync(&engine).await;
    assert!(refreshes.load(Ordering::SeqCst) > 0, "the 401 path ran");
    // Apps ship `last_error` to telemetry: by default it names the status,
    // the method and the route, never the server's echo of the payload nor
    // the record's id (issue 11, item 8).
    let queue = engine.queue().await.unwrap();
    let errors: Vec<&str> = queue
        .iter()
        .filter_map(|item| item.last_error.as_deref())
        .collect();
    assert!(errors.len() >= 5, "the failing answers left errors: {queue:#?}");
    for error in &errors {
        assert!(
            !error.contains(MARKER) && !error.contains(TOKEN) && !error.contains("/1"),
            "last_error carries the server's echo or the record id: {error}"
        );
    }
    assert!(
        errors
            .iter()
            .any(|error| error.contains("HTTP 422") && error.contains("/unprocessable")),
        "{errors:#?}"
    );
    // The status has a field of its own, so a UI tells 403 from 422
    // without parsing the message.
    let status_of = |entity: &str| {
        queue
            .iter()
            .find(|item| item.entity.as_str() == entity)
            .and_then(|item| item.last_error_http_status)
    };
    assert_eq!(status_of("unprocessable"), Some(422));
    assert_eq!(status_of("rejected"), Some(400));
    // Updates and deletes of the records the server accepted or may hold.
    for entity in &entities {
        engine
            .save(
                entity,
                "1",
                json!({"id": "1", "secret": MARKER}),
                SyncOperation::Update,
            )
            .await
            .unwrap();
    }
    sync(&engine).await;
    for entity in &entities {
        engine
            .save(entity, "1", json!({"secret": MARKER}), SyncOperation::Delete)
            .await
            .unwrap();
    }
    sync(&engine).await;
    engine.close().await;

    // A conflict resolver's fetch failing with the payload in the body.
    let dir = tempfile::tempdir().unwrap();
    let with_resolver = OfflineSync::builder(dir.path(), server.uri())
        .probe_api_health("/health")
        .options(options.clone())
        .conflict_resolver(RemoteWins)
        .build()
        .await
        .unwrap();
    with_resolver
        .save("fetched", "1", json!({"secret": MARKER}), SyncOperation::Update)
        .await
        .unwrap();
    sync(&with_resolver).await;
    with_resolver.close().await;

    let logs = captured().lock().unwrap().clone();
    assert!(logs.contains("attempt failed"), "the capture works: {logs}");
    assert!(logs.contains("sync pass done"), "the capture works: {logs}");
    for secret in [MARKER, TOKEN, API_KEY, "Bearer"] {
        let leaks: Vec<&str> = logs.lines().filter(|line| line.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "{secret} reached the logs:\n{}",
            leaks.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// TLS.

/// An HTTPS server on loopback with a fresh self-signed certificate for
/// `localhost`, answering `200 {}` to every request; counts the requests it
/// served (after a completed handshake). Returns the port, the certificate
/// in PEM and the counter.
async fn self_signed_server() -> (u16, String, Arc<AtomicUsize>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let chain = vec![rustls::pki_types::CertificateDer::from(
        certified.cert.der().to_vec(),
    )];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                // A refused handshake ends here.
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                let head_end = loop {
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                };
                // Read the body so the client sees a clean exchange.
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().unwrap());
                while request.len() < head_end + length {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = b"{}";
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, pem, served)
}

/// The default engine refuses a server whose certificate it cannot verify:
/// the probe finds no trusted API (offline, nothing sent) and, with a
/// monitor that says online, the adapter's handshake fails too, with an
/// error naming the certificate. Once the server's root is added through
/// the facade builder, the same sync goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verification_is_on_by_default_through_the_facade() {
    let (port, pem, served) = self_signed_server().await;
    let url = format!("https://localhost:{port}");

    // The default builder: the health probe is refused, so nothing is sent.
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), &url)
        .probe_api_health("/health")
        .options(manual())
        .build()
        .await
        .unwrap();
    engine
        .save("tasks", "1", json!({"title": "t"}), SyncOperation::Create)
        .await
        .unwrap();
    let report = sync(&engine).await;
    assert!(report.offline, "an untrusted server is not the API: {report:?}");
    assert_eq!(report.sent, 0);
    assert_eq!(served.load(Ordering::SeqCst), 0, "no request was served");
    engine.close().await;

    // The default adapter with a monitor that says online: the handshake
    // itself is refused.
    let adapter = HttpSyncApiAdapter::builder(&url).build().unwrap();
    let error = adapter
        .fetch_remote(&"tasks".parse().unwrap(), &"1".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Offline, "{error}");
    assert!(error.message().contains("certificate"), "{error}");
    let mut options = manual();
    options.max_retries = 1;
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(adapter),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options)
    .build()
    .await
    .unwrap();
    engine
        .save("tasks", "1", json!({"title": "t"}), SyncOperation::Create)
        .await
        .unwrap();
    let report = sync(&engine).await;
    assert_eq!((report.sent, report.failed), (0, 1), "{report:?}");
    let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert!(
        item.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("TLS handshake failed"),
        "{item:#?}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 0, "no request was served");
    engine.close().await;

    // With the server's root trusted (adapter and probe), the sync goes through.
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), &url)
        .probe_api_health("/health")
        .add_root_certificate(pem)
        .options(manual())
        .build()
        .await
        .unwrap();
    engine
        .save("tasks", "1", json!({"title": "t"}), SyncOperation::Create)
        .await
        .unwrap();
    let report = sync(&engine).await;
    assert_eq!(report.sent, 1, "{report:?}");
    assert!(
        served.load(Ordering::SeqCst) >= 2,
        "the probe and the create were served"
    );
    engine.close().await;
}

// ---------------------------------------------------------------------------
// File permissions.

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Opens an engine in `dir`, saves, checks every file while it is open.
#[cfg(unix)]
async fn assert_owner_only_while_open(dir: &Path) {
    let engine = OfflineSync::builder(dir, "http://127.0.0.1:9")
        .options(manual())
        .build()
        .await
        .unwrap();
    engine
        .save("tasks", "1", json!({"title": "t"}), SyncOperation::Create)
        .await
        .unwrap();
    let _ = engine.get_records("tasks").await.unwrap();
    for name in [
        "offline_sync.db",
        "offline_sync.db-wal",
        "offline_sync.db-shm",
        "offline_sync.db.lock",
    ] {
        let file = dir.join(name);
        assert!(file.exists(), "{name} exists while the engine is open");
        assert_eq!(mode(&file), 0o600, "{name} is {:o}", mode(&file));
    }
    engine.close().await;
}

#[cfg(unix)]
#[tokio::test]
async fn database_files_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    assert_owner_only_while_open(dir.path()).await;

    // A database left readable by others (an older version, a copy) is
    // set back to owner-only when opened, its companion files too.
    use std::os::unix::fs::PermissionsExt;
    for name in ["offline_sync.db", "offline_sync.db.lock"] {
        std::fs::set_permissions(dir.path().join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert_owner_only_while_open(dir.path()).await;
}

/// Files are owner-only whatever the umask: the test runs itself again in a
/// child process under `umask 0277` (which would leave 0400 files, not even
/// writable by the owner, without an explicit chmod) and under `umask 0`.
#[cfg(unix)]
#[test]
fn database_files_are_owner_only_whatever_the_umask() {
    const CHILD: &str = "SYNC_SECURITY_UMASK_CHILD_DIR";
    if let Ok(dir) = std::env::var(CHILD) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(assert_owner_only_while_open(Path::new(&dir)));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for umask in ["0277", "0000", "0022"] {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(&exe)
            .args([
                "--exact",
                "database_files_are_owner_only_whatever_the_umask",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "under umask {umask}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            mode(&dir.path().join("offline_sync.db")),
            0o600,
            "under umask {umask}"
        );
    }
}

// ---------------------------------------------------------------------------
// Paths.

/// Ids and entity names that try to leave their path segment.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "../x",
        "../../etc/passwd",
        "a/b",
        "a/../../b",
        "%2e%2e",
        "%2E%2E",
        "%2e",
        "..%2f",
        "%2e%2e%2fx",
        "?x=1",
        "a?id=2",
        "#frag",
        "a#b",
        "/",
        "//evil.example.com",
        "\\..\\x",
        "..;/x",
        "...",
        "./.",
        "%",
        "%zz",
        "%00",
        "a b",
        "a+b",
        "a&id=3",
        "ünïcödé",
        "😀",
        "\u{202e}txt.exe",
        "\u{2024}\u{2024}",
        "\u{ff0e}\u{ff0e}",
        "health",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    names.push("x".repeat(sync_facade::MAX_NAME_BYTES));
    names.push("é".repeat(sync_facade::MAX_NAME_BYTES / 2));
    names.push("../".repeat(sync_facade::MAX_NAME_BYTES / 3));
    names
}

/// Every request for a record, whatever its id, reaches the server at
/// `/<entity>/<that id>`: through the reference server's log (which
/// percent-decodes the path) after creates, updates (with a resolver's
/// fetch) and deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_id_leaves_its_entity_path_at_the_reference_server() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.url())
        .probe_api_health("/health")
        .options(manual())
        .conflict_resolver(LocalWins)
        .build()
        .await
        .unwrap();
    let ids = hostile_names();
    for id in &ids {
        engine
            .save("tasks", id, json!({"id": id, "v": 1}), SyncOperation::Create)
            .await
            .unwrap();
    }
    let report = sync(&engine).await;
    assert_eq!(report.sent, ids.len() as u64, "{report:?}");
    for id in &ids {
        engine
            .save("tasks", id, json!({"id": id, "v": 2}), SyncOperation::Update)
            .await
            .unwrap();
    }
    let report = sync(&engine).await;
    assert_eq!(report.sent, ids.len() as u64, "{report:?}");
    let snapshot = server.snapshot();
    let tasks = snapshot.get("tasks").unwrap();
    assert_eq!(tasks.len(), ids.len(), "one record per id, nothing else");
    for id in &ids {
        assert_eq!(tasks.get(id).map(|t| t["v"].clone()), Some(json!(2)), "{id:?}");
    }
    for id in &ids {
        engine
            .save("tasks", id, json!({}), SyncOperation::Delete)
            .await
            .unwrap();
    }
    let report = sync(&engine).await;
    assert_eq!(report.sent, ids.len() as u64, "{report:?}");
    assert!(server.snapshot().get("tasks").is_none_or(|t| t.is_empty()));

    let log = server.request_log();
    // The create's ETag makes the update conditional, so the resolver
    // needs no fetch first.
    assert_eq!(
        log.len(),
        ids.len() * 3,
        "a create, a conditional update, a delete per id: {log:#?}"
    );
    for record in &log {
        assert_eq!(record.collection, "tasks", "{record:?}");
        let id = record
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("no id: {record:?}"));
        assert!(
            ids.iter().any(|known| known == id),
            "an id nobody saved: {record:?}"
        );
        assert!(record.status.is_success(), "{record:?}");
    }
    engine.close().await;
    server.shutdown().await;
}

/// The raw request paths, as a server normalising dot segments (WHATWG URL
/// parsing, `%2e%2e` included) sees them: every one is `/<entity>` or
/// `/<entity>/<one segment>` with no query or fragment, for hostile entity
/// names as well as ids. `.` and `..` themselves are refused before any
/// request, with an error saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_id_or_entity_name_leaves_its_path_at_a_normalising_server() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = manual();
    options.max_retries = 1;
    let engine = OfflineSync::builder(dir.path(), server.uri())
        .probe_api_health("/health")
        .options(options)
        .build()
        .await
        .unwrap();
    let names = hostile_names();
    // Hostile ids under a plain entity, and hostile entity names.
    for name in &names {
        for operation in [SyncOperation::Update, SyncOperation::Delete] {
            engine
                .save("tasks", name, json!({"v": 1}), operation)
                .await
                .unwrap();
            sync(&engine).await;
        }
        if name.len() <= sync_facade::MAX_NAME_BYTES {
            engine
                .save(name, "1", json!({"v": 1}), SyncOperation::Create)
                .await
                .unwrap();
            engine
                .save(name, "2", json!({"v": 1}), SyncOperation::Update)
                .await
                .unwrap();
        }
    }
    for dots in [".", ".."] {
        engine
            .save("tasks", dots, json!({"v": 1}), SyncOperation::Update)
            .await
            .unwrap();
        engine
            .save(dots, "1", json!({"v": 1}), SyncOperation::Create)
            .await
            .unwrap();
    }
    sync(&engine).await;

    let requests = server.received_requests().await.unwrap();
    let writes: Vec<&Request> = requests
        .iter()
        .filter(|r| !(r.method.as_str() == "GET" && r.url.path() == "/health"))
        .collect();
    // Per hostile name: an update and a delete of the id, a create and an
    // update under the entity name.
    assert_eq!(
        writes.len(),
        names.len() * 4,
        "requests: {:#?}",
        writes.iter().map(|r| r.url.as_str()).collect::<Vec<_>>()
    );
    for request in &writes {
        let url = &request.url;
        assert_eq!(url.query(), None, "{url}");
        assert_eq!(url.fragment(), None, "{url}");
        let segments: Vec<&str> = url.path_segments().unwrap().collect();
        assert!(matches!(segments.len(), 1 | 2), "{url} is not /<entity>[/<id>]");
        assert!(
            segments.iter().all(|s| !s.is_empty() && *s != "." && *s != ".."),
            "{url}"
        );
        let entity = percent_decode(segments[0]);
        if entity == "tasks" {
            let id = percent_decode(segments.get(1).unwrap_or_else(|| panic!("{url} has no id")));
            assert!(names.contains(&id), "{url} addresses an id nobody saved: {id:?}");
        } else {
            assert!(
                names.contains(&entity),
                "{url} addresses an unknown entity {entity:?}"
            );
            if let Some(id) = segments.get(1) {
                assert_eq!(*id, "2", "{url}");
            }
        }
    }
    // `.` and `..` never left: parked with an explanation.
    for (entity, id) in [("tasks", "."), ("tasks", ".."), (".", "1"), ("..", "1")] {
        let item = engine.queue_item(entity, id).await.unwrap().unwrap();
        assert_eq!(item.status, SyncStatus::Failed, "{item:#?}");
        assert_eq!(item.last_error_kind, Some(ErrorKind::Permanent), "{item:#?}");
        assert!(
            item.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("cannot be sent as a URL path segment")
        );
    }
    engine.close().await;
}

/// Decodes `%XX` escapes (test helper; the input is a path segment).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The adapter on its own: no id makes a URL outside `/<entity>/`.
#[tokio::test]
async fn the_adapter_keeps_every_id_in_one_segment() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let adapter = HttpSyncApiAdapter::builder(format!("{}/api/v1", server.uri()))
        .build()
        .unwrap();
    let entity = "tasks".parse().unwrap();
    for id in hostile_names() {
        let found = adapter.fetch_remote(&entity, &id.parse().unwrap()).await.unwrap();
        assert!(found.is_none());
    }
    for request in server.received_requests().await.unwrap() {
        let segments: Vec<&str> = request.url.path_segments().unwrap().collect();
        assert_eq!(&segments[..3], ["api", "v1", "tasks"], "{}", request.url);
        assert_eq!(segments.len(), 4, "{}", request.url);
        assert_eq!(request.url.query(), None, "{}", request.url);
    }
}
