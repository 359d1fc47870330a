//! The change feed: `GET /{collection}/changes?limit={n}[&since={cursor}]`.
//!
//! Every write to a collection takes the next value of the collection's
//! change sequence, under the lock that applies it (a held write when it
//! finally applies), so stamps are in commit order and a page never
//! skips a change committed late. The feed lists, in stamp order, the
//! latest change of each record changed after `since`:
//!
//! ```json
//! {"changes": [
//!    {"op": "upsert", "id": "t1", "data": {"id": "t1", "title": "x"}, "version": "\"3\""},
//!    {"op": "delete", "id": "t2"}],
//!  "cursor": "1042", "more": false}
//! ```
//!
//! `data` is the record as `GET /{collection}/{id}` answers it, `version`
//! its `ETag`; a soft-deleted record is a `delete`. `cursor` is the stamp
//! of the page's last change (the collection's last stamp for an empty
//! page), `more` whether changes follow it. Without `since`: everything
//! (live records, and the deletions still kept). A `since` below the
//! latest deletion forgotten (or above the last stamp: a cursor of
//! another run) is `410` with `{"error": "cursor expired"}`; one that is
//! not a cursor this server issued, or a `limit` that is not a positive
//! one, `400`. `limit` defaults to 100 and is lowered to 1000.
//!
//! A load from scratch (no `since`) pages through stamps that may lie
//! below the latest deletion forgotten: those pages carry a *load cursor*,
//! `{stamp}.{horizon}`, the horizon being the latest deletion forgotten
//! when the load began. It stays valid while no other deletion is
//! forgotten (the client lists everything, so deletions forgotten before
//! its load do not concern it); after a purge it is `410` like any other.
//! The load's last page carries a plain stamp.

use std::io::Write;

use serde_json::Value;

use crate::collection::Slot;
use crate::conditional::etag;
use crate::route::percent_decode;
use crate::store::Collections;

/// The page size without `limit`.
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// The largest page served: a larger `limit` is lowered to it.
pub(crate) const MAX_LIMIT: usize = 1000;

/// A feed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeedQuery {
    /// The cursor: changes with a larger stamp are listed. `None`: all.
    since: Option<u64>,
    /// For a load cursor, the horizon its load began at.
    load_horizon: Option<u64>,
    /// How many changes at most.
    limit: usize,
}

/// Why a feed request gets no page.
#[derive(Debug)]
pub(crate) enum FeedRefusal {
    /// The cursor is older than a deletion forgotten, or was never issued
    /// by this run: the client must load everything again.
    Expired,
    /// The page could not be written out.
    Serialize(serde_json::Error),
}

impl From<serde_json::Error> for FeedRefusal {
    fn from(error: serde_json::Error) -> Self {
        Self::Serialize(error)
    }
}

impl From<std::io::Error> for FeedRefusal {
    fn from(error: std::io::Error) -> Self {
        Self::Serialize(serde_json::Error::io(error))
    }
}

/// The feed's parameters; `Err` says what is wrong. Other parameters are
/// ignored.
pub(crate) fn parse(query: Option<&str>) -> Result<FeedQuery, String> {
    let mut since = None;
    let mut load_horizon = None;
    let mut limit = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(key), Some(value)) = (percent_decode(key, true), percent_decode(value, true)) else {
            return Err("the query is not valid percent-encoded UTF-8".to_owned());
        };
        let (slot, value) = match key.as_str() {
            "since" => match value.split_once('.') {
                Some((stamp, horizon)) => {
                    let horizon = whole_number(horizon).ok_or_else(|| {
                        format!("since={value} is not a cursor this server issued (a load cursor's horizon is a whole number)")
                    })?;
                    if load_horizon.replace(horizon).is_some() {
                        return Err("since is given twice".to_owned());
                    }
                    (&mut since, stamp.to_owned())
                }
                None => (&mut since, value),
            },
            "limit" => (&mut limit, value),
            _ => continue,
        };
        let number = whole_number(&value).ok_or_else(|| match key.as_str() {
            "since" => {
                format!("since={value} is not a cursor this server issued (a non-negative integer)")
            }
            _ => format!("limit={value} is not a positive whole number"),
        })?;
        if slot.replace(number).is_some() {
            return Err(format!("{key} is given twice"));
        }
    }
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(0) => return Err("limit=0: a page holds at least one change".to_owned()),
        Some(limit) => usize::try_from(limit).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
    };
    Ok(FeedQuery {
        since,
        load_horizon,
        limit,
    })
}

