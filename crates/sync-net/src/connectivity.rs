//! [`InternetConnectionMonitor`]: is your API (or the internet) reachable?
//!
//! A connected network interface proves nothing (captive portals, dead
//! uplinks, a firewall in the way), so the monitor makes real HTTP requests
//! to the check options it is given and reports online as soon as one
//! succeeds. It has no hosts of its own: it probes only the URLs the app
//! names, and public third-party endpoints only when the app asks for them
//! ([`InternetConnectionMonitorBuilder::probe_public_internet`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::Full;
use sync_core::{BoxStream, ConnectivityMonitor};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::{self, HttpClient, Trust};
use crate::error::NetError;

/// Decides from a status code whether a probe succeeded.
pub type StatusPredicate = dyn Fn(u16) -> bool + Send + Sync;

/// One endpoint to probe.
#[derive(Clone)]
pub struct InternetCheckOption {
    uri: Uri,
    timeout: Duration,
    is_success: Arc<StatusPredicate>,
}

impl fmt::Debug for InternetCheckOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternetCheckOption")
            .field("uri", &self.uri)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl InternetCheckOption {
    /// Probes `uri` with a `GET`; success is any 2xx or 3xx status within
    /// 3 s, until changed. Suits a health endpoint such as
    /// `https://api.example.com/health`.
    ///
    /// # Errors
    /// [`NetError::InvalidCheckOption`] unless `uri` is an absolute
    /// `http(s)` URL.
    pub fn new(uri: &str) -> Result<Self, NetError> {
        let parsed: Uri = uri
            .parse()
            .map_err(|_| NetError::InvalidCheckOption(format!("{uri:?} is not a valid URL")))?;
        let scheme_ok = matches!(parsed.scheme_str(), Some("http" | "https"));
        if !scheme_ok || parsed.authority().is_none() {
            return Err(NetError::InvalidCheckOption(format!(
                "{uri:?} must be an absolute http(s) URL"
            )));
        }
        Ok(Self {
            uri: parsed,
            timeout: Duration::from_secs(3),
            is_success: Arc::new(|status| (200..400).contains(&status)),
        })
    }

    /// Probes `uri` with a `GET`; success is any HTTP answer at all within
    /// 3 s, whatever its status (a 404 or a 401 proves the server is
    /// reachable just as well as a 200), until changed. A refused
    /// connection, a failed DNS lookup or TLS handshake, or no answer in
    /// time is a failure. Suits your API's base URL, which may answer
    /// anything to a bare `GET` without credentials; this is how
    /// `OfflineSync::builder` probes the API by default.
    ///
    /// # Errors
    /// [`NetError::InvalidCheckOption`] unless `uri` is an absolute
    /// `http(s)` URL.
    pub fn any_answer(uri: &str) -> Result<Self, NetError> {
        Ok(Self::new(uri)?.response_status(|_| true))
    }

    /// How long a probe may take before it counts as failed: connecting,
    /// TLS and the response's status line and headers (the body is not
    /// read). Default 3 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Decides success from the status code. Default: 2xx or 3xx.
    #[must_use]
    pub fn response_status(mut self, is_success: impl Fn(u16) -> bool + Send + Sync + 'static) -> Self {
        self.is_success = Arc::new(is_success);
        self
    }

    /// The probed URL.
    #[must_use]
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

/// Public endpoints run by third parties for connectivity checks (Cloudflare,
/// Google, Apple), probed only when the app asks for them
/// ([`InternetConnectionMonitorBuilder::probe_public_internet`]).
///
/// Each probe tells its operator the device's IP address and that the app
/// is running, so prefer probing your own API; none of these echoes the
/// address back or serves anything but connectivity checks.
#[must_use]
pub fn public_check_options() -> Vec<InternetCheckOption> {
    [
        "https://one.one.one.one/",
        "https://connectivitycheck.gstatic.com/generate_204",
        "https://www.apple.com/library/test/success.html",
    ]
    .into_iter()
    .filter_map(|uri| InternetCheckOption::new(uri).ok())
    .collect()
}

/// Builds an [`InternetConnectionMonitor`]; at least one option is needed
/// ([`Self::add_option`] or [`Self::probe_public_internet`]), and nothing
/// is probed that was not named here.
#[must_use]
pub struct InternetConnectionMonitorBuilder {
    probe_public_internet: bool,
    options: Vec<InternetCheckOption>,
    check_interval: Duration,
    trust: Trust,
    root_certificates: Vec<Vec<u8>>,
}

impl InternetConnectionMonitorBuilder {
    /// Also probes the public endpoints of [`public_check_options`]: online
    /// when any of them or any of your own options answers. Default: off,
    /// no third-party host is contacted.
    pub fn probe_public_internet(mut self) -> Self {
        self.probe_public_internet = true;
        self
    }

    /// Adds an option to probe, such as your API's base URL
    /// ([`InternetCheckOption::any_answer`]) or its health endpoint
    /// ([`InternetCheckOption::new`]). Default: none.
    pub fn add_option(mut self, option: InternetCheckOption) -> Self {
        self.options.push(option);
        self
    }

    /// How often the change stream probes. Default 10 s.
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// Trusts an extra root certificate (PEM or DER) for HTTPS options.
    pub fn add_root_certificate(mut self, certificate: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(certificate.into());
        self
    }

    /// Builds the monitor.
    ///
    /// # Errors
    /// [`NetError::InvalidCheckOption`] when there is no option to probe
    /// (the builder has no default hosts) or the interval is zero; another
    /// [`NetError`] when a certificate is invalid.
    pub fn build(mut self) -> Result<InternetConnectionMonitor, NetError> {
        let mut options = std::mem::take(&mut self.options);
        if self.probe_public_internet {
            options.extend(public_check_options());
        }
        if options.is_empty() {
            return Err(NetError::InvalidCheckOption(
                "no option to probe: add your API's URL with \
                 add_option(InternetCheckOption::any_answer(base_url)?), or call \
                 probe_public_internet() to probe public third-party endpoints"
                    .into(),
            ));
        }
        if self.check_interval.is_zero() {
            return Err(NetError::InvalidCheckOption(
                "the check interval must be longer than zero".into(),
            ));
        }
        for certificate in &self.root_certificates {
            self.trust
                .extra_roots
                .extend(client::parse_certificates(certificate)?);
        }
        let longest = options
            .iter()
            .map(|option| option.timeout)
            .max()
            .unwrap_or_default();
        let client = client::build(&self.trust, longest)?;
        let (shutdown, _) = watch::channel(());
        Ok(InternetConnectionMonitor {
            probe: Arc::new(Probe { client, options }),
            check_interval: self.check_interval,
            shutdown: Arc::new(shutdown),
        })
    }
}

struct Probe {
    client: HttpClient,
    options: Vec<InternetCheckOption>,
}

impl Probe {
    async fn check_one(client: HttpClient, option: InternetCheckOption) -> bool {
        let Ok(request) = Request::builder()
            .method(Method::GET)
            .uri(option.uri.clone())
            .body(Full::new(Bytes::new()))
        else {
            return false;
        };
        match tokio::time::timeout(option.timeout, client.request(request)).await {
            Ok(Ok(response)) => (option.is_success)(response.status().as_u16()),
            _ => false,
        }
    }

    /// Probes every option concurrently; the first success wins and the
    /// others are cancelled.
    async fn check(&self) -> bool {
        let mut probes = JoinSet::new();
        for option in &self.options {
            probes.spawn(Self::check_one(self.client.clone(), option.clone()));
        }
        while let Some(result) = probes.join_next().await {
            if result.unwrap_or(false) {
                return true;
            }
        }
        false
    }
}

/// Probes whether the servers of its check options answer over a real
/// network. Cloning shares the options and the connection pool; change
/// streams end when the last clone is dropped.
#[derive(Clone)]
pub struct InternetConnectionMonitor {
    probe: Arc<Probe>,
    check_interval: Duration,
    /// Dropped with the last clone; every change stream's task watches it.
    shutdown: Arc<watch::Sender<()>>,
}

impl fmt::Debug for InternetConnectionMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternetConnectionMonitor")
            .field("options", &self.probe.options)
            .field("check_interval", &self.check_interval)
            .finish()
    }
}

