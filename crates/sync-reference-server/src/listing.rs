//! Lists with lookups, range filters, a sort, an offset and a limit:
//! json-server's query parameters in the REST dialect, PostgREST's in the
//! other.
//!
//! | | REST | PostgREST |
//! |---|---|---|
//! | lookup | `{field}=X` | `{field}=eq.X` (not `id`, which addresses a row) |
//! | range filter | `{field}_gte=X`, `_gt`, `_lte`, `_lt` | `{field}=gte.X`, `gt.`, `lte.`, `lt.` |
//! | sort | `_sort=a,-b` (`-`: descending) | `order=a.asc,b.desc` (`a`: ascending) |
//! | offset | `_start=k` | `offset=k` |
//! | limit | `_limit=n` | `limit=n` |
//!
//! A filter keeps the records whose field compares with `X` as asked:
//! numbers numerically (`X` read as a JSON number), strings byte by byte,
//! ids as [`IdOrd`](crate::order::IdOrd) orders them; a record without the
//! field, or with another type, is left out. A lookup keeps the records
//! whose field is the string `X`, a number whose decimal text is `X`, or
//! the boolean `X` (`true`, `false`). Several filters all apply. In the
//! REST dialect every parameter that is none of the others is a lookup,
//! but `id` (which addresses a record) and names starting with `_`
//! (json-server's own, such as `_page`), which are ignored.
//! A sort compares fields as [`compare_values`] does (ids as ids); records
//! equal on every key stay in insertion order, as without a sort.
//!
//! Three shapes are served from indexes, so a page costs about its length
//! rather than a pass over the collection: no sort (insertion order) and
//! `id` alone, whose offsets are ranks in a [`RankedSet`] when there is
//! no filter; and the stamp field then `id` (both ascending, once every
//! record holds an integer stamp), whose range filters bound the walk
//! (a client's offset there is the few records of a tie). Any other sort
//! reads and sorts the whole collection.
//!
//! [`RankedSet`]: crate::ranked::RankedSet

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::collection::Collection;
use crate::order::{compare_ids, compare_numbers, compare_values};
use crate::route::percent_decode;
use crate::store::Collections;

/// A list request: which records, in which order, which part.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ListQuery {
    filters: Vec<Filter>,
    sort: Vec<SortKey>,
    start: usize,
    limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    field: String,
    op: Op,
    text: String,
    /// `text` as a JSON number, when it is one.
    number: Option<Number>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A lookup: the field's value, as text, is the filter's.
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SortKey {
    field: String,
    descending: bool,
}

impl Op {
    /// The range operators by their REST suffix and PostgREST name,
    /// longest suffix first.
    const RANGES: [(Self, &'static str, &'static str); 4] = [
        (Self::Gte, "_gte", "gte"),
        (Self::Lte, "_lte", "lte"),
        (Self::Gt, "_gt", "gt"),
        (Self::Lt, "_lt", "lt"),
    ];

    fn holds(self, order: Ordering) -> bool {
        match self {
            Self::Eq => order == Ordering::Equal,
            Self::Gt => order == Ordering::Greater,
            Self::Gte => order != Ordering::Less,
            Self::Lt => order == Ordering::Less,
            Self::Lte => order != Ordering::Greater,
        }
    }

    /// The PostgREST operator `value` starts with (`eq.`, `gte.`), and
    /// the rest.
    fn postgrest(value: &str) -> Option<(Self, &str)> {
        if let Some(rest) = value.strip_prefix("eq.") {
            return Some((Self::Eq, rest));
        }
        Self::RANGES.iter().find_map(|(op, _, name)| {
            value
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|rest| (*op, rest))
        })
    }
}

impl Filter {
    fn new(field: &str, op: Op, text: &str) -> Result<Self, String> {
        if field.is_empty() {
            return Err("a filter needs a field name".to_owned());
        }
        let number = match serde_json::from_str::<Value>(text) {
            Ok(Value::Number(number)) => Some(number),
            _ => None,
        };
        Ok(Self {
            field: field.to_owned(),
            op,
            text: text.to_owned(),
            number,
        })
    }

