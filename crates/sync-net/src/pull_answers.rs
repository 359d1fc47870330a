//! Reading the answers to pulls: a change feed's page, a filtered list's
//! rows in `(updated, id)` order, a snapshot's page. Pure functions: each
//! gives a page, or the reason the answer is unusable (it names what was
//! wrong and what the server must send, never what the answer held: rows
//! are personal data), which the adapter turns into a permanent error.

use std::cmp::Ordering;

use serde_json::Value;
use sync_core::model::json_type_name;
use sync_core::{JsonObject, PullCursor, PullPage, PulledChange, RecordId};

use crate::pull::{FilteredList, ListDialect, Paging, Snapshot};
use crate::pull_cursor::{ListCursor, compare_values, encode_position};
use crate::shape::RequestShape;

/// A change feed's page, checked against the cursor the request sent.
pub(crate) fn feed_page(body: &[u8], sent: Option<&PullCursor>) -> Result<PullPage, String> {
    const FORM: &str =
        "the change feed must answer an object {\"changes\": [...], \"cursor\": \"...\", \"more\": false}";
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return Err(format!("the answer is not JSON: {FORM}"));
    };
    let Value::Object(mut answer) = answer else {
        return Err(format!("the answer is {}: {FORM}", json_type_name(&answer)));
    };
    let changes = match answer.remove("changes") {
        Some(Value::Array(changes)) => changes,
        Some(other) => return Err(format!("\"changes\" is {}: {FORM}", json_type_name(&other))),
        None => return Err(format!("the answer has no \"changes\": {FORM}")),
    };
    let more = match answer.get("more") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(more)) => *more,
        Some(other) => {
            return Err(format!(
                "\"more\" is {}: it must be true or false (or left out, for false)",
                json_type_name(other)
            ));
        }
    };
    let cursor = match answer.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(other) => {
            return Err(format!(
                "\"cursor\" is {}: it must be a string or a number",
                json_type_name(other)
            ));
        }
    };
    let cursor = cursor
        .map(PullCursor::new)
        .transpose()
        .map_err(|error| format!("\"cursor\" is unusable: {error}"))?;
    let changes = changes
        .into_iter()
        .enumerate()
        .map(|(index, change)| {
            feed_change(change).map_err(|reason| format!("the change at index {index} {reason}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match (&cursor, sent) {
        (None, _) if more => {
            return Err(
                "\"more\" is true without a \"cursor\": the next page cannot be asked for".to_owned(),
            );
        }
        (None, _) if !changes.is_empty() => {
            return Err(
                "a page of changes has no \"cursor\": the server must send the cursor the next pull \
                 starts from (the same changes would be pulled again and again)"
                    .to_owned(),
            );
        }
        (Some(cursor), Some(sent)) if more && cursor == sent => {
            return Err(
                "\"more\" is true with the cursor the request sent: the server made no progress, and \
                 asking again would get the same page"
                    .to_owned(),
            );
        }
        (Some(cursor), Some(sent)) => {
            if let (Ok(new), Ok(old)) = (cursor.as_str().parse::<u64>(), sent.as_str().parse::<u64>())
                && new < old
            {
                return Err(format!(
                    "the cursor went backwards ({new} after {old}): a numeric cursor must never decrease"
                ));
            }
        }
        _ => {}
    }
    Ok(PullPage {
        changes,
        cursor,
        more,
        listing: false,
    })
}

/// One change of a feed; the reason completes "the change at index N".
fn feed_change(change: Value) -> Result<PulledChange, String> {
    let Value::Object(mut change) = change else {
        return Err(format!(
            "is {}: each change must be an object {{\"op\", \"id\", \"data\"}}",
            json_type_name(&change)
        ));
    };
    let id = record_id(change.get("id"), "id")?;
    match change.get("op") {
        Some(Value::String(op)) if op == "upsert" => {
            let data = match change.remove("data") {
                Some(Value::Object(data)) => data,
                Some(other) => {
                    return Err(format!(
                        "is an upsert whose \"data\" is {}: it must be the record, an object",
                        json_type_name(&other)
                    ));
                }
                None => return Err("is an upsert without \"data\": it must carry the record".to_owned()),
            };
            let version = match change.remove("version") {
                None | Some(Value::Null) => None,
                Some(Value::String(version)) => Some(version),
                Some(other) => {
                    return Err(format!(
                        "has a \"version\" that is {}: it must be a string (or left out)",
                        json_type_name(&other)
                    ));
                }
            };
            Ok(PulledChange::Upsert { id, data, version })
        }
        Some(Value::String(op)) if op == "delete" => Ok(PulledChange::Tombstone { id }),
        Some(Value::String(_)) => {
            Err("has an unknown \"op\": it must be \"upsert\" or \"delete\"".to_owned())
        }
        Some(other) => Err(format!(
            "has an \"op\" that is {}: it must be \"upsert\" or \"delete\"",
            json_type_name(other)
        )),
        None => Err("has no \"op\": it must be \"upsert\" or \"delete\"".to_owned()),
    }
}

/// A record id from a JSON value: a string as it is, an integer as its
/// decimal text. The reason never quotes the value.
fn record_id(value: Option<&Value>, field: &str) -> Result<RecordId, String> {
    let text = match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
        Some(Value::Number(_)) => {
            return Err(format!(
                "has an {field:?} that is not an integer: ids are strings or integers"
            ));
        }
        Some(other) => {
            return Err(format!(
                "has an {field:?} that is {}: ids are strings or integers",
                json_type_name(other)
            ));
        }
        None => return Err(format!("has no {field:?}: every row needs its id")),
    };
    RecordId::new(text).map_err(|error| format!("has an {field:?} that is not a valid record id: {error}"))
}

/// Whether a soft-delete field's value marks the row deleted: anything but
/// `null`, `false`, `0` and `""`.
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|number| number != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The rows of a list answer, at `items` (or the shape's answer pointer).
fn rows_in(answer: &mut Value, items: Option<&str>, shape: &RequestShape) -> Result<Vec<Value>, String> {
    let pointer = items.or(match &shape.answer {
        crate::AnswerShape::Pointer(pointer) => Some(pointer.as_str()),
        _ => None,
    });
    let found = match pointer {
        Some(pointer) if !pointer.is_empty() => match answer.pointer_mut(pointer) {
            Some(found) => found.take(),
            None => {
                return Err(format!(
                    "the answer has no value at {pointer}: the list's rows must be an array there"
                ));
            }
        },
        _ => answer.take(),
    };
    match found {
        Value::Array(rows) => Ok(rows),
        other => Err(format!(
            "the rows are {}: the list must answer an array of rows{}",
            json_type_name(&other),
            pointer
                .filter(|pointer| !pointer.is_empty())
                .map(|pointer| format!(" at {pointer}"))
                .unwrap_or_default()
        )),
    }
}

/// One row of a list: its id, and the change it makes.
fn row_change(row: Value, shape: &RequestShape, soft_delete: Option<&str>) -> Result<PulledChange, String> {
    let Value::Object(row) = row else {
        return Err(format!("is {}: rows must be objects", json_type_name(&row)));
    };
    let id = record_id(row.get(&shape.id_field), &shape.id_field)?;
    if soft_delete.and_then(|field| row.get(field)).is_some_and(is_set) {
        return Ok(PulledChange::Tombstone { id });
    }
    Ok(upsert(id, row, shape))
}

fn upsert(id: RecordId, data: JsonObject, shape: &RequestShape) -> PulledChange {
    PulledChange::Upsert {
        version: match shape.version {
            crate::VersionSource::Field(_) => shape.version_in(None, Some(&data)),
            _ => None,
        },
        id,
        data,
    }
}

/// The body of a list answer as JSON.
fn list_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body)
        .map_err(|_| "the answer is not JSON: the list must answer JSON rows".to_owned())
}

