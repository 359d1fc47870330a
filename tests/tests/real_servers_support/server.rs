//! Third-party servers, started by their `tests/servers/<name>/run` script
//! on a loopback port, each with a fresh state, and stopped with SIGTERM
//! (the script stops what it started, a private PostgreSQL included).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to answer: the first start on a fresh
/// machine installs it (Directus: about 2 minutes).
const START_LIMIT: Duration = Duration::from_secs(600);

/// A running server.
pub(crate) struct ThirdParty {
    pub(crate) name: &'static str,
    /// The prefix of its item routes, as its script printed it.
    pub(crate) base_url: String,
    /// A bearer token, when the server needs one.
    pub(crate) token: Option<String>,
    child: Child,
    _dir: tempfile::TempDir,
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("servers")
        .join(name)
        .join("run")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl ThirdParty {
    /// Starts `name`'s run script and waits for its `READY` line. A server
    /// that cannot start fails the test, saying why: never a silent skip.
    pub(crate) async fn start(name: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new("bash")
            .arg(script(name))
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run the {name} script: {error}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(START_LIMIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("READY ") {
                    return Some(rest.to_owned());
                }
            }
            None
        })
        .await;
        let Ok(Some(ready)) = ready else {
            let status = child.try_wait().ok().flatten();
            panic!(
                "the {name} server did not start within {} s (script status {status:?}); its \
                 reasons are on stderr above. It is installed by tests/servers/{name}/setup, which \
                 `cargo xtask ci` runs first",
                START_LIMIT.as_secs()
            );
        };
        // Keep draining stdout so the script never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let field = |key: &str| {
            ready
                .split_whitespace()
                .find_map(|pair| pair.strip_prefix(key))
                .map(str::to_owned)
        };
        let base_url = field("base_url=").unwrap_or_else(|| panic!("{name}: no base_url in {ready:?}"));
        let token = field("token=").filter(|token| !token.is_empty());
        Self {
            name,
            base_url,
            token,
            child,
            _dir: dir,
        }
    }

    /// `http://host:port` of the base URL.
    pub(crate) fn origin(&self) -> String {
        let without_scheme = self.base_url.trim_start_matches("http://");
        let authority = without_scheme.split('/').next().unwrap_or(without_scheme);
        format!("http://{authority}")
    }

    /// The base URL's path, such as `/api/collections` (empty for none).
    pub(crate) fn prefix(&self) -> String {
        let without_scheme = self.base_url.trim_start_matches("http://");
        without_scheme.find('/').map_or_else(String::new, |at| {
            without_scheme[at..].trim_end_matches('/').to_owned()
        })
    }

    /// `GET` of a path under the base URL, straight to the server, as JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.base_url);
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut request = http::Request::get(url.as_str());
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = tokio::time::timeout(
            Duration::from_secs(30),
            client.request(request.body(Empty::new()).unwrap()),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: GET {url} timed out", self.name))
        .unwrap_or_else(|error| panic!("{}: GET {url} failed: {error}", self.name));
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            status.is_success(),
            "{}: GET {url} answered {status}: {}",
            self.name,
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body)
            .unwrap_or_else(|error| panic!("{}: GET {url} is not JSON: {error}", self.name))
    }

    /// Stops the server and everything its script started.
    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _sent = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            let _killed = self.child.start_kill();
        }
    }
}

impl Drop for ThirdParty {
    /// A test that failed half-way still stops the server with SIGTERM, so
    /// its script stops what it started (SIGKILL would leave PostgreSQL
    /// running).
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let Some(pid) = self.child.id() else { return };
        let _sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        for _ in 0..200 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _killed = self.child.start_kill();
    }
}
