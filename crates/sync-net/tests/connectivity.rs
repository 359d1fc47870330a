//! The connectivity monitor against loopback servers only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::time::Duration;

use sync_core::ConnectivityMonitor;
use sync_net::{InternetCheckOption, InternetConnectionMonitor, NetError, public_check_options};
use tokio_stream::StreamExt;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn server(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

fn option(server: &MockServer) -> InternetCheckOption {
    InternetCheckOption::new(&format!("{}/health", server.uri()))
        .unwrap()
        .timeout(Duration::from_secs(2))
}

fn monitor(options: Vec<InternetCheckOption>) -> InternetConnectionMonitor {
    options
        .into_iter()
        .fold(InternetConnectionMonitor::builder(), |builder, option| {
            builder.add_option(option)
        })
        .check_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

fn refused_option() -> InternetCheckOption {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    InternetCheckOption::new(&format!("http://{address}/")).unwrap()
}

#[tokio::test]
async fn online_when_any_option_succeeds() {
    let (down, up) = (server(500).await, server(204).await);
    assert!(
        monitor(vec![option(&down), refused_option(), option(&up)])
            .is_connected()
            .await
    );
    let redirect = server(302).await;
    assert!(
        monitor(vec![option(&redirect)]).is_connected().await,
        "3xx counts by default"
    );
}

#[tokio::test]
async fn offline_when_every_option_fails() {
    let (down, missing) = (server(503).await, server(404).await);
    assert!(
        !monitor(vec![option(&down), option(&missing), refused_option()])
            .is_connected()
            .await
    );
}

#[tokio::test]
async fn a_slow_option_times_out_and_a_fast_one_still_wins() {
    let slow = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&slow)
        .await;
    let slow_option = || option(&slow).timeout(Duration::from_millis(200));
    let guard = Duration::from_secs(5);
    let alone = tokio::time::timeout(guard, monitor(vec![slow_option()]).is_connected()).await;
    assert_eq!(alone, Ok(false), "the probe gave up at its own timeout");
    let fast = server(200).await;
    let both = tokio::time::timeout(guard, monitor(vec![slow_option(), option(&fast)]).is_connected()).await;
    assert_eq!(
        both,
        Ok(true),
        "the first success wins without waiting for the slow one"
    );
}

#[tokio::test]
async fn a_custom_predicate_decides_success() {
    let teapot = server(418).await;
    let accepting = option(&teapot).response_status(|status| status == 418);
    assert!(monitor(vec![accepting]).is_connected().await);
    let ok = server(200).await;
    let strict = option(&ok).response_status(|status| status == 204);
    assert!(!monitor(vec![strict]).is_connected().await);
}

#[tokio::test]
async fn the_change_stream_starts_with_the_state_and_repeats_nothing() {
    let api = server(200).await;
    let monitor = monitor(vec![option(&api)]);
    let mut changes = monitor.changes();
    let within = |ms| Duration::from_millis(ms);
    assert_eq!(
        tokio::time::timeout(within(5_000), changes.next()).await,
        Ok(Some(true))
    );
    let repeat = tokio::time::timeout(within(300), changes.next()).await;
    assert!(
        repeat.is_err(),
        "no repeat while nothing changes (about 6 probes): {repeat:?}"
    );

    api.reset().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503))
        .mount(&api)
        .await;
    assert_eq!(
        tokio::time::timeout(within(5_000), changes.next()).await,
        Ok(Some(false))
    );

    api.reset().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    assert_eq!(
        tokio::time::timeout(within(5_000), changes.next()).await,
        Ok(Some(true))
    );
}

#[tokio::test]
async fn probing_stops_when_the_stream_is_dropped() {
    let api = server(200).await;
    let monitor = monitor(vec![option(&api)]);
    let mut changes = monitor.changes();
    assert_eq!(changes.next().await, Some(true));
    drop(changes);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let settled = api.received_requests().await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        api.received_requests().await.unwrap().len(),
        settled,
        "probes continued after the drop"
    );
}

#[tokio::test]
async fn the_stream_ends_when_the_monitor_is_dropped() {
    let api = server(200).await;
    let monitor = monitor(vec![option(&api)]);
    let mut changes = monitor.changes();
    assert_eq!(changes.next().await, Some(true));
    drop(monitor);
    let end = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
    assert_eq!(end, Ok(None));
}

#[tokio::test]
async fn any_answer_counts_as_online_for_an_api_probe() {
    for status in [200, 204, 301, 401, 404, 500, 503] {
        let api = server(status).await;
        let probe = InternetCheckOption::any_answer(&api.uri()).unwrap();
        assert!(monitor(vec![probe]).is_connected().await, "HTTP {status}");
    }
    let closed = refused_option().uri().to_string();
    let probe = InternetCheckOption::any_answer(&closed).unwrap();
    assert!(
        !monitor(vec![probe]).is_connected().await,
        "a closed port is offline"
    );
}

/// A loopback port that accepts connections and never answers.
async fn silent_listener() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}/")
}

#[tokio::test(start_paused = true)]
async fn a_probe_without_an_answer_gives_up_at_its_timeout() {
    let silent = silent_listener().await;
    for (option, limit) in [
        (
            InternetCheckOption::any_answer(&silent).unwrap(),
            Duration::from_secs(3),
        ),
        (
            InternetCheckOption::new(&silent)
                .unwrap()
                .timeout(Duration::from_millis(700)),
            Duration::from_millis(700),
        ),
    ] {
        let monitor = monitor(vec![option]);
        let started = tokio::time::Instant::now();
        let online = tokio::time::timeout(Duration::from_secs(24 * 3600), monitor.is_connected()).await;
        assert_eq!(online, Ok(false), "the probe hung");
        assert!(
            started.elapsed() <= limit,
            "{:?} over {limit:?}",
            started.elapsed()
        );
    }
}

#[test]
fn no_host_is_probed_unless_named_and_public_hosts_only_when_asked() {
    let error = InternetConnectionMonitor::builder().build().unwrap_err();
    assert!(matches!(error, NetError::InvalidCheckOption(_)), "{error}");
    let message = error.to_string();
    for hint in ["add_option", "probe_public_internet"] {
        assert!(message.contains(hint), "{hint} missing: {message}");
    }

    let ours = InternetCheckOption::any_answer("https://api.example.com/v2").unwrap();
    let monitor = InternetConnectionMonitor::builder()
        .add_option(ours)
        .build()
        .unwrap();
    let hosts: Vec<_> = monitor
        .options()
        .iter()
        .map(|o| o.uri().host().unwrap().to_owned())
        .collect();
    assert_eq!(hosts, ["api.example.com"], "only the option given");

    // The public endpoints: listed here, never probed in tests.
    let public = InternetConnectionMonitor::builder()
        .probe_public_internet()
        .build()
        .unwrap();
    assert_eq!(public.options().len(), public_check_options().len());
    assert!(public.options().len() >= 2);
    assert!(
        public
            .options()
            .iter()
            .all(|option| option.uri().scheme_str() == Some("https"))
    );
}

#[test]
fn bad_options() {
    for bad in ["", "localhost:80", "ftp://host/", "/health"] {
        assert!(InternetCheckOption::new(bad).is_err(), "{bad}");
        assert!(InternetCheckOption::any_answer(bad).is_err(), "{bad}");
    }
    let zero = InternetConnectionMonitor::builder()
        .probe_public_internet()
        .check_interval(Duration::ZERO)
        .build();
    assert!(zero.is_err());
}
