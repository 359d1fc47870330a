//! The fault mode: which requests to a collection fail, and how.
//!
//! A [`FaultPlan`] is configuration (seeded, comparable, cloneable); the
//! server keeps its running state (bursts left, how often each operation
//! was seen and faulted) beside it in a [`FaultState`].

use std::collections::HashMap;
use std::time::Duration;

use http::{Method, StatusCode};

/// A failure injected into the answer to one request addressed to a
/// collection (never `/health`).
///
/// "Handled" below means the server does exactly what it would do without
/// the fault: the change takes effect (or is refused as usual), the
/// idempotency key is remembered, and the request is logged with
/// [`crate::RequestRecord::applied`] as usual; only the delivery of the
/// answer is broken. [`Fault::Status`] and [`Fault::RetryAfter`] are the
/// only faults that refuse the request instead: nothing changes and the
/// key is not remembered, so a retry is handled as new.
///
/// Every faulted request is logged with [`crate::RequestRecord::fault`]
/// set; its `status` is the status the answer carried or, for
/// [`Fault::LoseResponse`], would have carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Handled, then the connection is closed without a byte of the answer:
    /// the client sees the connection end (or reset) before any status, and
    /// cannot tell whether the change took effect.
    LoseResponse,
    /// Handled; the status line and headers go out with the true
    /// `Content-Length`, then about half the body, then the connection is
    /// closed: the client sees the body break off.
    ResetMidBody,
    /// Handled, then the answer is held back for the duration before it is
    /// sent whole: for exceeding the client's timeout.
    Delay(Duration),
    /// Refused, not handled: this status with a JSON error body
    /// `{"error": "..."}` (for 500/502/503 bursts, 400/422 permanent
    /// failures, 409 conflicts).
    Status(StatusCode),
    /// Refused, not handled: `status` (such as 429 or 503) with a JSON
    /// error body and the header `Retry-After: {seconds}`.
    RetryAfter {
        /// The status answered.
        status: StatusCode,
        /// The `Retry-After` value, in seconds.
        seconds: u64,
    },
    /// Handled; the status earned (`201`/`200` on success) with
    /// `Content-Type: application/json` and the true body minus its last
    /// byte, which is never valid JSON (`{"id":"1"` for `{"id":"1"}`).
    MalformedJson,
    /// Handled; the status earned with the JSON array `[1,2,3]` as the
    /// body (valid JSON, but not an object).
    JsonArray,
    /// Handled; the status earned with a body of exactly `bytes` bytes,
    /// streamed in 64 KiB chunks (never held in memory whole): the JSON
    /// object `{"padding":"xxx…"}` when `bytes` is at least 14, otherwise
    /// the first `bytes` bytes of `{"padding":""}`.
    HugeBody {
        /// The body's length (and `Content-Length`).
        bytes: usize,
    },
    /// Handled; the true answer, its body sent one byte at a time with
    /// `interval` between bytes (the first byte at once).
    Trickle {
        /// The pause between two bytes.
        interval: Duration,
    },
    /// Held for the duration after the request was read, then handled as
    /// usual (logged then, with the idempotency key remembered then), even
    /// if the client has given up and closed the connection meanwhile: a
    /// server that applies a write its client already counted as failed.
    /// The answer goes out at once after the handling, if the connection
    /// is still there. [`crate::RequestRecord::received_at`] and
    /// [`crate::RequestRecord::handled_at`] tell how late it was applied;
    /// [`crate::ReferenceServer::delayed_applies_pending`] and
    /// [`crate::ReferenceServer::wait_for_delayed_applies`] tell when none
    /// is left to land.
    DelayedApply(Duration),
}

impl Fault {
    /// The fault's kind as a stable name: `lose_response`,
    /// `reset_mid_body`, `delay`, `status`, `retry_after`,
    /// `malformed_json`, `json_array`, `huge_body`, `trickle` or
    /// `delayed_apply` (the keys of
    /// [`crate::ReferenceServer::fault_counts`]).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::LoseResponse => "lose_response",
            Self::ResetMidBody => "reset_mid_body",
            Self::Delay(_) => "delay",
            Self::Status(_) => "status",
            Self::RetryAfter { .. } => "retry_after",
            Self::MalformedJson => "malformed_json",
            Self::JsonArray => "json_array",
            Self::HugeBody { .. } => "huge_body",
            Self::Trickle { .. } => "trickle",
            Self::DelayedApply(_) => "delayed_apply",
        }
    }

    /// Whether the server handles the request as usual before breaking
    /// the answer (so a write takes effect): `false` only for
    /// [`Fault::Status`] and [`Fault::RetryAfter`], which refuse it.
    #[must_use]
    pub fn handles_request(&self) -> bool {
        !matches!(self, Self::Status(_) | Self::RetryAfter { .. })
    }
}

