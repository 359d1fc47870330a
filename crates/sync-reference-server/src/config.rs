//! What a server is started with.

use std::path::PathBuf;

use crate::error::Error;
use crate::fault::FaultPlan;
use crate::store::StoreOptions;

/// How to start a [`crate::ReferenceServer`].
///
/// ```
/// use sync_reference_server::ServerConfig;
///
/// let config = ServerConfig::new().with_port(3000).with_prefix("/api");
/// assert_eq!(config.port, 3000);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The port on `127.0.0.1`. Default `0`: a free port between 20000 and
    /// 32767 (read it back with [`crate::ReferenceServer::addr`]), outside
    /// the kernel's ephemeral ranges so nothing takes it by chance while the
    /// server is stopped.
    pub port: u16,
    /// The JSON file the collections are loaded from at start (when it
    /// exists) and written to after every change. Default: none, the data
    /// lives in memory only.
    pub data_file: Option<PathBuf>,
    /// A path prefix every route sits under, such as `/api`. Default: none.
    pub prefix: String,
    /// The fault plan to start with (see [`FaultPlan`]; changed later with
    /// [`crate::ReferenceServer::set_faults`]). Default: none, every answer
    /// is whole.
    pub faults: Option<FaultPlan>,
    /// The token every request to a collection must carry as
    /// `Authorization: Bearer {token}` (see
    /// [`crate::ReferenceServer::require_bearer`]). Default: none, no
    /// authorization needed.
    pub bearer_token: Option<String>,
    /// What the server does with `Idempotency-Key` on writes (see
    /// [`IdempotencyMode`]; changed later with
    /// [`crate::ReferenceServer::set_idempotency`]). Default:
    /// [`IdempotencyMode::Replay`].
    pub idempotency: IdempotencyMode,
    /// The shape of the API served (see [`Dialect`]). Default:
    /// [`Dialect::Rest`].
    pub dialect: Dialect,
    /// The field every create, update (`PUT`), patch and soft delete sets
    /// in the stored record to a strictly growing integer: the
    /// milliseconds since the Unix epoch, bumped by one past the last
    /// value handed out (server-wide) when the clock has not moved on.
    /// What a client sends in it is overwritten. A test can force ties
    /// with [`crate::ReferenceServer::pin_stamp`]. Default: none, records
    /// are stored as sent.
    pub stamp_field: Option<String>,
    /// The field a `DELETE` sets to `true` instead of removing the record
    /// (with a new stamp field value, version and change stamp). Such a
    /// record (any record whose field holds `true`) reads as missing:
    /// `GET`, `PUT`, `PATCH`, `DELETE` and `If-Match` see no record, and
    /// the change feed lists it as a `delete`; but lists still show it,
    /// which is how list-based clients learn of deletions. A `POST` of
    /// its id creates it again. Default: none, a delete removes the
    /// record and leaves a tombstone for the change feed.
    pub soft_delete_field: Option<String>,
    /// How many change stamps back the change feed keeps deletions
    /// (tombstones and soft-deleted records): after each write, those
    /// with a stamp at most `last - retention` are forgotten, and a
    /// `since` older than the latest one forgotten gets `410 Gone`.
    /// Default: none, deletions are kept until purged
    /// ([`crate::ReferenceServer::purge_tombstones`] or
    /// `POST /_admin/{collection}/purge-tombstones`).
    pub tombstone_retention: Option<u64>,
    /// Whether the server assigns the ids of created records itself, as a
    /// database with an auto-increment key does (changed later with
    /// [`crate::ReferenceServer::set_assigned_ids`]): a `POST
    /// /{collection}` gets the collection's next integer (`1`, `2`, …,
    /// never handed out twice, not even after a delete; kept in the data
    /// file), stored and answered as the JSON number `"id": 17`, and a
    /// body that carries an `"id"` of its own is refused with `400`.
    /// Default: `false`, the client names its records (a body without an
    /// `"id"` gets a generated string id).
    pub assigned_ids: bool,
}