/// `text` as a non-negative integer written in decimal digits only (no
/// sign, no point, no exponent), `None` otherwise or past `u64::MAX`.
fn whole_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The `through` parameter of a purge: the last change stamp whose
/// deletion is forgotten (`None`: all).
pub(crate) fn parse_through(query: Option<&str>) -> Result<Option<u64>, String> {
    let mut through = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "through" {
            continue;
        }
        let stamp = whole_number(value)
            .ok_or_else(|| format!("through={value} is not a change stamp (a non-negative integer)"))?;
        if through.replace(stamp).is_some() {
            return Err("through is given twice".to_owned());
        }
    }
    Ok(through)
}

/// The page of `collection`'s feed the query asks for, as JSON text.
pub(crate) fn page(
    collections: &Collections,
    collection: &str,
    query: FeedQuery,
) -> Result<Vec<u8>, FeedRefusal> {
    let (oldest, last) = collections.feed_bounds(collection);
    if let Some(since) = query.since {
        // A load cursor stays valid while nothing more was forgotten.
        let forgotten_since = match query.load_horizon {
            Some(horizon) => horizon != oldest,
            None => since < oldest,
        };
        if forgotten_since || since > last {
            return Err(FeedRefusal::Expired);
        }
    }
    let loading = query.since.is_none() || query.load_horizon.is_some();
    let mut out = Vec::with_capacity(64 + query.limit * 128);
    out.extend_from_slice(b"{\"changes\":[");
    let mut cursor = last;
    let mut more = false;
    if let Some(stored) = collections.collection(collection) {
        let mut changes = stored.changes_after(query.since.unwrap_or(0));
        for (index, (change, slot)) in changes.by_ref().take(query.limit).enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_change(&mut out, slot)?;
            cursor = change;
        }
        more = changes.next().is_some();
    }
    if loading && more {
        write!(out, "],\"cursor\":\"{cursor}.{oldest}\",\"more\":{more}}}")?;
    } else {
        write!(out, "],\"cursor\":\"{cursor}\",\"more\":{more}}}")?;
    }
    Ok(out)
}

fn write_change(out: &mut Vec<u8>, slot: &Slot) -> Result<(), FeedRefusal> {
    match slot {
        Slot::Row(row) if !row.deleted => {
            out.extend_from_slice(b"{\"op\":\"upsert\",\"id\":");
            serde_json::to_writer(&mut *out, row.object.get("id").unwrap_or(&Value::Null))?;
            out.extend_from_slice(b",\"data\":");
            serde_json::to_writer(&mut *out, &row.object)?;
            out.extend_from_slice(b",\"version\":");
            serde_json::to_writer(&mut *out, &etag(row.version))?;
        }
        Slot::Row(row) => {
            out.extend_from_slice(b"{\"op\":\"delete\",\"id\":");
            serde_json::to_writer(&mut *out, row.object.get("id").unwrap_or(&Value::Null))?;
        }
        Slot::Tombstone(tombstone) => {
            out.extend_from_slice(b"{\"op\":\"delete\",\"id\":");
            serde_json::to_writer(&mut *out, &tombstone.id)?;
        }
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_LIMIT, FeedQuery, MAX_LIMIT, parse};

    #[test]
    fn parameters_are_read_and_checked() {
        assert_eq!(
            parse(None),
            Ok(FeedQuery {
                since: None,
                load_horizon: None,
                limit: DEFAULT_LIMIT
            })
        );
        assert_eq!(
            parse(Some("since=42&limit=5&x=y")),
            Ok(FeedQuery {
                since: Some(42),
                load_horizon: None,
                limit: 5
            })
        );
        // A load cursor: the stamp and the horizon its load began at.
        assert_eq!(
            parse(Some("since=7.32")),
            Ok(FeedQuery {
                since: Some(7),
                load_horizon: Some(32),
                limit: DEFAULT_LIMIT
            })
        );
        assert_eq!(parse(Some("limit=100000")).unwrap().limit, MAX_LIMIT);
        for bad in [
            "since=",
            "since=-1",
            "since=+1",
            "since=1.5.5",
            "since=1.x",
            "since=.5",
            "since=abc",
            "since=99999999999999999999999",
            "since=1&since=2",
            "limit=0",
            "limit=ten",
            "since=%",
        ] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
