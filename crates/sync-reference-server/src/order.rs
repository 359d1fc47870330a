//! How lists are ordered and filtered: a total order on record ids and on
//! JSON values, shared by the sort, the range filters and the indexes.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Number, Value};

/// A record id ordered as lists sort ids: ids made of decimal digits
/// (numbers, or strings such as `"10"`) numerically and before the
/// others, which compare as strings (byte by byte). A total order, so it
/// can key the indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IdOrd(pub(crate) Arc<str>);

impl Ord for IdOrd {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_ids(&self.0, &other.0)
    }
}

impl PartialOrd for IdOrd {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order of [`IdOrd`] on two id keys (as [`crate::store::id_key`]
/// gives them).
pub(crate) fn compare_ids(a: &str, b: &str) -> Ordering {
    match (digits(a), digits(b)) {
        // Without leading zeros, a longer run of digits is a larger
        // number; the same length compares digit by digit. `"07"` and
        // `"7"` are the same number: the text decides, so only equal
        // texts are equal.
        (Some(x), Some(y)) => x
            .len()
            .cmp(&y.len())
            .then_with(|| x.cmp(y))
            .then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The digits of a non-negative integer written in decimal, without its
/// leading zeros; `None` for anything else.
fn digits(text: &str) -> Option<&str> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(text.trim_start_matches('0'))
}

/// The order of two values of a sort field (`None`: the record has no
/// such field): missing, then `null`, booleans, numbers (numerically),
/// strings (byte by byte), arrays and objects (by their JSON text).
pub(crate) fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => compare_numbers(x, y),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x @ (Value::Array(_) | Value::Object(_))), Some(y @ (Value::Array(_) | Value::Object(_))))
            if rank(a) == rank(b) =>
        {
            x.to_string().cmp(&y.to_string())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn rank(value: Option<&Value>) -> u8 {
    match value {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(_)) => 2,
        Some(Value::Number(_)) => 3,
        Some(Value::String(_)) => 4,
        Some(Value::Array(_)) => 5,
        Some(Value::Object(_)) => 6,
    }
}

/// Numbers by value: exactly for integers, as `f64` otherwise.
pub(crate) fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    match (a.as_f64(), b.as_f64()) {
        // JSON has no NaN, so the comparison always has an answer.
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use serde_json::json;

    use super::{compare_ids, compare_values};

    #[test]
    fn digit_ids_are_numbers_and_come_first() {
        let mut ids = vec!["b", "10", "9", "a", "1a", "007", "7", "-1", ""];
        ids.sort_by(|a, b| compare_ids(a, b));
        assert_eq!(ids, ["007", "7", "9", "10", "", "-1", "1a", "a", "b"]);
        assert_eq!(compare_ids("7", "7"), Ordering::Equal);
        assert_eq!(
            compare_ids("123456789012345678901234567890", "99"),
            Ordering::Greater
        );
    }

    #[test]
    fn values_compare_by_type_then_value() {
        let a = json!(2);
        let b = json!(10.5);
        let c = json!("10");
        let d = json!("9");
        assert_eq!(compare_values(Some(&a), Some(&b)), Ordering::Less);
        assert_eq!(compare_values(Some(&c), Some(&d)), Ordering::Less);
        assert_eq!(compare_values(Some(&b), Some(&c)), Ordering::Less);
        assert_eq!(compare_values(None, Some(&json!(null))), Ordering::Less);
        assert_eq!(
            compare_values(Some(&json!(-1)), Some(&json!(u64::MAX))),
            Ordering::Less
        );
        assert_eq!(
            compare_values(Some(&json!([1])), Some(&json!({"a": 1}))),
            Ordering::Less
        );
    }
}