    fn accepts(&self, object: &Map<String, Value>) -> bool {
        let Some(value) = object.get(&self.field) else {
            return false;
        };
        if self.op == Op::Eq {
            return match value {
                Value::String(stored) => *stored == self.text,
                Value::Number(stored) => stored.to_string() == self.text,
                Value::Bool(stored) => stored.to_string() == self.text,
                _ => false,
            };
        }
        let order = if self.field == "id" {
            match id_text(value) {
                Some(id) => compare_ids(&id, &self.text),
                None => return false,
            }
        } else {
            match (value, &self.number) {
                (Value::Number(stored), Some(number)) => compare_numbers(stored, number),
                (Value::String(stored), _) => stored.as_str().cmp(self.text.as_str()),
                _ => return false,
            }
        };
        self.op.holds(order)
    }
}

/// An id value as its key text (strings as they are, numbers in decimal).
fn id_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(text) => Some(Cow::Borrowed(text)),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        _ => None,
    }
}

/// The query's parameters, decoded as form values.
fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let undecodable = || "the query is not valid percent-encoded UTF-8".to_owned();
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((
                percent_decode(key, true).ok_or_else(undecodable)?,
                percent_decode(value, true).ok_or_else(undecodable)?,
            ))
        })
        .collect()
}

fn count(name: &str, value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| format!("{name}={value} is not a whole number of records"))
}

/// A list query in json-server's parameters: every parameter that is none
/// of them is a lookup (`{field}=X`), but `id` (which addresses a record)
/// and the names starting with `_` (json-server's own, such as `_page`),
/// which are left alone, as before.
pub(crate) fn parse_rest(query: Option<&str>) -> Result<ListQuery, String> {
    let mut list = ListQuery::default();
    for (key, value) in pairs(query)? {
        match key.as_str() {
            "_sort" => {
                list.sort = value
                    .split(',')
                    .map(|field| match field.strip_prefix('-') {
                        Some(field) => sort_key(field, true),
                        None => sort_key(field, false),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "_start" => list.start = count(&key, &value)?,
            "_limit" => list.limit = Some(count(&key, &value)?),
            _ => {
                let range = Op::RANGES
                    .iter()
                    .find_map(|(op, suffix, _)| key.strip_suffix(suffix).map(|field| (*op, field)));
                match range {
                    Some((op, field)) => list.filters.push(Filter::new(field, op, &value)?),
                    None if key.is_empty() || key.starts_with('_') || key == "id" => {}
                    None => list.filters.push(Filter::new(&key, Op::Eq, &value)?),
                }
            }
        }
    }
    Ok(list)
}

fn sort_key(field: &str, descending: bool) -> Result<SortKey, String> {
    if field.is_empty() {
        return Err("a sort needs field names, such as updated_at,id".to_owned());
    }
    Ok(SortKey {
        field: field.to_owned(),
        descending,
    })
}

/// Whether a PostgREST query parameter belongs to a list (a lookup on
/// another column than `id`, a range filter, `order`, `offset`,
/// `limit`), which the router lets through.
pub(crate) fn is_postgrest_list_param(key: &str, value: &str) -> bool {
    matches!(key, "order" | "offset" | "limit")
        || match Op::postgrest(value) {
            // `id=eq.{id}` addresses a row.
            Some((Op::Eq, _)) => key != "id",
            Some(_) => true,
            None => false,
        }
}

/// A list query in PostgREST's parameters. The caller has taken `id=eq.`
/// and `select=*` out (the router refuses anything else).
pub(crate) fn parse_postgrest(query: Option<&str>) -> Result<ListQuery, String> {
    let mut list = ListQuery::default();
    for (key, value) in pairs(query)? {
        match key.as_str() {
            "select" => {}
            "id" if value.starts_with("eq.") => {}
            "order" => {
                list.sort = value
                    .split(',')
                    .map(|term| match term.rsplit_once('.') {
                        Some((field, "asc")) => sort_key(field, false),
                        Some((field, "desc")) => sort_key(field, true),
                        _ if !term.contains('.') => sort_key(term, false),
                        _ => Err(format!(
                            "order={value}: each term is a column, column.asc or column.desc"
                        )),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "offset" => list.start = count(&key, &value)?,
            "limit" => list.limit = Some(count(&key, &value)?),
            _ => match Op::postgrest(&value) {
                Some((op, text)) => list.filters.push(Filter::new(&key, op, text)?),
                None => return Err(format!("the query parameter {key:?} is not supported")),
            },
        }
    }
    Ok(list)
}

impl ListQuery {
    /// Whether the query asks for anything beyond the whole list.
    pub(crate) fn is_plain(&self) -> bool {
        *self == Self::default()
    }
}

/// The records of `collection` the query selects, in its order.
pub(crate) fn run<'a>(
    collections: &'a Collections,
    collection: &str,
    query: &ListQuery,
) -> Vec<&'a Map<String, Value>> {
    let Some(stored) = collections.collection(collection) else {
        return Vec::new();
    };
    let stamp_field = collections.options().stamp_field.as_deref();
    let plain = query.filters.is_empty();
    match query.sort.as_slice() {
        // Without filters, the offset is a rank in the index.
        [] if plain => page(stored, stored.ids_in_order_from(query.start), query, 0),
        [] => filtered(stored, stored.ids_in_order(), query),
        [key] if key.field == "id" && plain => page(
            stored,
            stored.ids_by_id_from(query.start, key.descending),
            query,
            0,
        ),
        [key] if key.field == "id" => filtered(stored, stored.ids_by_id_from(0, key.descending), query),
        [stamp, id]
            if Some(stamp.field.as_str()) == stamp_field
                && !stamp.descending
                && id.field == "id"
                && !id.descending =>
        {
            let (from, to, exact) = stamp_bounds(&query.filters, &stamp.field);
            match stored.ids_by_stamp(from, to) {
                Some(ids) if exact => page(stored, ids, query, query.start),
                Some(ids) => filtered(stored, ids, query),
                None => sorted(stored, query),
            }
        }
        _ => sorted(stored, query),
    }
}

/// The rows of `ids` after the first `skip`, up to the limit: every id
/// is one the query keeps.
fn page<'a>(
    stored: &'a Collection,
    ids: impl Iterator<Item = &'a str>,
    query: &ListQuery,
    skip: usize,
) -> Vec<&'a Map<String, Value>> {
    ids.skip(skip)
        .filter_map(|id| stored.row(id))
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|row| &row.object)
        .collect()
}

/// The rows of `ids` the filters keep, offset and limit applied, in the
/// order given.
fn filtered<'a>(
    stored: &'a Collection,
    ids: impl Iterator<Item = &'a str>,
    query: &ListQuery,
) -> Vec<&'a Map<String, Value>> {
    ids.filter_map(|id| stored.row(id))
        .map(|row| &row.object)
        .filter(|object| query.filters.iter().all(|filter| filter.accepts(object)))
        .skip(query.start)
        .take(query.limit.unwrap_or(usize::MAX))
        .collect()
}

