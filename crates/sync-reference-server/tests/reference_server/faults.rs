//! The fault mode: what each fault looks like on the wire, whether the
//! request took effect, and that the plan's decisions are reproducible.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use sync_reference_server::{
    Fault, FaultPlan, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, ReferenceServer, ServerConfig,
};
use tokio::net::TcpStream;

use crate::client::{read_response, send, send_raw, send_with, write_request};

async fn start_with(plan: FaultPlan) -> ReferenceServer {
    ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap()
}

/// `POST /tasks` creating `{"id": id}` under idempotency key `key`.
async fn create(addr: SocketAddr, id: &str, key: &str) -> crate::client::Reply {
    let body = json!({ "id": id, "title": "t" }).to_string();
    send_with(addr, "POST", "/tasks", &[(IDEMPOTENCY_KEY, key)], Some(&body)).await
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(name, n)| ((*name).to_owned(), *n)).collect()
}

#[tokio::test]
async fn a_lost_response_is_applied_and_its_retry_replayed() {
    let server = start_with(FaultPlan::seeded(1).first_attempts(1, Fault::LoseResponse)).await;
    let addr = server.addr();
    let body = r#"{"id":"1","title":"t"}"#;

    let lost = send_raw(addr, "POST", "/tasks", &[(IDEMPOTENCY_KEY, "op-1")], Some(body)).await;
    assert!(
        lost.is_empty(),
        "no byte of an answer: {}",
        String::from_utf8_lossy(&lost)
    );
    assert_eq!(
        server.snapshot()["tasks"]["1"]["title"],
        "t",
        "applied all the same"
    );
    let log = server.request_log();
    assert_eq!(log.len(), 1);
    assert!(log[0].applied);
    assert_eq!(log[0].fault, Some(Fault::LoseResponse));
    assert_eq!(log[0].status, 201, "the status that was lost");

    // The retry is the operation's second occurrence: answered, replayed.
    let retry = create(addr, "1", "op-1").await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(retry.json(), json!({"id": "1", "title": "t"}));
    assert_eq!(server.applied_requests().len(), 1, "applied once");
    assert_eq!(server.request_log()[1].fault, None);
    assert_eq!(server.fault_counts(), counts(&[("lose_response", 1)]));
}

#[tokio::test]
async fn a_lost_response_closes_a_kept_alive_connection() {
    let server = start_with(FaultPlan::seeded(1).for_id("1", Fault::LoseResponse)).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    write_request(&mut stream, "GET", "/tasks/0", &[], None).await;
    assert_eq!(read_response(&mut stream).await.status, 404, "not faulted");
    write_request(&mut stream, "GET", "/tasks/1", &[], None).await;
    let mut rest = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_reset_mid_body_sends_the_head_and_part_of_the_body() {
    let server = start_with(FaultPlan::seeded(1).burst(1, Fault::ResetMidBody)).await;
    let body = r#"{"id":"1","title":"a title long enough to cut"}"#;
    let raw = send_raw(server.addr(), "POST", "/tasks", &[], Some(body)).await;
    let text = String::from_utf8(raw).unwrap();
    let (head, received) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(str::to_owned)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "the true length is announced");
    assert!(!received.is_empty() && received.len() < length, "{received:?}");
    assert!(body.starts_with(received));

    assert_eq!(server.snapshot()["tasks"].len(), 1);
    let log = server.request_log();
    assert!(log[0].applied);
    assert_eq!(log[0].fault, Some(Fault::ResetMidBody));
}

#[tokio::test]
async fn a_delayed_answer_is_applied_and_comes_late() {
    let delay = Duration::from_millis(300);
    let server = start_with(FaultPlan::seeded(1).burst(1, Fault::Delay(delay))).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    write_request(&mut stream, "POST", "/tasks", &[], Some(r#"{"id":"1"}"#)).await;
    // A client with a shorter timeout gives up (the answer cannot come
    // before the delay)...
    let early = tokio::time::timeout(Duration::from_millis(50), read_response(&mut stream)).await;
    assert!(early.is_err(), "answered before the delay");
    // ...though the answer does come whole in the end.
    let reply = read_response(&mut stream).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), json!({"id": "1"}));
    assert_eq!(server.applied_requests().len(), 1);
    assert_eq!(server.request_log()[0].fault, Some(Fault::Delay(delay)));
}