impl InternetConnectionMonitor {
    /// A builder with no option to probe (add at least one) and a 10 s
    /// interval.
    pub fn builder() -> InternetConnectionMonitorBuilder {
        InternetConnectionMonitorBuilder {
            probe_public_internet: false,
            options: Vec::new(),
            check_interval: Duration::from_secs(10),
            trust: Trust::default(),
            root_certificates: Vec::new(),
        }
    }

    /// The options probed.
    #[must_use]
    pub fn options(&self) -> &[InternetCheckOption] {
        &self.probe.options
    }
}

#[async_trait]
impl ConnectivityMonitor for InternetConnectionMonitor {
    /// Probes every option at once: `true` at the first success, `false`
    /// when all failed. Never takes longer than the longest option's
    /// timeout (3 s by default), DNS lookup included.
    async fn is_connected(&self) -> bool {
        self.probe.check().await
    }

    /// Probes now and then every check interval, sending only changes. The
    /// probing task stops when the stream is dropped or the monitor's last
    /// clone is.
    fn changes(&self) -> BoxStream<bool> {
        let (sender, receiver) = mpsc::channel(1);
        let probe = Arc::clone(&self.probe);
        let interval = self.check_interval;
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let online = tokio::select! {
                    online = probe.check() => online,
                    () = sender.closed() => return,
                    _ = shutdown.changed() => return,
                };
                if last != Some(online) {
                    if sender.send(online).await.is_err() {
                        return;
                    }
                    last = Some(online);
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = sender.closed() => return,
                    _ = shutdown.changed() => return,
                }
            }
        });
        Box::pin(ReceiverStream::new(receiver))
    }
}