/// The filtered rows, sorted by the query's keys (stably, from insertion
/// order), offset and limit applied.
fn sorted<'a>(stored: &'a Collection, query: &ListQuery) -> Vec<&'a Map<String, Value>> {
    let mut all: Vec<&Map<String, Value>> = stored
        .rows_in_order()
        .map(|row| &row.object)
        .filter(|object| query.filters.iter().all(|filter| filter.accepts(object)))
        .collect();
    all.sort_by(|a, b| compare_objects(a, b, &query.sort));
    all.into_iter()
        .skip(query.start)
        .take(query.limit.unwrap_or(usize::MAX))
        .collect()
}

fn compare_objects(a: &Map<String, Value>, b: &Map<String, Value>, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let (x, y) = (a.get(&key.field), b.get(&key.field));
        let order = match (key.field.as_str(), x.and_then(id_text), y.and_then(id_text)) {
            ("id", Some(x), Some(y)) => compare_ids(&x, &y),
            _ => compare_values(x, y),
        };
        let order = if key.descending { order.reverse() } else { order };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// The range of stamp values the filters on `field` allow, as far as
/// integer bounds say, and whether that range is exactly what the filters
/// keep (every filter an integer bound on `field`); otherwise the filters
/// are applied to each row of the range.
fn stamp_bounds(filters: &[Filter], field: &str) -> (u64, u64, bool) {
    let (mut from, mut to) = (0, u64::MAX);
    let mut exact = true;
    for filter in filters {
        let bound = filter.number.as_ref().and_then(Number::as_u64);
        let Some(bound) = bound.filter(|_| filter.field == field) else {
            exact = false;
            continue;
        };
        match filter.op {
            Op::Eq => {
                from = from.max(bound);
                to = to.min(bound);
                // A lookup compares text: `05` is no bound of 5.
                exact = exact && bound.to_string() == filter.text;
            }
            Op::Gte => from = from.max(bound),
            // Past the largest value: nothing (an empty range).
            Op::Gt => match bound.checked_add(1) {
                Some(next) => from = from.max(next),
                None => return (1, 0, true),
            },
            Op::Lte => to = to.min(bound),
            Op::Lt => match bound.checked_sub(1) {
                Some(previous) => to = to.min(previous),
                None => return (1, 0, true),
            },
        }
    }
    (from, to, exact)
}

#[cfg(test)]
mod tests {
    use super::{Op, parse_postgrest, parse_rest, stamp_bounds};

    #[test]
    fn rest_parameters_are_read() {
        let query = parse_rest(Some(
            "updated_at_gte=5&_sort=updated_at,-id&_start=2&_limit=10&x=1&id=3",
        ))
        .unwrap();
        assert_eq!(query.filters.len(), 2);
        assert_eq!(query.filters[0].op, Op::Gte);
        assert_eq!(query.filters[0].field, "updated_at");
        // `x=1` is a lookup; `id` addresses a record, `_`-names are json-server's.
        assert_eq!(query.filters[1].op, Op::Eq);
        assert_eq!(
            (query.filters[1].field.as_str(), query.filters[1].text.as_str()),
            ("x", "1")
        );
        assert!(
            parse_rest(Some("_page=2&_per_page=5&_embed=x&=3"))
                .unwrap()
                .is_plain()
        );
        assert_eq!(query.sort.len(), 2);
        assert!(query.sort[1].descending);
        assert_eq!((query.start, query.limit), (2, Some(10)));
        assert!(parse_rest(Some("x_lte=a&y_lt=b&z_gt=c")).unwrap().filters.len() == 3);
        assert!(parse_rest(None).unwrap().is_plain());
        for bad in ["_start=-1", "_limit=x", "_sort=", "_sort=a,,b", "_gte=3"] {
            assert!(parse_rest(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn postgrest_parameters_are_read() {
        let query = parse_postgrest(Some(
            "select=*&updated_at=gte.5&order=updated_at.asc,id&offset=3&limit=7",
        ))
        .unwrap();
        assert_eq!(query.filters[0].op, Op::Gte);
        assert_eq!(query.filters[0].text, "5");
        assert_eq!(query.sort.len(), 2);
        assert_eq!((query.start, query.limit), (3, Some(7)));
        assert!(parse_postgrest(Some("order=a.desc")).unwrap().sort[0].descending);
        let lookup = parse_postgrest(Some("client_ref=eq.r1&id=eq.7")).unwrap();
        assert_eq!(lookup.filters.len(), 1, "id=eq. is the router's");
        assert_eq!(lookup.filters[0].op, Op::Eq);
        assert_eq!(lookup.filters[0].text, "r1");
        for bad in ["order=a.up", "title=like.x", "limit=-1"] {
            assert!(parse_postgrest(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn integer_bounds_narrow_the_stamp_range() {
        let query = parse_rest(Some("t_gt=5&t_lte=9&t_gte=2&u_lt=1&t_lt=x")).unwrap();
        assert_eq!(stamp_bounds(&query.filters, "t"), (6, 9, false));
        let query = parse_rest(Some("t_gt=5&t_lte=9")).unwrap();
        assert_eq!(stamp_bounds(&query.filters, "t"), (6, 9, true));
        let query = parse_rest(Some("t_lt=0")).unwrap();
        let (from, to, exact) = stamp_bounds(&query.filters, "t");
        assert!(from > to && exact);
        let query = parse_rest(Some("t_gte=-3&t_lt=2.5")).unwrap();
        assert_eq!(stamp_bounds(&query.filters, "t"), (0, u64::MAX, false));
        let query = parse_rest(Some("t=7")).unwrap();
        assert_eq!(stamp_bounds(&query.filters, "t"), (7, 7, true));
        let query = parse_rest(Some("t_gte=2&t=7.0")).unwrap();
        assert_eq!(stamp_bounds(&query.filters, "t"), (2, u64::MAX, false));
    }
}