/// What a filtered list's answer gave.
#[derive(Debug, PartialEq)]
pub(crate) enum Filtered {
    /// A page.
    Page(PullPage),
    /// The anchor, the last row read, is not the first row answered: rows
    /// before it left the tie or joined it, so the tie is read again from
    /// its start.
    AnchorLost,
}

/// A filtered list's page read from `from` (the cursor sent; with an
/// anchor, the first row must be it).
pub(crate) fn filtered_page(
    body: &[u8],
    list: &FilteredList,
    shape: &RequestShape,
    from: Option<&ListCursor>,
    limit: usize,
) -> Result<Filtered, String> {
    let mut answer = list_json(body)?;
    let rows = rows_in(&mut answer, list.items.as_deref(), shape)?;
    let answered = rows.len();
    let mut rows = rows.into_iter().enumerate();
    // The tie the rows continue: its value and how many of its rows were
    // read, and the last row's id.
    let mut tie = from.map(|cursor| (cursor.t.clone(), cursor.n));
    let mut last: Option<(Value, RecordId)> = None;
    if let Some(ListCursor {
        t,
        anchor: Some(anchor),
        ..
    }) = from
    {
        let Some((_, first)) = rows.next() else {
            return Ok(Filtered::AnchorLost);
        };
        let (first_t, first_id, _) = list_row(first, list, shape, 0)?;
        if compare_values(&first_t, t) != Some(Ordering::Equal) || first_id.as_str() != anchor {
            return Ok(Filtered::AnchorLost);
        }
        last = Some((first_t, first_id));
    }
    let mut changes = Vec::new();
    for (index, row) in rows {
        let (t, id, row) = list_row(row, list, shape, index)?;
        let at = |reason: &str| format!("the row at index {index} {reason}");
        tie = match tie {
            Some((tie_t, read)) => match compare_values(&t, &tie_t) {
                Some(Ordering::Equal) => Some((tie_t, read.saturating_add(1))),
                Some(Ordering::Greater) => Some((t.clone(), 1)),
                Some(Ordering::Less) => {
                    return Err(at(&format!(
                        "goes backwards: its {:?} is before the one of the row before it (or of the \
                         cursor); the list must be sorted by it, ascending, and filtered from the cursor on",
                        list.updated_field
                    )));
                }
                None => {
                    return Err(at(&format!(
                        "has a {:?} of another type than the rows before it: it must always be a \
                         number, or always a string",
                        list.updated_field
                    )));
                }
            },
            None => Some((t.clone(), 1)),
        };
        if last.as_ref().is_some_and(|(last_t, last_id)| {
            last_id == &id && compare_values(last_t, &t) == Some(Ordering::Equal)
        }) {
            return Err(at(
                "repeats the row before it: the list must not answer a row twice",
            ));
        }
        changes.push(
            row_change(Value::Object(row), shape, list.soft_delete.as_deref())
                .map_err(|reason| at(&reason))?,
        );
        last = Some((t, id));
    }
    let cursor = match (changes.is_empty(), tie, last) {
        (false, Some((t, n)), Some((_, id))) => Some(
            ListCursor {
                t,
                anchor: Some(id.as_str().to_owned()),
                n,
            }
            .encode()?,
        ),
        // Nothing new: after a restart of the tie, the next pull starts
        // there too; otherwise the stored cursor stands.
        (true, _, _) => match from {
            Some(cursor) if cursor.anchor.is_none() => Some(cursor.encode()?),
            _ => None,
        },
        _ => None,
    };
    Ok(Filtered::Page(PullPage {
        // A full page (the anchor counted, so a server capping pages at
        // `limit` rows still gets asked for the next one); never without
        // a new row, which would ask for the same page again.
        more: !changes.is_empty() && answered >= limit.max(1),
        changes,
        cursor,
        listing: false,
    }))
}

