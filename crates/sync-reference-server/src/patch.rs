//! The two ways a `PATCH` changes a record: a JSON Merge Patch (RFC 7386)
//! and PostgREST's setting of the given columns.

use serde_json::{Map, Value};

/// Applies a JSON Merge Patch to `target`: `null` removes a member, an
/// object is merged into the member (replacing it first when it is not an
/// object), anything else replaces the member.
pub(crate) fn merge(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (name, value) in patch {
        match value {
            Value::Null => {
                target.remove(&name);
            }
            Value::Object(inner) => {
                let member = target.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if !member.is_object() {
                    *member = Value::Object(Map::new());
                }
                if let Value::Object(member) = member {
                    merge(member, inner);
                }
            }
            other => {
                target.insert(name, other);
            }
        }
    }
}

/// Sets each member of `columns` on `target` as it is, `null` included
/// (PostgREST's `PATCH`: an `UPDATE ... SET` of the given columns).
pub(crate) fn set_columns(target: &mut Map<String, Value>, columns: Map<String, Value>) {
    target.extend(columns);
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::{merge, set_columns};

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    fn merged(target: Value, patch: Value) -> Value {
        let mut target = object(target);
        merge(&mut target, object(patch));
        Value::Object(target)
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The examples of RFC 7386's appendix A that patch objects with
        // objects.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
            (json!({"a": 1}), json!({"a": {"b": 2}}), json!({"a": {"b": 2}})),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                merged(target.clone(), patch.clone()),
                expected,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn setting_columns_is_shallow_and_keeps_nulls() {
        let mut target = object(json!({"a": {"x": 1, "y": 2}, "b": 1, "c": 3}));
        set_columns(&mut target, object(json!({"a": {"x": 5}, "b": null})));
        assert_eq!(Value::Object(target), json!({"a": {"x": 5}, "b": null, "c": 3}));
    }
}
