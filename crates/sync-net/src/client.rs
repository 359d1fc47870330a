//! The pooled hyper client with rustls, shared by the adapter and the
//! connectivity monitor.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
#[cfg(feature = "rustls")]
use rustls::pki_types::CertificateDer;
#[cfg(feature = "rustls")]
use rustls::pki_types::pem::PemObject;

use crate::error::NetError;

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// The client every request goes through: keep-alive pool, HTTP/1.1 and
/// HTTP/2 (by ALPN), TLS by rustls with the `rustls` feature.
pub(crate) type HttpClient = Client<Connector, Full<Bytes>>;

/// Which certificates a client trusts.
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    /// Trust the Mozilla root program (webpki-roots). Default on.
    pub(crate) webpki_roots: bool,
    /// Extra roots, DER encoded, such as a company's own CA.
    pub(crate) extra_roots: Vec<Vec<u8>>,
}

impl Default for Trust {
    fn default() -> Self {
        Self {
            webpki_roots: true,
            extra_roots: Vec::new(),
        }
    }
}

/// Parses one or more PEM certificates, or a single DER certificate, into
/// DER.
#[cfg(not(feature = "rustls"))]
pub(crate) fn parse_certificates(_bytes: &[u8]) -> Result<Vec<Vec<u8>>, NetError> {
    Err(NetError::Tls(
        "root certificates need the `rustls` feature, which is off in this build".into(),
    ))
}

/// Parses one or more PEM certificates, or a single DER certificate, into
/// DER.
#[cfg(feature = "rustls")]
pub(crate) fn parse_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, NetError> {
    if bytes.starts_with(b"-----BEGIN") {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<_, _>>()
            .map_err(|error| NetError::InvalidCertificate(error.to_string()))?;
        if certificates.is_empty() {
            return Err(NetError::InvalidCertificate(
                "no certificate in the PEM text".into(),
            ));
        }
        return Ok(certificates
            .into_iter()
            .map(|certificate| certificate.to_vec())
            .collect());
    }
    if bytes.is_empty() {
        return Err(NetError::InvalidCertificate("empty input".into()));
    }
    Ok(vec![bytes.to_vec()])
}

fn http_connector(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    // With Nagle on, the last segment of a body larger than one segment can
    // wait for the server's delayed ACK (up to 40 ms per request on a real
    // network); sync traffic is request/response, so send at once.
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http
}

/// Builds the client: plain HTTP only, TLS being off in this build.
#[cfg(not(feature = "rustls"))]
pub(crate) fn build(_trust: &Trust, connect_timeout: Duration) -> Result<HttpClient, NetError> {
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(http_connector(connect_timeout)))
}

/// Builds the client.
#[cfg(feature = "rustls")]
pub(crate) fn build(trust: &Trust, connect_timeout: Duration) -> Result<HttpClient, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    if trust.webpki_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for certificate in &trust.extra_roots {
        roots
            .add(CertificateDer::from(certificate.clone()))
            .map_err(|error| NetError::InvalidCertificate(error.to_string()))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| NetError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http_connector(connect_timeout));
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}