/// Random draws are compared in `[0, 2^53)`, where every probability in
/// `[0, 1]` has an exact width.
const DRAW_SPACE: u64 = 1 << 53;

/// Which requests get which [`Fault`]: a seeded, reproducible plan.
///
/// Every decision but [`FaultPlan::burst`]'s is a pure function of the
/// seed, the request's method, collection, record id and
/// `Idempotency-Key`, and how many times this same *operation* (those four
/// together) was seen before under this plan, so the same requests give
/// the same faults in whatever order they arrive. The record id is the one
/// in the path or query (the `id=eq.` filter in the PostgREST dialect) or,
/// for a create, the body's `"id"` (none when the server generates it).
///
/// For each request the rules are tried in this order, the first that
/// fires wins:
///
/// 1. [`FaultPlan::for_id`]: every request for that id, always;
/// 2. [`FaultPlan::burst`]: the next requests in arrival order;
/// 3. [`FaultPlan::first_attempts`]: the first occurrences of each
///    operation;
/// 4. [`FaultPlan::with_random`]: one seeded draw per request.
///
/// Rules 2–4 stop firing for an operation once it was faulted
/// [`FaultPlan::max_faults_per_request_key`] times. Only requests with an
/// allowed method ([`FaultPlan::only_methods`]) that passed the bearer
/// check (when one is required) and whose idempotency key and method are
/// usable are considered; the others are neither faulted nor counted.
///
/// ```
/// use std::time::Duration;
/// use http::{Method, StatusCode};
/// use sync_reference_server::{Fault, FaultPlan};
///
/// let plan = FaultPlan::seeded(7)
///     .only_methods(&[Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
///     .first_attempts(1, Fault::LoseResponse)
///     .with_random(Fault::Status(StatusCode::SERVICE_UNAVAILABLE), 0.2)
///     .with_random(Fault::Delay(Duration::from_secs(2)), 0.1)
///     .for_id("poison", Fault::Status(StatusCode::UNPROCESSABLE_ENTITY))
///     .max_faults_per_request_key(3);
/// assert_eq!(plan.seed(), 7);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultPlan {
    seed: u64,
    /// Each random fault with its width in [`DRAW_SPACE`]; the widths sum
    /// to at most `DRAW_SPACE`.
    random: Vec<(Fault, u64)>,
    ids: Vec<(String, Fault)>,
    bursts: Vec<(usize, Fault)>,
    first_attempts: Vec<(u64, Fault)>,
    methods: Option<Vec<Method>>,
    max_per_operation: Option<u64>,
}

impl FaultPlan {
    /// A plan that faults nothing yet, drawing from `seed`.
    #[must_use]
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            random: Vec::new(),
            ids: Vec::new(),
            bursts: Vec::new(),
            first_attempts: Vec::new(),
            methods: None,
            max_per_operation: None,
        }
    }

    /// The seed the plan draws from.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Each request gets `fault` with `probability`.
    ///
    /// Several random faults share one draw per request, each taking the
    /// next range of its width, so their probabilities add up. A
    /// probability is clamped to `[0, 1]` (NaN counts as 0), and when the
    /// total would pass 1 the fault added last gets only what is left (so
    /// nothing when the earlier ones already sum to 1).
    #[must_use]
    pub fn with_random(mut self, fault: Fault, probability: f64) -> Self {
        let used: u64 = self.random.iter().map(|(_, width)| width).sum();
        let probability = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        // Exact: a probability in [0, 1] times 2^53 fits in a u64.
        let width = (probability * DRAW_SPACE as f64).round() as u64;
        let width = width.min(DRAW_SPACE.saturating_sub(used));
        self.random.push((fault, width));
        self
    }

    /// Every request for record `id` (in any collection) gets `fault`, for
    /// ever: not limited by [`Self::max_faults_per_request_key`]. A later
    /// call for the same id replaces the fault.
    #[must_use]
    pub fn for_id(mut self, id: impl Into<String>, fault: Fault) -> Self {
        let id = id.into();
        self.ids.retain(|(known, _)| *known != id);
        self.ids.push((id, fault));
        self
    }

    /// The next `n` requests, in the order the server sees them, get
    /// `fault`. Several bursts follow one another in the order added
    /// (`burst(3, a).burst(2, b)`: three `a`, then two `b`). The count
    /// starts when the plan is installed.
    #[must_use]
    pub fn burst(mut self, n: usize, fault: Fault) -> Self {
        self.bursts.push((n, fault));
        self
    }

    /// The first `n` occurrences of each operation (method, collection,
    /// record id and idempotency key) get `fault`. Several calls follow
    /// one another per operation: `first_attempts(1, a).first_attempts(2,
    /// b)` gives every operation `a` on its first request, `b` on its
    /// second and third.
    #[must_use]
    pub fn first_attempts(mut self, n: usize, fault: Fault) -> Self {
        self.first_attempts
            .push((u64::try_from(n).unwrap_or(u64::MAX), fault));
        self
    }

    /// Considers only requests with one of `methods` (such as the writes);
    /// by default every method. Replaces an earlier filter. `PATCH` is a
    /// method of its own: list it beside `PUT` to fault every update.
    #[must_use]
    pub fn only_methods(mut self, methods: &[Method]) -> Self {
        self.methods = Some(methods.to_vec());
        self
    }

    /// Once an operation was faulted `n` times, the bursts, first attempts
    /// and random faults leave it alone, so retries make progress at last.
    /// Default: no limit. [`Self::for_id`] faults ignore the limit.
    #[must_use]
    pub fn max_faults_per_request_key(mut self, n: usize) -> Self {
        self.max_per_operation = Some(u64::try_from(n).unwrap_or(u64::MAX));
        self
    }

    /// The random fault for the `occurrence`-th request (from 0) of an
    /// operation, if the draw hits one.
    fn random_fault(&self, operation: &Operation, occurrence: u64) -> Option<&Fault> {
        if self.random.is_empty() {
            return None;
        }
        let draw = draw(self.seed, operation, occurrence) >> 11;
        let mut start = 0u64;
        for (fault, width) in &self.random {
            let end = start + width;
            if draw < end {
                return Some(fault);
            }
            start = end;
        }
        None
    }

    fn first_attempt_fault(&self, occurrence: u64) -> Option<&Fault> {
        let mut start = 0u64;
        for (n, fault) in &self.first_attempts {
            let end = start.saturating_add(*n);
            if occurrence < end {
                return Some(fault);
            }
            start = end;
        }
        None
    }
}