/// A filtered list's row: its updated-at value, id and fields; the
/// reason names the row.
fn list_row(
    row: Value,
    list: &FilteredList,
    shape: &RequestShape,
    index: usize,
) -> Result<(Value, RecordId, JsonObject), String> {
    let at = |reason: String| format!("the row at index {index} {reason}");
    let Value::Object(row) = row else {
        return Err(at(format!("is {}: rows must be objects", json_type_name(&row))));
    };
    let id = record_id(row.get(&shape.id_field), &shape.id_field).map_err(at)?;
    let field = &list.updated_field;
    let t = match row.get(field) {
        Some(Value::String(_)) if list.dialect == ListDialect::JsonServer => {
            return Err(at(format!(
                "has a string {field:?}: json-server's {field}_gte filter matches numbers only, so no \
                 later change would ever be found; store integers (such as milliseconds since the \
                 epoch) or use another dialect"
            )));
        }
        Some(Value::Number(number))
            if list.dialect == ListDialect::JsonServer && !(number.is_i64() || number.is_u64()) =>
        {
            return Err(at(format!(
                "has a {field:?} that is not an integer: json-server reads the {field}_gte filter with \
                 parseInt, so the value must be an integer"
            )));
        }
        Some(t @ (Value::Number(_) | Value::String(_))) => t.clone(),
        Some(other) => {
            return Err(at(format!(
                "has a {field:?} that is {}: the updated-at value must be a number or a string",
                json_type_name(other)
            )));
        }
        None => {
            return Err(at(format!(
                "has no {field:?}: every row needs its updated-at value"
            )));
        }
    };
    Ok((t, id, row))
}

