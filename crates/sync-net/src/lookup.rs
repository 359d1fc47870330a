//! Server-assigned ids, the lookup side: the shape's local-id field (the
//! field a create under a temporary id carries that id in, so the server
//! keeps it) and the route that finds a record by it, for
//! [`sync_core::SyncApiAdapter::find_created`] after a create's answer
//! was lost.
//!
//! The lookup is a `GET` of a list filtered by the local-id field
//! (the create route with `?client_ref=tmp-…` by default), sent as fetches are: the
//! default headers, the fetch request's own headers, the auth hook, the
//! time limits. Its answer is an array of records (or holds one at
//! [`RequestShape::lookup_results`]); none is [`CreatedLookup::Absent`],
//! one is [`CreatedLookup::Found`], several are a permanent error (the
//! server created the record twice).

use http::Method;
use serde_json::Value;
use sync_core::{ApiError, CreatedLookup, EntityName, ErrorKind, JsonObject, RecordId, ServerCopy};

use crate::adapter::HttpSyncApiAdapter;
use crate::answers::captive_portal;
use crate::exchange::{Response, Target, kind_headers};
use crate::shape::{RequestKind, RequestShape, Route};
use crate::url::{encode_query_value, encode_segment};

/// The placeholder of the temporary id in a lookup route.
const LOCAL_ID: &str = "{local_id}";

/// A shape's settings for server-assigned ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LookupShape {
    /// The field a create under a temporary id carries that id in.
    pub(crate) local_id_field: Option<String>,
    /// The lookup route's template; `None`: `/{entity}?<field>={local_id}`.
    pub(crate) route: Option<String>,
    /// Where the array of records is in the lookup's answer (RFC 6901);
    /// `None`: the answer is the array.
    pub(crate) results: Option<String>,
}

impl RequestShape {
    /// The field a create of a record under a temporary id
    /// ([`RecordId::temporary`]) carries that id in, such as `client_ref`.
    /// Default: none.
    ///
    /// A record created with a temporary id is posted without an id (the
    /// shape's id field is left out of the body) and takes the id the
    /// server answers with. With this field set, the body also carries
    /// the temporary id in it (replacing any value the document holds
    /// there), so the server stores it; when the answer to a create is
    /// lost, the adapter finds the record by it
    /// ([`sync_core::SyncApiAdapter::find_created`], through
    /// [`Self::lookup_route`]) instead of posting it again. Without it, a
    /// lost answer can only be recovered by a server that answers a
    /// repeated `Idempotency-Key` with the record it created the first
    /// time.
    ///
    /// The server must keep the field and filter its list by it. It cannot
    /// be the id field, and the create route cannot hold `{id}` (the
    /// server names the record): both are refused by
    /// [`crate::HttpSyncApiAdapterBuilder::build`].
    ///
    /// ```
    /// use sync_net::RequestShape;
    ///
    /// // json-server assigns ids to records posted without one and
    /// // filters lists by any field: `GET /tasks?client_ref=tmp-…`.
    /// let shape = RequestShape::json_server().local_id_field("client_ref");
    /// ```
    #[must_use]
    pub fn local_id_field(mut self, field: impl Into<String>) -> Self {
        self.lookup.local_id_field = Some(field.into());
        self
    }

    /// The route that lists the records created under a temporary id,
    /// relative to the base URL: a template with `{entity}` and
    /// `{local_id}` (the temporary id), percent-encoded as a path segment
    /// before the `?` and as a query value after it. Default, with a
    /// local-id field set: the create route filtered by the field,
    /// `/{entity}?<field>={local_id}` for the default shape (`/{entity}/?…`
    /// for Django REST framework's), the field's name percent-encoded as
    /// a query part too; `/{entity}?<field>={local_id}` when routes come
    /// from a route function. Needs [`Self::local_id_field`].
    ///
    /// ```
    /// use sync_net::RequestShape;
    ///
    /// // PostgREST's filter syntax.
    /// let shape = RequestShape::postgrest()
    ///     .local_id_field("client_ref")
    ///     .lookup_route("/{entity}?client_ref=eq.{local_id}");
    /// ```
    #[must_use]
    pub fn lookup_route(mut self, template: impl Into<String>) -> Self {
        self.lookup.route = Some(template.into());
        self
    }