/// What identifies an operation: its retries share all four.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Operation {
    pub(crate) method: Method,
    pub(crate) collection: String,
    pub(crate) id: Option<String>,
    pub(crate) key: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    requests: u64,
    faulted: u64,
}

/// A plan in force: the plan and what it has counted so far.
#[derive(Debug)]
pub(crate) struct FaultState {
    plan: FaultPlan,
    /// Requests left in each of `plan.bursts`.
    bursts_left: Vec<usize>,
    seen: HashMap<Operation, Seen>,
}

impl FaultState {
    pub(crate) fn new(plan: FaultPlan) -> Self {
        let bursts_left = plan.bursts.iter().map(|(n, _)| *n).collect();
        Self {
            plan,
            bursts_left,
            seen: HashMap::new(),
        }
    }

    /// Decides the fault for one request, counting it.
    pub(crate) fn decide(&mut self, operation: Operation) -> Option<Fault> {
        if let Some(methods) = &self.plan.methods
            && !methods.contains(&operation.method)
        {
            return None;
        }
        let seen = self.seen.get(&operation).copied().unwrap_or_default();
        let mut fault = operation
            .id
            .as_ref()
            .and_then(|id| self.plan.ids.iter().find(|(known, _)| known == id))
            .map(|(_, fault)| fault.clone());
        let capped = self.plan.max_per_operation.is_some_and(|max| seen.faulted >= max);
        if fault.is_none() && !capped {
            fault = self.burst_fault();
        }
        if fault.is_none() && !capped {
            fault = self
                .plan
                .first_attempt_fault(seen.requests)
                .or_else(|| self.plan.random_fault(&operation, seen.requests))
                .cloned();
        }
        let entry = self.seen.entry(operation).or_default();
        entry.requests += 1;
        if fault.is_some() {
            entry.faulted += 1;
        }
        fault
    }

    fn burst_fault(&mut self) -> Option<Fault> {
        let (left, (_, fault)) = self
            .bursts_left
            .iter_mut()
            .zip(&self.plan.bursts)
            .find(|(left, _)| **left > 0)?;
        *left -= 1;
        Some(fault.clone())
    }
}

/// The seeded draw for one request: SplitMix64 over FNV-1a hashes of each
/// field, so equal fields give equal draws on every platform and run.
fn draw(seed: u64, operation: &Operation, occurrence: u64) -> u64 {
    let mut state = splitmix64(seed);
    for field in [
        Some(operation.method.as_str()),
        Some(operation.collection.as_str()),
        operation.id.as_deref(),
        operation.key.as_deref(),
    ] {
        state = splitmix64(state ^ fnv1a(field));
    }
    splitmix64(state ^ occurrence)
}