/// A snapshot's page at `position` (the offset, or the page number).
pub(crate) fn snapshot_page(
    body: &[u8],
    snapshot: &Snapshot,
    shape: &RequestShape,
    position: u64,
) -> Result<PullPage, String> {
    let mut answer = list_json(body)?;
    let next = match snapshot.next.as_deref() {
        Some(pointer) => match answer.pointer(pointer) {
            Some(Value::Null) => Some(false),
            // Django REST framework links the next page's URL, json-server
            // gives its number.
            Some(Value::String(_) | Value::Number(_)) => Some(true),
            Some(other) => {
                return Err(format!(
                    "the next-page link at {pointer} is {}: it must be a string or a number, or null on \
                     the last page",
                    json_type_name(other)
                ));
            }
            None => {
                return Err(format!(
                    "the answer has no next-page link at {pointer}: without it the end of the listing \
                     is unknown (it must be null on the last page)"
                ));
            }
        },
        None => None,
    };
    let rows = rows_in(&mut answer, snapshot.items.as_deref(), shape)?;
    let count = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    let changes = rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| {
            row_change(row, shape, snapshot.soft_delete.as_deref())
                .map_err(|reason| format!("the row at index {index} {reason}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let more = match next {
        Some(true) if changes.is_empty() => {
            return Err(
                "an empty page links to a next page: the listing cannot go on from a page that moved \
                 nowhere"
                    .to_owned(),
            );
        }
        Some(more) => more,
        // Fewer rows than asked never ends a listing: servers cap page
        // sizes, and a listing ended early removes local records.
        None => !changes.is_empty(),
    };
    let cursor = if more {
        let next = match snapshot.paging {
            Paging::Offset => position.saturating_add(count),
            Paging::PageNumber { .. } => position.saturating_add(1),
        };
        Some(encode_position(next)?)
    } else {
        None
    };
    Ok(PullPage {
        changes,
        cursor,
        more,
        listing: true,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::PullStrategy;

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn cursor(text: &str) -> PullCursor {
        PullCursor::new(text).unwrap()
    }

    #[test]
    fn feed_pages_read_every_form_of_id_and_cursor() {
        let page = feed_page(
            &body(json!({"changes": [
                {"op": "upsert", "id": 7, "data": {"a": 1}, "version": "\"3\""},
                {"op": "delete", "id": "t2"},
            ], "cursor": 1042})),
            None,
        )
        .unwrap();
        assert_eq!(page.cursor, Some(cursor("1042")));
        assert!(!page.more && !page.listing);
        assert_eq!(page.changes[0].id().as_str(), "7");
        assert_eq!(
            page.changes[1],
            PulledChange::Tombstone {
                id: "t2".parse().unwrap()
            }
        );
        let empty = feed_page(&body(json!({"changes": []})), Some(&cursor("5"))).unwrap();
        assert_eq!(empty.cursor, None);
    }

    #[test]
    fn soft_delete_values() {
        for set in [json!(true), json!("2024-01-01"), json!(1), json!(-0.5), json!({})] {
            assert!(is_set(&set), "{set}");
        }
        for unset in [json!(null), json!(false), json!(0), json!(0.0), json!("")] {
            assert!(!is_set(&unset), "{unset}");
        }
    }

    #[test]
    fn a_lost_anchor_is_told_apart_from_a_bad_row() {
        let list = match PullStrategy::filtered_list("at").into() {
            PullStrategy::FilteredList(list) => list,
            _ => unreachable!(),
        };
        let shape = RequestShape::rest();
        let from = ListCursor {
            t: json!(5),
            anchor: Some("b".to_owned()),
            n: 2,
        };
        let answer = |rows: Value| filtered_page(&body(rows), &list, &shape, Some(&from), 10);
        assert_eq!(answer(json!([])), Ok(Filtered::AnchorLost));
        assert_eq!(answer(json!([{"id": "c", "at": 5}])), Ok(Filtered::AnchorLost));
        assert_eq!(answer(json!([{"id": "b", "at": 6}])), Ok(Filtered::AnchorLost));
        assert!(
            answer(json!([{"id": "b"}]))
                .unwrap_err()
                .contains("has no \"at\"")
        );
        let Ok(Filtered::Page(page)) = answer(json!([{"id": "b", "at": 5}, {"id": "a", "at": 5}])) else {
            panic!("a page")
        };
        assert_eq!(page.changes.len(), 1);
        let next = ListCursor::decode(page.cursor.as_ref().unwrap()).unwrap();
        assert_eq!(
            next,
            ListCursor {
                t: json!(5),
                anchor: Some("a".to_owned()),
                n: 3
            }
        );
    }
}