    /// Where the array of records is in the lookup's answer, when the
    /// answer is an object: a JSON pointer (RFC 6901), such as `/results`
    /// for Django REST framework's pagination or `/data` for Directus.
    /// Default: the answer is the array itself. Needs
    /// [`Self::local_id_field`].
    ///
    /// ```
    /// use sync_net::RequestShape;
    ///
    /// // A paginated DRF list: {"count": 1, "next": null, "results": [...]}.
    /// let shape = RequestShape::django_rest_framework()
    ///     .local_id_field("client_ref")
    ///     .lookup_results("/results");
    /// ```
    #[must_use]
    pub fn lookup_results(mut self, pointer: impl Into<String>) -> Self {
        self.lookup.results = Some(pointer.into());
        self
    }

    /// Checks the settings for server-assigned ids.
    pub(crate) fn check_lookup(&self) -> Result<(), String> {
        let Some(field) = &self.lookup.local_id_field else {
            if self.lookup.route.is_some() || self.lookup.results.is_some() {
                return Err(
                    "a lookup route or lookup results need a local-id field (RequestShape::local_id_field): \
                     records are looked up by it"
                        .to_owned(),
                );
            }
            return Ok(());
        };
        if field.is_empty() {
            return Err("the local-id field name is empty".to_owned());
        }
        if *field == self.id_field {
            return Err(format!(
                "the local-id field {field:?} is the id field: the server assigns the id, and the \
                 temporary one goes in another field"
            ));
        }
        if let Route::Template(template) = &self.create.route
            && template.contains("{id}")
        {
            return Err(format!(
                "the create route {template:?} holds {{id}}, but with a local-id field the server \
                 assigns ids: the entity needs a collection route for server-assigned ids, such as \
                 \"/{{entity}}\""
            ));
        }
        if let Some(template) = &self.lookup.route {
            check_lookup_template(template)?;
        }
        if let Some(pointer) = &self.lookup.results
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            return Err(format!(
                "the lookup results pointer {pointer:?} must start with '/' (RFC 6901)"
            ));
        }
        Ok(())
    }
}

/// The default lookup route for a local-id field: the create route (the
/// collection, such as DRF's `/{entity}/`, whose slash Django would
/// otherwise answer with a redirect) filtered by the field; `/{entity}`
/// when creates go through a route function.
fn default_route(shape: &RequestShape, field: &str) -> String {
    let collection = match &shape.create.route {
        Route::Template(template) if !template.contains("{id}") => template.as_str(),
        _ => "/{entity}",
    };
    let separator = if collection.contains('?') { '&' } else { '?' };
    format!("{collection}{separator}{}={LOCAL_ID}", encode_query_value(field))
}

/// Checks a lookup route template: it starts with `/`, holds only the
/// `{entity}` and `{local_id}` placeholders, and `{local_id}`.
fn check_lookup_template(template: &str) -> Result<(), String> {
    if !template.starts_with('/') {
        return Err(format!("the lookup route {template:?} must start with '/'"));
    }
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(length) = rest[start..].find('}') else {
            return Err(format!("the lookup route {template:?} has an unclosed '{{'"));
        };
        let placeholder = &rest[start..=start + length];
        if !matches!(placeholder, "{entity}" | LOCAL_ID) {
            return Err(format!(
                "the lookup route {template:?} has the unknown placeholder {placeholder} (use {{entity}} and {{local_id}})"
            ));
        }
        rest = &rest[start + length + 1..];
    }
    if !template.contains(LOCAL_ID) {
        return Err(format!("the lookup route {template:?} must hold {{local_id}}"));
    }
    Ok(())
}

