//! The reference REST server: what the demo and the end-to-end tests sync
//! against, the counterpart of the Flutter reference's json-server.
//!
//! It keeps named collections of JSON objects keyed by string id, in memory
//! and optionally in a JSON file, and serves them over HTTP/1.1 on
//! `127.0.0.1` (paths relative to an optional prefix such as `/api`):
//!
//! | request | answer |
//! |---|---|
//! | `POST /{collection}` with a JSON object | `201`, the stored object and its `ETag`; `409` if its id exists (with [assigned ids](#server-assigned-ids), under the next id; `400` for a body with an id) |
//! | `GET /{collection}` | `200` and the objects in insertion order (or as the [list parameters](#lists) ask) |
//! | `GET /{collection}?{field}={value}` | `200` and the objects whose field holds the value, as an array (`[]` for none): a [lookup](#lists) |
//! | `GET /{collection}/changes?limit={n}[&since={cursor}]` | `200` and a page of the [change feed](#the-change-feed); `410` for an expired cursor |
//! | `GET /{collection}/{id}` | `200`, the object and its `ETag`, or `404` |
//! | `PUT /{collection}/{id}` with a JSON object | `200`, the stored object and its new `ETag`, or `404` |
//! | `PATCH /{collection}/{id}` with a JSON Merge Patch | `200`, the whole patched object and its new `ETag`, or `404` |
//! | `DELETE /{collection}/{id}` | `200` and the deleted object (no `ETag`), or `404` |
//! | `PUT`, `PATCH` or `DELETE` with an `If-Match` that does not match | `412`, nothing changed |
//! | `GET /health` | `200` and `{"status":"ok"}` |
//! | `POST /_admin/{collection}/purge-tombstones[?through={stamp}]` | `200` and `{"purged": n, "oldest_cursor": "…"}` |
//!
//! `/{collection}?id={id}` addresses a record as `/{collection}/{id}` does;
//! path segments and query values are percent-decoded. A `POST` without
//! an `"id"` (or with `null`) gets one the server makes up, a string. A
//! `PUT` body's `"id"`, if any, must be the addressed one (a number or its
//! decimal text; else `400`), and the stored id is kept (a number stays a
//! number). The names `health`, `_admin` and `_assigned_ids` are no
//! collections. Bodies that are not JSON objects get `400`, other methods
//! `405`; every error body is a JSON object with an `"error"` message (but
//! for the PostgREST dialect's own, below).
//!
//! ## ETags and conditional writes
//!
//! Every record has a version ([`ReferenceServer::record_version`]), which
//! every change applied to it replaces with one never handed out before
//! on this server (the counter is server-wide, so a record deleted and
//! created again cannot match an `ETag` of the old one). The answers that
//! carry a record, or in the PostgREST dialect concern one that exists
//! afterwards, send it as a strong `ETag: "{version}"`.
//!
//! A `PUT`, `PATCH` or `DELETE` with `If-Match` is applied only when the
//! header lists the record's current `ETag` (`"3"`, or a list such as
//! `"2", "3"`; weak tags never match) or is `*` and the record exists.
//! Otherwise the answer is `412 Precondition Failed` with a JSON error
//! (and the current `ETag`, when the record exists) and nothing changes,
//! also when the record is missing. A malformed `If-Match` gets `400`.
//! `If-Match` on `GET` and `POST` is ignored. The precondition is
//! evaluated when the write is applied: a write held by
//! [`Fault::DelayedApply`] is compared with the record as it is when the
//! hold ends, so a newer change made meanwhile makes it `412` rather than
//! being overwritten. A repeated `Idempotency-Key` gets the stored answer
//! (its `ETag` included) without the precondition being evaluated again;
//! a `412` is not remembered, as no refused request is.
//!
//! Versions live in memory: with a data file, a restarted server versions
//! the loaded records afresh, from the microseconds since the Unix epoch,
//! so `ETag`s of an earlier run do not match.
//!
//! ## The change feed
//!
//! Every create, update, patch and delete applied to a collection takes
//! the next value of the collection's change sequence, under the lock that
//! applies it (a write held by [`Fault::DelayedApply`] when it finally
//! applies), so stamps follow commit order. `GET /{collection}/changes`
//! lists, in stamp order, the latest change of every record changed after
//! `since` (everything without it), at most `limit` (default 100, lowered
//! to 1000):
//!
//! ```json
//! {"changes": [
//!    {"op": "upsert", "id": "t1", "data": {"id": "t1", "title": "x"}, "version": "\"3\""},
//!    {"op": "delete", "id": "t2"}],
//!  "cursor": "1042", "more": false}
//! ```
//!
//! `data` is what `GET /{collection}/{id}` answers and `version` its
//! `ETag`; `id` is the stored id (a string, or a number if created with one).
//! `cursor` is the stamp of the page's last change (of the collection's
//! last change for an empty page), `more` whether changes follow. A
//! deleted record leaves a tombstone (a soft-deleted one counts as
//! deleted) until it is purged: by [`ServerConfig::tombstone_retention`],
//! [`ReferenceServer::purge_tombstones`] or
//! `POST /_admin/{collection}/purge-tombstones[?through={stamp}]`. A
//! `since` older than the latest deletion purged
//! ([`ReferenceServer::oldest_cursor`]), or newer than the last stamp
//! ([`ReferenceServer::change_stamp`]: a cursor of another run), gets
//! `410` with `{"error": "cursor expired"}`; a `since` that is not a
//! non-negative integer, or a `limit` that is not a positive one, `400`.
//! The feed answers in both dialects, is logged as a `GET` without an id,
//! and the fault plan and the bearer check apply to it as to any request
//! (the purge route is checked for the bearer, neither logged nor
//! faulted). A record with the id `changes` is read as
//! `/{collection}?id=changes`; `PUT`, `PATCH` and `DELETE` reach it at
//! `/{collection}/changes` too. With a data file, a restart starts the
//! stamps after the microseconds since the epoch, so the cursors of an
//! earlier run (whose tombstones are gone) are expired.
//!
//! ## Lists
//!
//! `GET /{collection}` takes json-server's parameters. `{field}=X` is a
//! lookup: it keeps the records whose field is the string `X`, a number
//! whose decimal text is `X` (`17`, `2.5`) or the boolean `X`, so that a
//! client that lost the answer to a create finds its record by a field it
//! sent (`GET /tasks?client_ref=r-81` answers `[{"id": 17, …}]`, or `[]`).
//! Every parameter not named below is a lookup, except `id` (which
//! addresses a record) and names starting with `_` (json-server's own,
//! such as `_page`), which are ignored. `{field}_gte=X`,
//! `_gt`, `_lte`, `_lt` (numbers compare numerically, strings byte by
//! byte, ids of digits as numbers and before the others; a record without
//! the field, or with another type, is left out), `_sort=a,-b` (`-`:
//! descending; ties keep insertion order), `_start=k` and `_limit=n`.
//! All filters apply together (a repeated lookup of one field, with two
//! values, keeps nothing). The PostgREST dialect takes `{column}=eq.X`
//! (a lookup; `id=eq.` addresses a row), `{field}=gte.X` (`gt.`, `lte.`,
//! `lt.`), `order=a.asc,b.desc`,
//! `offset=` and `limit=` on its list (only there: elsewhere they are
//! `400`). Pages of the insertion order, of `_sort=id`, and of
//! `_sort={stamp field},id` with range filters on the stamp field, come
//! from indexes: about as fast deep into a million records as at the top.
//!
//! ## The stamp field and soft deletes
//!
//! With [`ServerConfig::stamp_field`] (`--stamp-field updated_at`) every
//! create, update, patch and soft delete writes into the stored record a
//! strictly growing integer, the milliseconds since the epoch bumped past
//! the last value handed out ([`ReferenceServer::pin_stamp`] forces ties).
//! With [`ServerConfig::soft_delete_field`] (`--soft-delete deleted`) a
//! `DELETE` sets the field to `true` and keeps the record: it reads as
//! missing (`GET`, `PUT`, `PATCH`, `DELETE` `404`, `If-Match` never
//! matches, the feed says `delete`, [`ReferenceServer::snapshot`] leaves
//! it out) but lists still show it, and a `POST` of its id brings it back.
//! [`ReferenceServer::seed`] fills a collection without HTTP.
//!
//! ## Server-assigned ids
//!
//! With [`ServerConfig::with_assigned_ids`] (`--assign-ids`, or
//! [`ReferenceServer::set_assigned_ids`] while running) the server names
//! the records created, as a database with an auto-increment key does: a
//! `POST /{collection}` stores the body under the collection's next
//! integer, `1`, `2`, … (counted per collection, skipping ids in use, and
//! never handed out twice: not after a delete, and with a data file not
//! after a restart, as the file keeps the last one of each collection
//! under `"_assigned_ids"`). The record holds it as a JSON number,
//! `{"id": 17, …}`, the answer is the usual `201` with the record and its
//! `ETag`, and from then on the record is `/{collection}/17` for `GET`,
//! `PUT`, `PATCH` and `DELETE`, in the lists, the change feed (`"id": 17`)
//! and the request log (id `"17"`). A body that carries an `"id"` (but
//! for `null`, which is none) is refused with `400` and
//! `{"error": "the server assigns ids: …"}` (in the PostgREST dialect,
//! code `428C9` as PostgreSQL answers for an identity column), and
//! nothing is created or counted: that is a client sending its own
//! temporary id. A repeated `Idempotency-Key` gets the first answer, the
//! same id, and creates nothing; with [`IdempotencyMode::Ignore`] every
//! repeat creates a record under a new id, the duplicate a
//! non-idempotent server makes. [`ReferenceServer::last_assigned_id`]
//! tells the last one; [`ReferenceServer::records`] and
//! [`ReferenceServer::record_count`] what a collection holds.
//!
//! ## `PATCH`
//!
//! In the REST dialect the body is a JSON Merge Patch (RFC 7386;
//! `Content-Type: application/merge-patch+json` or `application/json`,
//! others `415` with `Accept-Patch`): `null` removes a member, an object
//! is merged into the member recursively, anything else replaces it. The
//! patch's `"id"`, if any, must be the addressed one (or `400`; `null`
//! too, as it would remove the id), and the stored id is kept. The body
//! limits and the refusals of `PUT` apply, and the fault plan, the request
//! log and idempotency keys treat `PATCH` as they treat `PUT` (it is a
//! method of its own for [`FaultPlan::only_methods`]).
//!
//! ## The PostgREST dialect
//!
//! With [`ServerConfig::with_dialect`]`(`[`Dialect::PostgRest`]`)` (or
//! `--dialect postgrest`) the server answers as PostgREST does for a table
//! with the primary key `id`; "representation" means the request carried
//! `Prefer: return=representation`:
//!
//! | request | answer |
//! |---|---|
//! | `GET /{collection}` | `200` and every row, as an array (or as the [list parameters](#lists) ask) |
//! | `GET /{collection}?id=eq.{id}` | `200` and `[row]` (with its `ETag`) or `[]` |
//! | `POST /{collection}` with a JSON object | `201` with `[row]` (representation) or no body, and the `ETag` |
//! | the same, its id taken | `409` and `{"code":"23505","message":"duplicate key value violates unique constraint …",…}` |
//! | `PATCH /{collection}?id=eq.{id}` with a JSON object | `200` with `[row]` (representation) or `204`, and the new `ETag` |
//! | the same, no such row | `200` with `[]` (representation) or `204`; nothing changed |
//! | `DELETE /{collection}?id=eq.{id}` | `200` with `[row]` (representation) or `204` |
//! | the same, no such row | `200` with `[]` (representation) or `204`; nothing changed |
//! | `PATCH` or `DELETE` without `id=eq.` | `400` and `{"code":"21000","message":"UPDATE requires a WHERE clause",…}` (`DELETE …` for a delete): no mass updates |
//!
//! A dialect `PATCH` sets the given columns (`null` included) and leaves
//! the others, with the same rule for `"id"`; its body is
//! `application/json`. The query may hold only `id=eq.{id}`,
//! `select=*` and, on a list, the [list parameters](#lists); any other
//! parameter, or another operator, is `400` with code `PGRST100`. `/{collection}/{id}` is `404`, `PUT` and other
//! methods `405`. The errors the dialect adds are shaped as PostgREST's
//! (`code`, `message`, `details`, `hint`); the others (`401`, `404`,
//! `412`, a body that is not a JSON object, injected faults) keep the
//! `{"error": ...}` shape. `If-Match`, idempotency keys, the fault plan
//! and the request log (with the id of the filter) work as in the REST
//! dialect; a `PATCH` or `DELETE` that matched no row is logged as not
//! applied, and its idempotency key is not remembered.
//!
//! For testing the sync engine's promises it also:
//!
//! - honours `Idempotency-Key` on writes: a request that took effect is
//!   remembered with its answer, and a repeat of the key gets that answer
//!   again (with `Idempotent-Replayed: true`) without being applied twice;
//!   or, with [`IdempotencyMode::Ignore`] ([`ServerConfig::with_idempotency`],
//!   [`ReferenceServer::set_idempotency`]), ignores it as json-server and
//!   most real APIs do, so that only the client can prevent a duplicate
//!   (a repeated create of an existing id gets `409`);
//! - logs every request addressed to a collection
//!   ([`ReferenceServer::request_log`], [`ReferenceServer::applied_requests`]),
//!   so a test can count how often each change took effect, and under
//!   which idempotency key, in either mode; each applied write carries
//!   the change stamp it took and the record it left
//!   ([`RequestRecord::change`], [`RequestRecord::record`]), so the log is
//!   the history of every record, as of any feed cursor;
//! - goes down and comes back on the same port with its state
//!   ([`ReferenceServer::stop`], [`ReferenceServer::resume`]): while down,
//!   connections are refused, exactly as when the API is unreachable;
//! - shows its state for comparison with the local store
//!   ([`ReferenceServer::snapshot`]);
//! - injects faults into answers by a seeded, reproducible [`FaultPlan`]
//!   ([`ServerConfig::with_faults`], [`ReferenceServer::set_faults`]), each
//!   faulted request logged with its [`RequestRecord::fault`] and counted
//!   ([`ReferenceServer::fault_counts`]);
//! - requires a bearer token when asked ([`ServerConfig::with_bearer_token`],
//!   [`ReferenceServer::require_bearer`]): a request to a collection without
//!   `Authorization: Bearer {token}` gets `401` with a JSON error, is logged
//!   and is neither applied nor faulted (`/health` stays open).
//!
//! ## Faults
//!
//! Decided per request to a collection (never `/health`); "handled" means
//! the request is applied exactly as without the fault (idempotency key
//! remembered, logged with `applied` as usual) and only the answer breaks:
//!
//! | [`Fault`] | handled | what the client sees |
//! |---|---|---|
//! | `LoseResponse` | yes | the connection closed before any byte of an answer |
//! | `ResetMidBody` | yes | status and headers with the full `Content-Length`, part of the body, then the close |
//! | `Delay(d)` | yes | the whole answer, `d` late |
//! | `Status(s)` | **no** | `s` with `{"error": "..."}` |
//! | `RetryAfter { status, seconds }` | **no** | `status` with `Retry-After: {seconds}` and a JSON error |
//! | `MalformedJson` | yes | the earned status, `application/json`, the body minus its last byte |
//! | `JsonArray` | yes | the earned status and `[1,2,3]` |
//! | `HugeBody { bytes }` | yes | the earned status and exactly `bytes` bytes of `{"padding":"xxx…"}`, streamed |
//! | `Trickle { interval }` | yes | the true answer, its body one byte per `interval` |
//! | `DelayedApply(d)` | yes, `d` late | nothing for `d`, then the true answer; the request is handled after `d` even if the client hung up meanwhile ([`ReferenceServer::wait_for_delayed_applies`]), its `If-Match` evaluated then |
//!
//! A `204` (PostgREST dialect) has no body to break: the body faults
//! (`ResetMidBody`, `MalformedJson`, `JsonArray`, `HugeBody`, `Trickle`)
//! leave it whole, though they are counted and logged.
//!
//! A plan picks faults by record id ([`FaultPlan::for_id`]), in bursts
//! ([`FaultPlan::burst`]), for the first attempts of every operation
//! ([`FaultPlan::first_attempts`]) or at random ([`FaultPlan::with_random`]);
//! every choice but the burst's is a pure function of the seed and the
//! request (method, collection, id, idempotency key, and how many times
//! that operation was seen), so the same requests get the same faults in
//! any arrival order.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sync_reference_server::Error> {
//! use http::{Method, StatusCode};
//! use sync_reference_server::{Fault, FaultPlan, ReferenceServer, ServerConfig};
//!
//! let server = ReferenceServer::start(ServerConfig::new().with_prefix("/api")).await?;
//! println!("serving {}", server.base_url());
//! // The first send of every write loses its answer; then a 503 in ten.
//! server.set_faults(Some(
//!     FaultPlan::seeded(42)
//!         .only_methods(&[Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
//!         .first_attempts(1, Fault::LoseResponse)
//!         .with_random(Fault::Status(StatusCode::SERVICE_UNAVAILABLE), 0.1)
//!         .max_faults_per_request_key(3),
//! ));
//! server.stop().await; // the API is down: connections are refused
//! server.resume().await?; // and back, same port, same data
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod body;
mod changes;
mod clock;
mod collection;
mod conditional;
mod config;
mod error;
mod fault;
mod handler;
mod listing;
mod log;
mod order;
mod patch;
mod persist;
mod ranked;
mod reply;
mod route;
mod server;
mod store;
mod writes;

pub use config::{Dialect, IdempotencyMode, ServerConfig};
pub use error::Error;
pub use fault::{Fault, FaultPlan};
pub use handler::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
pub use log::RequestRecord;
pub use server::ReferenceServer;
pub use store::Snapshot;