/// The shape of the API the server speaks: its routes, answers and errors.
///
/// The data, the idempotency keys, the ETags and `If-Match`, the fault
/// plan, the bearer check and the request log work the same in every
/// dialect; only how a record is addressed and how answers look differ.
///
/// ```
/// use sync_reference_server::{Dialect, ServerConfig};
///
/// let config = ServerConfig::new().with_dialect(Dialect::PostgRest);
/// assert_eq!(config.dialect, Dialect::PostgRest);
/// assert_eq!(ServerConfig::new().dialect, Dialect::Rest);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// json-server's shape: `/{collection}` and `/{collection}/{id}` (or
    /// `?id={id}`), answers are the objects themselves, `PATCH` takes a
    /// JSON Merge Patch, errors are `{"error": "..."}`.
    #[default]
    Rest,
    /// PostgREST's shape: rows addressed by the filter
    /// `/{collection}?id=eq.{id}`, answers are JSON arrays (with
    /// `Prefer: return=representation`) or empty, `PATCH` sets the given
    /// columns, a taken id is `409` with code `23505`, and a `PATCH` or
    /// `DELETE` without an id filter is refused (no mass updates).
    PostgRest,
}

impl Dialect {
    /// The dialect's name on the command line: `rest` or `postgrest`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::PostgRest => "postgrest",
        }
    }

    /// The dialect [`Self::name`] gives `name` (ASCII case ignored).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Rest, Self::PostgRest]
            .into_iter()
            .find(|dialect| dialect.name().eq_ignore_ascii_case(name))
    }
}

/// Whether the server honours `Idempotency-Key` on writes.
///
/// Most real APIs (json-server among them) ignore the header, so an engine
/// that sends one change twice gets it applied twice there; the default
/// [`IdempotencyMode::Replay`] would hide that bug. End-to-end tests that
/// must prove the engine itself prevents duplicates run with
/// [`IdempotencyMode::Ignore`].
///
/// ```
/// use sync_reference_server::{IdempotencyMode, ServerConfig};
///
/// let config = ServerConfig::new().with_idempotency(IdempotencyMode::Ignore);
/// assert_eq!(config.idempotency, IdempotencyMode::Ignore);
/// assert_eq!(ServerConfig::new().idempotency, IdempotencyMode::Replay);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdempotencyMode {
    /// A write that took effect is remembered with its answer under its
    /// key; a repeat of the key gets that answer again (with
    /// `Idempotent-Replayed: true`) and is not applied again. A present
    /// but unusable key (empty, not visible ASCII) is refused with `400`.
    #[default]
    Replay,
    /// The header is ignored, as by json-server: every request is applied
    /// as new. A repeated create of an existing id gets `409 Conflict`
    /// ("already holds a record", which the engine's HTTP adapter
    /// classifies as a conflict that was possibly applied, so its next
    /// attempt checks for the record and updates it; with
    /// [`ServerConfig::assigned_ids`], a second record under a new id), a
    /// repeated update is
    /// applied again, and a repeated delete of a record already gone gets
    /// `404`. Nothing is remembered, no answer is replayed, and an unusable
    /// key is not refused. The request log still records each request's
    /// key ([`crate::RequestRecord::idempotency_key`], `None` for an
    /// unusable one), so a test can count a key applied twice.
    Ignore,
}

