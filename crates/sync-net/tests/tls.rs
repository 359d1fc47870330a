//! TLS against a loopback server with a self-signed certificate: refused by
//! default, accepted once its root is added.
#![cfg(feature = "rustls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sync_core::{ConnectivityMonitor, ErrorKind, SyncApiAdapter};
use sync_net::{HttpSyncApiAdapter, InternetCheckOption, InternetConnectionMonitor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `{"tls":true}` over HTTPS with a fresh self-signed certificate
/// for `localhost`; returns the port and the certificate in PEM.
async fn https_server() -> (u16, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
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
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake ends here: that is the point of one test.
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let body = b"{\"tls\":true}";
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
    (port, pem)
}

#[tokio::test]
async fn a_self_signed_server_is_refused_by_default() {
    let (port, _) = https_server().await;
    let adapter = HttpSyncApiAdapter::builder(format!("https://localhost:{port}"))
        .build()
        .unwrap();
    let error = adapter
        .fetch_remote(&"tasks".parse().unwrap(), &"1".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Offline, "{error}");
    assert!(!error.possibly_applied(), "nothing was sent");
    assert!(error.message().contains("certificate"), "{error}");
    // Told apart from an unreachable server, with the way out.
    assert!(error.message().contains("TLS handshake failed"), "{error}");
    assert!(error.message().contains("add its root certificate"), "{error}");
}

#[tokio::test]
async fn a_self_signed_server_is_accepted_with_its_root_added() {
    let (port, pem) = https_server().await;
    let adapter = HttpSyncApiAdapter::builder(format!("https://localhost:{port}"))
        .add_root_certificate(pem)
        .use_webpki_roots(false)
        .build()
        .unwrap();
    let fetched = adapter
        .fetch_remote(&"tasks".parse().unwrap(), &"1".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.unwrap()["tls"], true);
}

#[tokio::test]
async fn the_monitor_checks_certificates_too() {
    let (port, pem) = https_server().await;
    let option = || InternetCheckOption::new(&format!("https://localhost:{port}/health")).unwrap();
    let strict = InternetConnectionMonitor::builder()
        .add_option(option())
        .build()
        .unwrap();
    assert!(
        !strict.is_connected().await,
        "an untrusted certificate is not connectivity"
    );
    let trusting = InternetConnectionMonitor::builder()
        .add_option(option())
        .add_root_certificate(pem)
        .build()
        .unwrap();
    assert!(trusting.is_connected().await);
}