#[tokio::test]
async fn a_status_fault_refuses_the_request() {
    let unavailable = Fault::Status(StatusCode::SERVICE_UNAVAILABLE);
    let server = start_with(FaultPlan::seeded(1).with_random(unavailable.clone(), 1.0)).await;
    let reply = create(server.addr(), "1", "op-1").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.error().contains("503"), "{}", reply.error());
    assert!(server.snapshot().is_empty(), "not applied");
    let log = server.request_log();
    assert!(!log[0].applied);
    assert_eq!(log[0].status, 503);
    assert_eq!(log[0].id.as_deref(), Some("1"));
    assert_eq!(log[0].fault, Some(unavailable));

    // The key was not remembered: without faults the retry is applied.
    server.set_faults(None);
    let retry = create(server.addr(), "1", "op-1").await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), None);
    assert_eq!(server.applied_requests().len(), 1);
}

#[tokio::test]
async fn retry_after_carries_the_header_and_refuses() {
    let fault = Fault::RetryAfter {
        status: StatusCode::TOO_MANY_REQUESTS,
        seconds: 7,
    };
    let server = start_with(FaultPlan::seeded(1).burst(1, fault.clone())).await;
    let reply = create(server.addr(), "1", "op-1").await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("7"));
    let _ = reply.error();
    assert!(server.snapshot().is_empty());
    assert_eq!(server.request_log()[0].fault, Some(fault));
    assert_eq!(server.fault_counts(), counts(&[("retry_after", 1)]));
}

#[tokio::test]
async fn malformed_json_is_applied_with_a_broken_body() {
    let server = start_with(FaultPlan::seeded(1).burst(1, Fault::MalformedJson)).await;
    let reply = create(server.addr(), "1", "op-1").await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<serde_json::Value>(&reply.body).is_err());
    assert!(reply.body.starts_with(b"{\"id\":\"1\""));
    assert_eq!(server.applied_requests().len(), 1);
    assert_eq!(server.request_log()[0].fault, Some(Fault::MalformedJson));
}

#[tokio::test]
async fn json_array_is_applied_with_an_array_body() {
    let server = start_with(FaultPlan::seeded(1).burst(1, Fault::JsonArray)).await;
    let reply = create(server.addr(), "1", "op-1").await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), json!([1, 2, 3]));
    assert_eq!(server.snapshot()["tasks"].len(), 1);
    assert!(server.request_log()[0].applied);
}

#[tokio::test]
async fn a_huge_body_has_exactly_the_size_asked() {
    let bytes = 8 * 1024 * 1024 + 7;
    let server = start_with(FaultPlan::seeded(1).burst(1, Fault::HugeBody { bytes })).await;
    let reply = create(server.addr(), "1", "op-1").await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body.len(), bytes);
    assert_eq!(reply.json()["padding"].as_str().unwrap().len(), bytes - 14);
    assert_eq!(server.applied_requests().len(), 1);
}

#[tokio::test]
async fn a_trickle_delivers_the_whole_answer() {
    let interval = Duration::from_millis(2);
    let server = start_with(FaultPlan::seeded(1).burst(1, Fault::Trickle { interval })).await;
    let reply = create(server.addr(), "1", "op-1").await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), json!({"id": "1", "title": "t"}));
    assert_eq!(server.applied_requests().len(), 1);
    assert_eq!(server.request_log()[0].fault, Some(Fault::Trickle { interval }));
}

#[tokio::test]
async fn a_burst_counts_down_in_arrival_order_and_spares_health() {
    let unavailable = Fault::Status(StatusCode::SERVICE_UNAVAILABLE);
    let server = start_with(
        FaultPlan::seeded(1)
            .burst(2, unavailable)
            .burst(1, Fault::Status(StatusCode::BAD_GATEWAY)),
    )
    .await;
    let addr = server.addr();
    assert_eq!(send(addr, "GET", "/health", None).await.status, 200);
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(create(addr, &n.to_string(), &format!("op-{n}")).await.status);
    }
    assert_eq!(statuses, [503, 503, 502, 201, 201]);
    assert_eq!(server.snapshot()["tasks"].len(), 2);
    assert_eq!(server.fault_counts(), counts(&[("status", 3)]));
}

