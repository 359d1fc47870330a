use serde_json::json;

use super::*;

fn entity(name: &str) -> EntityName {
    EntityName::new(name).unwrap()
}

#[test]
fn the_default_route_encodes_the_field_and_the_temporary_id_as_query_parts() {
    let template = default_route(&RequestShape::rest(), "client ref&x=1");
    assert_eq!(template, "/{entity}?client%20ref%26x%3D1={local_id}");
    assert_eq!(check_lookup_template(&template), Ok(()));
    assert_eq!(
        render(&template, &entity("my tasks"), Some("tmp-a b")),
        "/my%20tasks?client%20ref%26x%3D1=tmp-a%20b"
    );
    assert_eq!(
        render(&template, &entity("my tasks"), None),
        "/my%20tasks?client%20ref%26x%3D1={local_id}"
    );
    // A field name with braces cannot make a placeholder.
    assert_eq!(
        default_route(&RequestShape::rest(), "{local_id}"),
        "/{entity}?%7Blocal_id%7D={local_id}"
    );
    // The collection is the create route's.
    assert_eq!(
        default_route(&RequestShape::django_rest_framework(), "ref"),
        "/{entity}/?ref={local_id}"
    );
    assert_eq!(
        default_route(
            &RequestShape::rest().route(RequestKind::Create, "/{entity}?v=2"),
            "ref"
        ),
        "/{entity}?v=2&ref={local_id}"
    );
    assert_eq!(
        default_route(&RequestShape::rest().route_fn(|_, _, _| "/x".to_owned()), "ref"),
        "/{entity}?ref={local_id}"
    );
}

#[test]
fn a_temporary_id_in_the_path_is_encoded_as_a_segment_and_hidden_from_the_line() {
    let shape = RequestShape::rest()
        .local_id_field("ref")
        .lookup_route("/{entity}/by-ref/{local_id}?x={entity}");
    let temporary = RecordId::temporary();
    let target = lookup_target(&shape, "ref", &entity("a/b"), &temporary).unwrap();
    assert_eq!(
        target.path,
        format!("/a%2Fb/by-ref/{}?x=a%2Fb", temporary.as_str())
    );
    assert_eq!(target.line, "GET /a%2Fb/by-ref/{local_id}");
    assert!(lookup_target(&shape, "ref", &entity(".."), &temporary).is_err());
}

#[test]
fn lookup_settings_are_checked() {
    let cases = [
        (
            RequestShape::rest().local_id_field(""),
            "local-id field name is empty",
        ),
        (RequestShape::rest().local_id_field("id"), "is the id field"),
        (
            RequestShape::rest().lookup_route("/{entity}?ref={local_id}"),
            "need a local-id field",
        ),
        (
            RequestShape::rest().lookup_results("/results"),
            "need a local-id field",
        ),
        (
            RequestShape::rest()
                .local_id_field("ref")
                .lookup_route("{entity}?ref={local_id}"),
            "must start with '/'",
        ),
        (
            RequestShape::rest()
                .local_id_field("ref")
                .lookup_route("/{entity}?ref={id}"),
            "unknown placeholder {id}",
        ),
        (
            RequestShape::rest()
                .local_id_field("ref")
                .lookup_route("/{entity}?ref={local_id"),
            "unclosed",
        ),
        (
            RequestShape::rest()
                .local_id_field("ref")
                .lookup_route("/{entity}"),
            "must hold {local_id}",
        ),
        (
            RequestShape::rest()
                .local_id_field("ref")
                .lookup_results("results"),
            "must start with '/'",
        ),
        (
            RequestShape::rest()
                .local_id_field("ref")
                .route(RequestKind::Create, "/{entity}/{id}"),
            "needs a collection route",
        ),
    ];
    for (shape, reason) in cases {
        let error = shape.check().unwrap_err();
        assert!(error.contains(reason), "{reason}: {error}");
    }
    for shape in [
        RequestShape::json_server().local_id_field("client_ref"),
        RequestShape::django_rest_framework()
            .local_id_field("client_ref")
            .lookup_results("/results"),
        RequestShape::postgrest()
            .local_id_field("client_ref")
            .lookup_route("/{entity}?client_ref=eq.{local_id}"),
        // Without a local-id field, a create route with {id} serves
        // ordinary ids.
        RequestShape::rest().route(RequestKind::Create, "/{entity}/{id}"),
    ] {
        assert_eq!(shape.check(), Ok(()), "{}", shape.name);
    }
}

#[test]
fn records_are_an_array_of_objects_where_the_shape_says() {
    let record = json!({"id": 1});
    let object = |value: Value| value.as_object().cloned().unwrap();
    assert_eq!(records_in(json!([]), None), Ok(Vec::new()));
    assert_eq!(
        records_in(json!([record.clone()]), None),
        Ok(vec![object(record.clone())])
    );
    assert_eq!(
        records_in(json!({"results": [record.clone()]}), Some("/results")),
        Ok(vec![object(record.clone())])
    );
    assert_eq!(records_in(json!([]), Some("")), Ok(Vec::new()));
    for (answer, pointer, found) in [
        (json!({"results": []}), None, "not an array"),
        (
            json!({"data": []}),
            Some("/results"),
            "without a value at /results",
        ),
        (json!([]), Some("/results"), "not an object"),
        (json!({"results": {"id": 1}}), Some("/results"), "not an array"),
        (json!([1]), None, "not records"),
    ] {
        let error = records_in(answer.clone(), pointer).unwrap_err();
        assert!(error.contains(found), "{answer}: {error}");
    }
}
