//! The network layer: the REST adapter on hyper and the real-internet
//! connectivity probe.
//!
//! - [`HttpSyncApiAdapter`] implements [`sync_core::SyncApiAdapter`]:
//!   pooled keep-alive connections, HTTP/1.1 and HTTP/2, TLS through rustls
//!   (Mozilla roots plus your own), an auth hook with refresh on 401,
//!   percent-encoded routes or your own path builder, an `Idempotency-Key`
//!   on every write, and errors classified for the engine (offline,
//!   transient with `Retry-After`, permanent, conflict, not found). It
//!   implements [`sync_core::PullSource`] too, with a [`PullStrategy`]
//!   per entity: the server's change feed, a list filtered on an
//!   updated-at field, or a full snapshot.
//! - [`InternetConnectionMonitor`] implements
//!   [`sync_core::ConnectivityMonitor`]: concurrent probes of the check
//!   options the app names (no third-party host unless asked for), each
//!   bounded by its timeout, first success wins, and a deduplicated change
//!   stream.
//!
//! Errors and logs never contain payloads or credentials: header values
//! are marked sensitive, and request lines carry the path without the query
//! and with the record id replaced by `{id}`. The server's answer is quoted
//! in errors only when the app opts in
//! ([`HttpSyncApiAdapterBuilder::include_response_body_in_errors`]), as it
//! often echoes personal data.
#![deny(missing_docs)]

mod adapter;
mod answers;
mod assigned;
mod client;
mod connectivity;
mod error;
mod exchange;
mod lookup;
mod presets;
mod pull;
mod pull_answers;
mod pull_cursor;
mod pull_source;
mod shape;
mod url;

pub use adapter::{AuthHook, HttpSyncApiAdapter, HttpSyncApiAdapterBuilder, IDEMPOTENCY_KEY, PathBuilder};
pub use connectivity::{
    InternetCheckOption, InternetConnectionMonitor, InternetConnectionMonitorBuilder, StatusPredicate,
    public_check_options,
};
pub use error::NetError;
pub use pull::{ChangeFeed, FilteredList, ListDialect, PullStrategy, Snapshot};
pub use shape::{
    AnswerMatch, AnswerShape, BodyShape, HttpMethod, IdType, RequestKind, RequestShape, RouteFn,
    VersionSource, merge_patch,
};
pub use url::{default_path, encode_query_value, encode_segment};