/// `template` with `entity` and `local_id` filled in, percent-encoded for
/// where they stand; `local_id: None` leaves `{local_id}` (for messages).
fn render(template: &str, entity: &EntityName, local_id: Option<&str>) -> String {
    let (path, query) = match template.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (template, None),
    };
    let local = |encode: fn(&str) -> String| local_id.map_or_else(|| LOCAL_ID.to_owned(), encode);
    let mut out = path
        .replace("{entity}", &encode_segment(entity.as_str()))
        .replace(LOCAL_ID, &local(encode_segment));
    if let Some(query) = query {
        out.push('?');
        out.push_str(
            &query
                .replace("{entity}", &encode_query_value(entity.as_str()))
                .replace(LOCAL_ID, &local(encode_query_value)),
        );
    }
    out
}

/// The lookup request for `temporary`: a `GET` of the lookup route with
/// the fetch request's headers. Its line leaves out the query and shows
/// the temporary id as `{local_id}`.
fn lookup_target(
    shape: &RequestShape,
    field: &str,
    entity: &EntityName,
    temporary: &RecordId,
) -> Result<Target, ApiError> {
    let template = shape
        .lookup
        .route
        .clone()
        .unwrap_or_else(|| default_route(shape, field));
    let shown = render(&template, entity, None);
    let shown = shown.split('?').next().unwrap_or(&shown);
    let line = format!("GET {shown}");
    let in_path = template.split('?').next().unwrap_or(&template);
    if in_path.contains("{entity}") && matches!(entity.as_str(), "." | "..") {
        return Err(ApiError::new(
            ErrorKind::Permanent,
            "the entity name \".\" or \"..\" cannot be sent as a URL path segment: rename it, or \
             configure a lookup route that sends it in the query string",
        )
        .with_request(line));
    }
    Ok(Target {
        method: Method::GET,
        path: render(&template, entity, Some(temporary.as_str())),
        line,
        headers: kind_headers(shape, RequestKind::Fetch),
    })
}

impl HttpSyncApiAdapter {
    /// [`sync_core::SyncApiAdapter::find_created`]: the record created
    /// under `temporary`, by the shape's local-id field.
    pub(crate) async fn lookup_created(
        &self,
        entity: &EntityName,
        temporary: &RecordId,
    ) -> Result<CreatedLookup, ApiError> {
        let shape = self.shape_of(entity);
        let Some(field) = shape.lookup.local_id_field.as_deref() else {
            return Ok(CreatedLookup::Unsupported);
        };
        let target = lookup_target(shape, field, entity, temporary)?;
        let response = self.send(&target, None, None).await?;
        if !response.status.is_success() {
            return Err(self.lookup_refusal(&response, &target.line));
        }
        if let Some(error) = captive_portal(&response, &target.line, false) {
            return Err(error);
        }
        let records = self.lookup_records(shape, &response, &target.line)?;
        let permanent = |message: String, possibly_applied: bool| {
            ApiError::new(ErrorKind::Permanent, message)
                .with_status(response.status.as_u16())
                .with_request(target.line.as_str())
                .with_possibly_applied(possibly_applied)
        };
        // Records without the field (or with null in it) are not this one:
        // json-server's filter answers them too, and a record whose field a
        // replacing update removed has it no more. They are left out.
        let records: Vec<JsonObject> = records
            .into_iter()
            .filter(|record| !matches!(record.get(field), None | Some(Value::Null)))
            .collect();
        // A server that does not filter by the field (DRF without
        // django-filter ignores unknown query parameters) answers other
        // records: taking one of them for this record would rename it to
        // another record's id.
        if records
            .iter()
            .any(|record| record.get(field).and_then(Value::as_str) != Some(temporary.as_str()))
        {
            let mut message = "the server answered the lookup of a record created under a temporary id \
                 with records whose local-id field does not hold it: the server does not filter its \
                 list by the local-id field, or leaves the field out of its answer. Nothing was \
                 renamed; make the field filterable and returned (django-filter's filterset_fields \
                 for Django REST framework), or set RequestShape::lookup_route to the server's filter \
                 syntax"
                .to_owned();
            self.append_body(&mut message, &response.body);
            return Err(permanent(message, false));
        }
        let count = records.len();
        let mut records = records.into_iter();
        match (records.next(), records.next()) {
            (None, _) => Ok(CreatedLookup::Absent),
            (Some(record), None) => {
                let Some(id) = record
                    .get(&shape.id_field)
                    .filter(|value| sync_core::rename::id_text(value).is_some())
                    .cloned()
                else {
                    let mut message = "the server holds the record created under this temporary id, but \
                         its id field holds no usable id (a string or an integer): check the shape's id \
                         field (RequestShape::id_field) and the lookup's answer"
                        .to_owned();
                    self.append_body(&mut message, &response.body);
                    return Err(permanent(message, true));
                };
                // An ETag on a list answer is the list's, not the record's.
                let version = shape.version_in(None, Some(&record));
                Ok(CreatedLookup::Found {
                    id,
                    copy: ServerCopy {
                        data: record,
                        version,
                    },
                })
            }
            (Some(_), Some(_)) => Err(permanent(
                format!(
                    "the server holds several records ({count}) created under this temporary id: it \
                     ignores idempotency keys and the create was repeated. Nothing was renamed; keep \
                     one of them, delete the others on the server, then retry the item"
                ),
                true,
            )),
        }
    }