fn fnv1a(field: Option<&str>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    // A tag byte tells a missing field from an empty one.
    let (tag, bytes) = match field {
        None => (0u8, &[][..]),
        Some(text) => (1u8, text.as_bytes()),
    };
    std::iter::once(tag)
        .chain(bytes.iter().copied())
        .fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: Method, id: &str, key: &str) -> Operation {
        Operation {
            method,
            collection: "tasks".to_owned(),
            id: Some(id.to_owned()),
            key: Some(key.to_owned()),
        }
    }

    #[test]
    fn probabilities_are_clamped_and_capped_at_one_in_total() {
        let plan = FaultPlan::seeded(1)
            .with_random(Fault::JsonArray, 0.75)
            .with_random(Fault::MalformedJson, 0.5)
            .with_random(Fault::LoseResponse, f64::NAN)
            .with_random(Fault::ResetMidBody, 2.0);
        let widths: Vec<u64> = plan.random.iter().map(|(_, width)| *width).collect();
        assert_eq!(widths, [DRAW_SPACE / 4 * 3, DRAW_SPACE / 4, 0, 0]);
    }

    #[test]
    fn probability_one_always_fires_and_zero_never() {
        let always = FaultPlan::seeded(9).with_random(Fault::JsonArray, 1.0);
        let never = FaultPlan::seeded(9).with_random(Fault::JsonArray, 0.0);
        for n in 0..200 {
            let operation = op(Method::PUT, &n.to_string(), "k");
            assert_eq!(always.random_fault(&operation, 0), Some(&Fault::JsonArray));
            assert_eq!(never.random_fault(&operation, 0), None);
        }
    }

    #[test]
    fn the_draw_rate_follows_the_probability() {
        let plan = FaultPlan::seeded(42).with_random(Fault::LoseResponse, 0.3);
        let hits = (0..10_000)
            .filter(|n| {
                plan.random_fault(&op(Method::POST, &n.to_string(), "k"), 0)
                    .is_some()
            })
            .count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
    }

    #[test]
    fn first_attempts_and_the_cap_are_per_operation() {
        let plan = FaultPlan::seeded(0)
            .first_attempts(1, Fault::LoseResponse)
            .first_attempts(2, Fault::JsonArray)
            .with_random(Fault::MalformedJson, 1.0)
            .max_faults_per_request_key(4);
        let mut state = FaultState::new(plan);
        let decisions: Vec<_> = (0..6)
            .map(|_| state.decide(op(Method::POST, "a", "k1")))
            .collect();
        assert_eq!(
            decisions,
            [
                Some(Fault::LoseResponse),
                Some(Fault::JsonArray),
                Some(Fault::JsonArray),
                Some(Fault::MalformedJson),
                None,
                None
            ]
        );
        // Another key is another operation.
        assert_eq!(
            state.decide(op(Method::POST, "a", "k2")),
            Some(Fault::LoseResponse)
        );
    }

    #[test]
    fn bursts_follow_one_another_and_filters_skip_without_counting() {
        let plan = FaultPlan::seeded(0)
            .only_methods(&[Method::PUT])
            .burst(2, Fault::Status(StatusCode::SERVICE_UNAVAILABLE))
            .burst(1, Fault::JsonArray);
        let mut state = FaultState::new(plan);
        assert_eq!(state.decide(op(Method::GET, "a", "k")), None);
        let decisions: Vec<_> = (0..4)
            .map(|n| state.decide(op(Method::PUT, &n.to_string(), "k")))
            .collect();
        let unavailable = Some(Fault::Status(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(
            decisions,
            [unavailable.clone(), unavailable, Some(Fault::JsonArray), None]
        );
    }

    #[test]
    fn id_faults_win_and_ignore_the_cap() {
        let plan = FaultPlan::seeded(0)
            .burst(1, Fault::JsonArray)
            .for_id("bad", Fault::Status(StatusCode::BAD_REQUEST))
            .for_id("bad", Fault::Status(StatusCode::UNPROCESSABLE_ENTITY))
            .max_faults_per_request_key(1);
        let mut state = FaultState::new(plan);
        for _ in 0..3 {
            assert_eq!(
                state.decide(op(Method::PUT, "bad", "k")),
                Some(Fault::Status(StatusCode::UNPROCESSABLE_ENTITY))
            );
        }
        // The burst was not used up by the id fault.
        assert_eq!(state.decide(op(Method::PUT, "good", "k")), Some(Fault::JsonArray));
    }

    #[test]
    fn draws_depend_on_every_field() {
        let base = op(Method::PUT, "1", "k");
        let first = draw(5, &base, 0);
        assert_eq!(first, draw(5, &base, 0));
        let mut others = vec![draw(6, &base, 0), draw(5, &base, 1)];
        others.push(draw(5, &op(Method::POST, "1", "k"), 0));
        others.push(draw(5, &op(Method::PUT, "2", "k"), 0));
        others.push(draw(5, &op(Method::PUT, "1", "j"), 0));
        others.push(draw(
            5,
            &Operation {
                collection: "notes".to_owned(),
                ..base.clone()
            },
            0,
        ));
        others.push(draw(5, &Operation { key: None, ..base }, 0));
        assert!(others.iter().all(|other| *other != first));
    }
}
