//! The cursors the adapter makes for the list strategies (the change
//! feed's is the server's own): a filtered list's position in
//! `(updated, id)` order, and a snapshot's offset or page number. Both are
//! opaque to the engine; a cursor a strategy cannot read (the entity's
//! strategy changed) makes the adapter answer
//! [`PullAnswer::CursorExpired`](sync_core::PullAnswer::CursorExpired), so
//! the entity is loaded again from scratch.

use std::cmp::Ordering;

use serde_json::{Number, Value};
use sync_core::{JsonObject, PullCursor};

/// Where a filtered list stands: the last row's updated-at value and id,
/// and how many rows with that value were read, as
/// `{"id":"<last id>","n":<rows>,"t":<value>}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListCursor {
    /// The last row's updated-at value: a number or a string.
    pub(crate) t: Value,
    /// The last row's id (the anchor the next pull checks); `None` when
    /// the rows with value `t` are to be read again from their start
    /// (`n` is then 0).
    pub(crate) anchor: Option<String>,
    /// How many rows with value `t` were read, the anchor included.
    pub(crate) n: u64,
}

impl ListCursor {
    /// The cursor's text.
    ///
    /// # Errors
    /// The reason, when it does not make a valid [`PullCursor`] (a value or
    /// id too long for one).
    pub(crate) fn encode(&self) -> Result<PullCursor, String> {
        let mut object = JsonObject::new();
        object.insert("t".to_owned(), self.t.clone());
        if let Some(anchor) = &self.anchor {
            object.insert("id".to_owned(), Value::String(anchor.clone()));
        }
        object.insert("n".to_owned(), Value::from(self.n));
        let text = Value::Object(object).to_string();
        PullCursor::new(text).map_err(|error| {
            format!("the position of its last row cannot be kept as a cursor ({error}); its updated-at value or id is too long")
        })
    }

    /// The position a cursor made by [`Self::encode`] holds; `None` for a
    /// cursor it did not make.
    pub(crate) fn decode(cursor: &PullCursor) -> Option<Self> {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(cursor.as_str()) else {
            return None;
        };
        if object.keys().any(|key| !matches!(key.as_str(), "t" | "id" | "n")) {
            return None;
        }
        let t = object
            .get("t")
            .filter(|t| t.is_number() || t.is_string())?
            .clone();
        let n = object.get("n")?.as_u64()?;
        let anchor = match object.get("id") {
            Some(Value::String(id)) if n > 0 => Some(id.clone()),
            None if n == 0 => None,
            _ => return None,
        };
        Some(Self { t, anchor, n })
    }
}

/// A snapshot's next offset or page number; `None` for a cursor that is not
/// one (or a page number 0, when pages count from 1).
pub(crate) fn decode_position(cursor: &PullCursor, from: u64) -> Option<u64> {
    let text = cursor.as_str();
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|position| *position >= from)
}

/// A snapshot's position as a cursor.
pub(crate) fn encode_position(position: u64) -> Result<PullCursor, String> {
    PullCursor::new(position.to_string()).map_err(|error| error.to_string())
}

/// How two updated-at values compare: numbers as numbers, strings as text
/// (byte order); `None` for a number and a string.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        _ => None,
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let exact = |number: &Number| {
        number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from))
    };
    match (exact(a), exact(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// An updated-at value as it goes into a query string (before
/// percent-encoding): a number's JSON text, a string as it is.
pub(crate) fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn list_cursors_round_trip() {
        for cursor in [
            ListCursor {
                t: json!(1_700_000_000_123_u64),
                anchor: Some("t-1".to_owned()),
                n: 3,
            },
            ListCursor {
                t: json!("2024-05-01T10:00:00.250Z"),
                anchor: Some("a \"quoted\" id/with?chars".to_owned()),
                n: 1,
            },
            ListCursor {
                t: json!(-4.5),
                anchor: None,
                n: 0,
            },
        ] {
            let encoded = cursor.encode().unwrap();
            assert_eq!(ListCursor::decode(&encoded), Some(cursor));
        }
        let encoded = ListCursor {
            t: json!(5),
            anchor: Some("x".to_owned()),
            n: 2,
        }
        .encode()
        .unwrap();
        assert_eq!(encoded.as_str(), r#"{"id":"x","n":2,"t":5}"#);
    }

    #[test]
    fn cursors_of_another_strategy_are_not_read() {
        for text in [
            "1042",
            "abc",
            "{}",
            r#"{"t":1,"n":1}"#,
            r#"{"t":1,"id":"x","n":0}"#,
            r#"{"t":true,"id":"x","n":1}"#,
            r#"{"t":1,"id":"x","n":-1}"#,
            r#"{"t":1,"id":"x","n":1,"extra":1}"#,
            r#"[1,"x",1]"#,
        ] {
            let cursor = PullCursor::new(text).unwrap();
            assert_eq!(ListCursor::decode(&cursor), None, "{text}");
        }
        let long = ListCursor {
            t: Value::String("x".repeat(5000)),
            anchor: Some("a".to_owned()),
            n: 1,
        };
        assert!(long.encode().unwrap_err().contains("too long"));
    }

    #[test]
    fn positions_round_trip() {
        for position in [0, 1, 7, 1_000_000] {
            let cursor = encode_position(position).unwrap();
            assert_eq!(decode_position(&cursor, 0), Some(position));
        }
        let zero = encode_position(0).unwrap();
        assert_eq!(decode_position(&zero, 1), None, "pages count from 1");
        for text in [
            "-1",
            "+3",
            "1.5",
            "x",
            r#"{"t":1,"n":0}"#,
            "99999999999999999999999",
        ] {
            assert_eq!(
                decode_position(&PullCursor::new(text).unwrap(), 0),
                None,
                "{text}"
            );
        }
    }

    #[test]
    fn values_compare_as_numbers_or_text() {
        assert_eq!(compare_values(&json!(9), &json!(10)), Some(Ordering::Less));
        assert_eq!(compare_values(&json!(10), &json!(10.0)), Some(Ordering::Equal));
        assert_eq!(
            compare_values(&json!(u64::MAX), &json!(i64::MIN)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_values(&json!("2024-01-02"), &json!("2024-01-10")),
            Some(Ordering::Less)
        );
        assert_eq!(compare_values(&json!("9"), &json!(9)), None);
        assert_eq!(value_text(&json!("a b")), "a b");
        assert_eq!(value_text(&json!(17)), "17");
    }
}