#[tokio::test]
async fn an_id_fault_hits_only_that_id_every_time() {
    let unprocessable = Fault::Status(StatusCode::UNPROCESSABLE_ENTITY);
    let server = start_with(FaultPlan::seeded(1).for_id("bad", unprocessable.clone())).await;
    let addr = server.addr();
    for attempt in 0..3 {
        assert_eq!(
            create(addr, "bad", "op-bad").await.status,
            422,
            "attempt {attempt}"
        );
    }
    assert_eq!(create(addr, "good", "op-good").await.status, 201);
    let put = send(addr, "PUT", "/tasks/bad", Some(r#"{"v":1}"#)).await;
    assert_eq!(put.status, 422);
    assert_eq!(send(addr, "GET", "/tasks/good", None).await.status, 200);

    let faulted: Vec<_> = server
        .request_log()
        .into_iter()
        .filter(|record| record.fault.is_some())
        .map(|record| (record.method, record.id.unwrap(), record.fault.unwrap()))
        .collect();
    assert_eq!(faulted.len(), 4);
    assert!(
        faulted
            .iter()
            .all(|(_, id, fault)| id == "bad" && *fault == unprocessable)
    );
    assert_eq!(server.snapshot()["tasks"].keys().collect::<Vec<_>>(), ["good"]);
}

#[tokio::test]
async fn the_cap_per_operation_lets_retries_through() {
    let plan = FaultPlan::seeded(1)
        .with_random(Fault::Status(StatusCode::SERVICE_UNAVAILABLE), 1.0)
        .max_faults_per_request_key(2);
    let server = start_with(plan).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(create(server.addr(), "1", "op-1").await.status);
    }
    assert_eq!(statuses, [503, 503, 201, 201]);
    assert_eq!(server.applied_requests().len(), 1);
}

#[tokio::test]
async fn only_the_chosen_methods_are_faulted() {
    let plan = FaultPlan::seeded(1)
        .only_methods(&[Method::PUT])
        .with_random(Fault::JsonArray, 1.0);
    let server = start_with(plan).await;
    let addr = server.addr();
    assert_eq!(create(addr, "1", "op-1").await.json()["id"], "1");
    assert_eq!(send(addr, "GET", "/tasks/1", None).await.json()["id"], "1");
    let put = send(addr, "PUT", "/tasks/1", Some(r#"{"v":2}"#)).await;
    assert_eq!(put.json(), json!([1, 2, 3]));
    assert_eq!(server.snapshot()["tasks"]["1"]["v"], 2);
}

#[tokio::test]
async fn faults_can_be_switched_at_run_time() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    let addr = server.addr();
    assert_eq!(create(addr, "1", "op-1").await.status, 201);
    server.set_faults(Some(
        FaultPlan::seeded(3).burst(1, Fault::Status(StatusCode::CONFLICT)),
    ));
    assert_eq!(create(addr, "2", "op-2").await.status, 409);
    assert_eq!(create(addr, "2", "op-2").await.status, 201);
    server.set_faults(Some(
        FaultPlan::seeded(3).burst(1, Fault::Status(StatusCode::CONFLICT)),
    ));
    assert_eq!(
        create(addr, "3", "op-3").await.status,
        409,
        "a new plan's burst is whole"
    );
    server.set_faults(None);
    assert_eq!(create(addr, "3", "op-3").await.status, 201);
    assert_eq!(server.fault_counts(), counts(&[("status", 2)]));
}

/// The operations of the determinism test: creates and updates, each sent
/// twice (a first attempt and a retry).
fn operations() -> Vec<(String, String)> {
    (0..24)
        .flat_map(|n| {
            let op = (format!("r{n}"), format!("op-{n}"));
            [op.clone(), op]
        })
        .collect()
}

/// Sends `operations` in that order and returns, per (key, attempt), the
/// fault each got.
async fn decisions(seed: u64, operations: &[(String, String)]) -> BTreeMap<(String, usize), Option<Fault>> {
    let plan = FaultPlan::seeded(seed)
        .with_random(Fault::Status(StatusCode::SERVICE_UNAVAILABLE), 0.3)
        .with_random(Fault::JsonArray, 0.3);
    let server = start_with(plan).await;
    for (id, key) in operations {
        let _ = create(server.addr(), id, key).await;
    }
    let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
    server
        .request_log()
        .into_iter()
        .map(|record| {
            let key = record.idempotency_key.unwrap();
            let attempt = attempts.entry(key.clone()).or_default();
            *attempt += 1;
            ((key, *attempt), record.fault)
        })
        .collect()
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults_in_any_order() {
    let forward = operations();
    let mut backward = forward.clone();
    backward.reverse();
    // Interleaved differently again: evens first, then odds.
    let (evens, odds): (Vec<_>, Vec<_>) = forward.iter().cloned().enumerate().partition(|(n, _)| n % 2 == 0);
    let shuffled: Vec<_> = evens.into_iter().chain(odds).map(|(_, op)| op).collect();

    let first = decisions(2024, &forward).await;
    assert_eq!(first.len(), forward.len());
    let faulted = first.values().filter(|fault| fault.is_some()).count();
    assert!(
        faulted > 0 && faulted < first.len(),
        "{faulted} of {}",
        first.len()
    );
    assert_eq!(decisions(2024, &backward).await, first);
    assert_eq!(decisions(2024, &shuffled).await, first);
    assert_ne!(
        decisions(2025, &forward).await,
        first,
        "another seed, other faults"
    );
}