    /// The error for a lookup answered with another status than 2xx: a
    /// filtered list answers an empty array when nothing matches, so a
    /// 404 or 410 is a missing route; other statuses are classified as
    /// for every request.
    fn lookup_refusal(&self, response: &Response, line: &str) -> ApiError {
        let status = response.status.as_u16();
        if !matches!(status, 404 | 410) {
            return self.status_error(response, line);
        }
        let reason = response.status.canonical_reason().unwrap_or("unknown status");
        let mut message = format!(
            "HTTP {status} {reason}: the lookup route is missing (a list filtered by the local-id field \
             answers an empty array when nothing matches): check the base URL and the lookup route \
             (RequestShape::lookup_route)"
        );
        self.append_body(&mut message, &response.body);
        ApiError::new(ErrorKind::Permanent, message)
            .with_status(status)
            .with_request(line)
            .with_possibly_applied(false)
    }

    /// The records in a lookup's answer: an array of objects, the whole
    /// answer or at the shape's pointer. Anything else is the answer of a
    /// wrong route or shape, and asking again would get the same one: a
    /// permanent error, nothing applied.
    fn lookup_records(
        &self,
        shape: &RequestShape,
        response: &Response,
        line: &str,
    ) -> Result<Vec<JsonObject>, ApiError> {
        let found = match serde_json::from_slice::<Value>(&response.body) {
            Ok(answer) => match records_in(answer, shape.lookup.results.as_deref()) {
                Ok(records) => return Ok(records),
                Err(found) => found,
            },
            Err(_) if response.body.iter().all(u8::is_ascii_whitespace) => "an empty body".to_owned(),
            Err(_) => "a body that is not JSON".to_owned(),
        };
        let mut message = format!(
            "the server answered the lookup of a record created under a temporary id with {found}: it \
             must answer with an array of records where the request shape says it is (check the lookup \
             route, the base URL and RequestShape::lookup_results)"
        );
        self.append_body(&mut message, &response.body);
        Err(ApiError::new(ErrorKind::Permanent, message)
            .with_status(response.status.as_u16())
            .with_request(line)
            .with_possibly_applied(false))
    }
}

/// The array of records in `answer` (at `pointer`, when given); `Err` with
/// what was found instead.
fn records_in(answer: Value, pointer: Option<&str>) -> Result<Vec<JsonObject>, String> {
    let located = match pointer.filter(|pointer| !pointer.is_empty()) {
        None => answer,
        Some(pointer) => match answer {
            Value::Object(_) => match answer.pointer(pointer) {
                Some(found) => found.clone(),
                None => return Err(format!("JSON without a value at {pointer}")),
            },
            other => {
                return Err(format!(
                    "JSON that is {}, not an object",
                    sync_core::model::json_type_name(&other)
                ));
            }
        },
    };
    let Value::Array(rows) = located else {
        return Err(format!(
            "JSON that is {}, not an array",
            sync_core::model::json_type_name(&located)
        ));
    };
    rows.into_iter()
        .map(|row| match row {
            Value::Object(record) => Ok(record),
            other => Err(format!(
                "an array holding {}, not records",
                sync_core::model::json_type_name(&other)
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests;