impl ServerConfig {
    /// The defaults: an ephemeral port, no data file, no prefix, no faults,
    /// no bearer token, [`IdempotencyMode::Replay`], [`Dialect::Rest`], no
    /// stamp field, hard deletes, deletions kept until purged and ids
    /// chosen by the clients.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Listens on `port` (`0` for a free one).
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Loads from and writes to `path`.
    #[must_use]
    pub fn with_data_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_file = Some(path.into());
        self
    }

    /// Serves every route under `prefix` (`/api`, `api` and `/api/` are the
    /// same; `""` and `/` mean none).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Starts with `plan` in force.
    #[must_use]
    pub fn with_faults(mut self, plan: FaultPlan) -> Self {
        self.faults = Some(plan);
        self
    }

    /// Requires `Authorization: Bearer {token}` on requests to collections.
    #[must_use]
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Starts with `mode` for `Idempotency-Key` (see [`IdempotencyMode`]).
    #[must_use]
    pub fn with_idempotency(mut self, mode: IdempotencyMode) -> Self {
        self.idempotency = mode;
        self
    }

    /// Speaks `dialect` (see [`Dialect`]).
    #[must_use]
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Stamps `field` on every create, update, patch and soft delete (see
    /// [`Self::stamp_field`]).
    #[must_use]
    pub fn with_stamp_field(mut self, field: impl Into<String>) -> Self {
        self.stamp_field = Some(field.into());
        self
    }

    /// Deletes softly, setting `field` to `true` (see
    /// [`Self::soft_delete_field`]).
    #[must_use]
    pub fn with_soft_delete(mut self, field: impl Into<String>) -> Self {
        self.soft_delete_field = Some(field.into());
        self
    }

    /// Keeps deletions for the change feed `stamps` change stamps back
    /// (see [`Self::tombstone_retention`]).
    #[must_use]
    pub fn with_tombstone_retention(mut self, stamps: u64) -> Self {
        self.tombstone_retention = Some(stamps);
        self
    }

    /// Assigns the ids of created records on the server when `assign` is
    /// `true` (see [`Self::assigned_ids`]).
    ///
    /// ```
    /// use sync_reference_server::ServerConfig;
    ///
    /// assert!(ServerConfig::new().with_assigned_ids(true).assigned_ids);
    /// assert!(!ServerConfig::new().assigned_ids);
    /// ```
    #[must_use]
    pub fn with_assigned_ids(mut self, assign: bool) -> Self {
        self.assigned_ids = assign;
        self
    }

    /// What the store is to do beyond keeping objects; `Err` when the
    /// stamp and soft-delete fields cannot work.
    pub(crate) fn store_options(&self) -> Result<StoreOptions, Error> {
        let fields = [
            ("stamp field", &self.stamp_field),
            ("soft-delete field", &self.soft_delete_field),
        ];
        for (what, field) in fields {
            let Some(field) = field else { continue };
            if field.is_empty() || field == "id" {
                return Err(Error::InvalidField {
                    field: field.clone(),
                    reason: format!("the {what} must be named, and not \"id\""),
                });
            }
        }
        if let (Some(stamp), Some(deleted)) = (&self.stamp_field, &self.soft_delete_field)
            && stamp == deleted
        {
            return Err(Error::InvalidField {
                field: stamp.clone(),
                reason: "the stamp field and the soft-delete field must differ".to_owned(),
            });
        }
        Ok(StoreOptions {
            stamp_field: self.stamp_field.clone(),
            soft_delete_field: self.soft_delete_field.clone(),
            tombstone_retention: self.tombstone_retention,
        })
    }
}

/// The prefix in canonical form: `""` or `/seg[/seg...]`, no trailing slash.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, Error> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    // The prefix is compared with the raw request path, so it may hold only
    // characters that stand for themselves there.
    let plain = |byte: u8| byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte);
    if !trimmed.bytes().all(plain) || trimmed.split('/').any(str::is_empty) {
        return Err(Error::InvalidPrefix {
            prefix: prefix.to_owned(),
        });
    }
    Ok(format!("/{trimmed}"))
}

#[cfg(test)]
mod tests {
    use super::normalize_prefix;

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert_eq!(normalize_prefix("api").unwrap(), "/api");
        assert_eq!(normalize_prefix("/api/").unwrap(), "/api");
        assert_eq!(normalize_prefix("/api/v2").unwrap(), "/api/v2");
    }

    #[test]
    fn prefixes_that_cannot_match_a_raw_path_are_refused() {
        for prefix in ["/a b", "/a?b", "/a#b", "/a//b", "/a%2F", "/né"] {
            assert!(normalize_prefix(prefix).is_err(), "{prefix}");
        }
    }
}
