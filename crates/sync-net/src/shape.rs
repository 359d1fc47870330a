//! [`RequestShape`]: how one entity is spoken to, declared per request kind
//! (method, route, headers, the answers that mean "absent" and "already
//! exists"), with the body, the answer and the id field; and presets for
//! the servers apps meet most.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use sync_core::{EntityName, JsonObject, RecordId};

use crate::url::{encode_query_value, encode_segment};

/// What a request is for.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// Creating a record (`POST /{entity}` by default).
    Create,
    /// Updating a record (`PUT /{entity}/{id}` by default).
    Update,
    /// Deleting a record (`DELETE /{entity}/{id}` by default).
    Delete,
    /// Fetching one record (`GET /{entity}/{id}` by default), to check
    /// whether an earlier create reached the server or to resolve a
    /// conflict.
    Fetch,
}

impl RequestKind {
    /// All kinds, in a fixed order.
    pub const ALL: [Self; 4] = [Self::Create, Self::Update, Self::Delete, Self::Fetch];

    /// The lowercase name used in messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Fetch => "fetch",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP method a request shape can use.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl HttpMethod {
    pub(crate) fn to_http(self) -> http::Method {
        match self {
            Self::Get => http::Method::GET,
            Self::Post => http::Method::POST,
            Self::Put => http::Method::PUT,
            Self::Patch => http::Method::PATCH,
            Self::Delete => http::Method::DELETE,
        }
    }
}

/// What the body of a declared answer must hold, beyond its status.
#[derive(Debug, Clone, PartialEq)]
enum BodyTest {
    /// The JSON value at a pointer (RFC 6901) is this string, or a number
    /// or boolean written the same way.
    FieldEquals(String, String),
    /// The JSON body has a value at this pointer.
    FieldPresent(String),
    /// The body contains this text.
    Contains(String),
}

/// A server answer a shape declares: a status, optionally with something in
/// its body (a code, a field, a phrase), so that only the server's own
/// "absent" or "already exists" answer counts, not a wrong route's.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerMatch {
    status: u16,
    body: Option<BodyTest>,
}

impl AnswerMatch {
    /// Any answer with this status.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self { status, body: None }
    }

    /// Only when the JSON value at `pointer` (RFC 6901, such as
    /// `/errors/0/extensions/code`) is `value` (a string, or a number or
    /// boolean written the same way).
    #[must_use]
    pub fn with_body_field(mut self, pointer: impl Into<String>, value: impl Into<String>) -> Self {
        self.body = Some(BodyTest::FieldEquals(pointer.into(), value.into()));
        self
    }

    /// Only when the JSON body has a value at `pointer` (such as DRF's
    /// `/detail`, which a wrong route's HTML page lacks).
    #[must_use]
    pub fn with_body_field_present(mut self, pointer: impl Into<String>) -> Self {
        self.body = Some(BodyTest::FieldPresent(pointer.into()));
        self
    }

    /// Only when the body contains `text`.
    #[must_use]
    pub fn with_body_containing(mut self, text: impl Into<String>) -> Self {
        self.body = Some(BodyTest::Contains(text.into()));
        self
    }

    /// Whether an answer is this one.
    #[must_use]
    pub fn matches(&self, status: u16, body: &[u8]) -> bool {
        if status != self.status {
            return false;
        }
        let json = || serde_json::from_slice::<Value>(body).ok();
        match &self.body {
            None => true,
            Some(BodyTest::Contains(text)) => String::from_utf8_lossy(body).contains(text.as_str()),
            Some(BodyTest::FieldPresent(pointer)) => {
                json().is_some_and(|value| value.pointer(pointer).is_some())
            }
            Some(BodyTest::FieldEquals(pointer, expected)) => json().is_some_and(|value| {
                value
                    .pointer(pointer)
                    .is_some_and(|found| scalar_text(found).as_deref() == Some(expected.as_str()))
            }),
        }
    }
}

/// A string, number or boolean as text; `None` for anything else.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Maps an entity and an optional id to a path (with an optional query),
/// relative to the base URL, knowing the request it builds for; it must
/// start with `/`. Use [`crate::encode_segment`] and
/// [`crate::encode_query_value`] on the parts.
pub type RouteFn = dyn Fn(RequestKind, &EntityName, Option<&RecordId>) -> String + Send + Sync;

/// Where a request goes, relative to the base URL.
#[derive(Clone)]
pub(crate) enum Route {
    /// A template such as `/{entity}/records/{id}` or
    /// `/{entity}?id=eq.{id}`: the placeholders are percent-encoded, as a
    /// path segment before the `?` and as a query value after it.
    Template(String),
    /// The app's own function.
    Custom(Arc<RouteFn>),
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Template(template) => f.debug_tuple("Template").field(template).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl Route {
    /// The path for `entity` and `id`, and the same path with the id shown
    /// as `{id}` (for error messages), or `None` when this route renders the
    /// id in a way only the adapter's redaction can hide.
    pub(crate) fn render(&self, kind: RequestKind, entity: &EntityName, id: Option<&RecordId>) -> Rendered {
        match self {
            Self::Custom(route) => Rendered {
                path: route(kind, entity, id),
                shown: None,
            },
            Self::Template(template) => {
                let fill = |id_text: Option<&str>, encode_id: bool| {
                    let (path, query) = match template.split_once('?') {
                        Some((path, query)) => (path, Some(query)),
                        None => (template.as_str(), None),
                    };
                    let entity_segment = encode_segment(entity.as_str());
                    let id_value = |encode: fn(&str) -> String| match (id_text, encode_id) {
                        (Some(text), true) => encode(text),
                        (Some(text), false) => text.to_owned(),
                        (None, _) => String::new(),
                    };
                    let mut out = path
                        .replace("{entity}", &entity_segment)
                        .replace("{id}", &id_value(encode_segment));
                    if let Some(query) = query {
                        out.push('?');
                        out.push_str(
                            &query
                                .replace("{entity}", &encode_query_value(entity.as_str()))
                                .replace("{id}", &id_value(encode_query_value)),
                        );
                    }
                    out
                };
                Rendered {
                    path: fill(id.map(RecordId::as_str), true),
                    shown: Some(fill(id.map(|_| "{id}"), false)),
                }
            }
        }
    }
}

/// A rendered route.
pub(crate) struct Rendered {
    pub(crate) path: String,
    /// The path with `{id}` in place of the id; `None` for custom routes.
    pub(crate) shown: Option<String>,
}

/// How one kind of request is sent and its answers read.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    pub(crate) method: HttpMethod,
    pub(crate) route: Route,
    /// Extra headers, sent on this kind of request only.
    pub(crate) headers: Vec<(String, String)>,
    /// Answers meaning the server has no such record.
    pub(crate) absent: Vec<AnswerMatch>,
    /// Answers meaning the server already holds a record with this id
    /// (creates only).
    pub(crate) already_exists: Vec<AnswerMatch>,
}

impl RequestSpec {
    pub(crate) fn new(method: HttpMethod, route: &str) -> Self {
        Self {
            method,
            route: Route::Template(route.to_owned()),
            headers: Vec::new(),
            absent: Vec::new(),
            already_exists: Vec::new(),
        }
    }

    pub(crate) fn absent(mut self, answers: impl IntoIterator<Item = AnswerMatch>) -> Self {
        self.absent = answers.into_iter().collect();
        self
    }
}

/// What a write's body holds.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyShape {
    /// The whole local document (the default).
    Document,
    /// The whole document under one key, such as `{"data": {...}}`.
    Wrapped(String),
    /// Updates send a JSON Merge Patch (RFC 7386, `Content-Type:
    /// application/merge-patch+json`) of the fields changed since the copy
    /// the server last confirmed, so edits of other fields made on the
    /// server meanwhile stand; a removed field goes as `null`. Without a
    /// known copy, and for creates, the whole document is sent. (A field
    /// whose local value is `null` cannot be told from a removed one in a
    /// merge patch: it is removed on the server.)
    MergePatch,
}

/// Where the record is in the server's answers to writes and fetches.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerShape {
    /// The whole answer is the record (the default).
    Document,
    /// The record is under a JSON pointer (RFC 6901), such as `/data` for
    /// an envelope.
    Pointer(String),
    /// The answer is an array holding the record (PostgREST and other
    /// query-filtered APIs): an empty array means the server has no such
    /// record.
    FirstOfArray,
    /// Answers to writes are never adopted as the local document; fetches
    /// read the whole answer as the record.
    Nothing,
}

/// Where the server's version of a record comes from, for conditional
/// writes (`If-Match` on updates and deletes, 412 when the record changed
/// since).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// The answer's strong `ETag` header (the default; a server that sends
    /// none, or only weak ones, gets unconditional writes).
    ETag,
    /// A field of the record, such as `version` or `updated_at`; it is
    /// sent back as `If-Match: "<value>"`.
    Field(String),
    /// No conditional writes.
    None,
}

/// How the server compares ids.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdType {
    /// The id is sent as the document holds it (the default).
    AsSent,
    /// The server compares ids as strings (json-server: a numeric id in the
    /// body is stored as a number but never matched by the URL's text), so
    /// a numeric id in the body is sent as a string.
    String,
    /// The server wants numeric ids: an id string of digits in the body is
    /// sent as a number.
    Number,
}

/// How one entity is spoken to: per request kind, the method, the route,
/// extra headers, and which answers mean "absent" and "already exists";
/// what a write's body holds; where the record is in an answer; and the
/// id field.
///
/// Start from a preset ([`RequestShape::rest`], the default, or the one for
/// your server) and change what differs with the chained methods; give it
/// to [`crate::HttpSyncApiAdapterBuilder::shape`] (every entity) or
/// [`crate::HttpSyncApiAdapterBuilder::entity_shape`] (one entity). Every
/// setting is checked by [`crate::HttpSyncApiAdapterBuilder::build`].
///
/// ```
/// use sync_net::{AnswerMatch, HttpMethod, RequestKind, RequestShape};
///
/// // An API that updates with PATCH and answers a missing record with
/// // 404 {"error": "not_found"} (any other 404 is a wrong route).
/// let shape = RequestShape::rest()
///     .method(RequestKind::Update, HttpMethod::Patch)
///     .absent_answers(
///         [RequestKind::Update, RequestKind::Delete, RequestKind::Fetch],
///         [AnswerMatch::status(404).with_body_field("/error", "not_found")],
///     );
/// ```
#[derive(Debug, Clone)]
pub struct RequestShape {
    pub(crate) name: &'static str,
    pub(crate) create: RequestSpec,
    pub(crate) update: RequestSpec,
    pub(crate) delete: RequestSpec,
    pub(crate) fetch: RequestSpec,
    pub(crate) body: BodyShape,
    pub(crate) answer: AnswerShape,
    pub(crate) id_field: String,
    pub(crate) id_type: IdType,
    pub(crate) version: VersionSource,
    /// Whether update bodies leave out the id field (servers that refuse
    /// even an unchanged primary key in a patch).
    pub(crate) omit_id_on_update: bool,
    /// Server-assigned ids: the field a create under a temporary id
    /// carries it in, and how a record is looked up by it
    /// ([`crate::lookup`]).
    pub(crate) lookup: crate::lookup::LookupShape,
}

impl Default for RequestShape {
    fn default() -> Self {
        Self::rest()
    }
}

impl RequestShape {
    pub(crate) fn spec(&self, kind: RequestKind) -> &RequestSpec {
        match kind {
            RequestKind::Create => &self.create,
            RequestKind::Update => &self.update,
            RequestKind::Delete => &self.delete,
            RequestKind::Fetch => &self.fetch,
        }
    }

    fn spec_mut(&mut self, kind: RequestKind) -> &mut RequestSpec {
        match kind {
            RequestKind::Create => &mut self.create,
            RequestKind::Update => &mut self.update,
            RequestKind::Delete => &mut self.delete,
            RequestKind::Fetch => &mut self.fetch,
        }
    }

    /// The method of one kind of request. A fetch must be `GET`.
    #[must_use]
    pub fn method(mut self, kind: RequestKind, method: HttpMethod) -> Self {
        self.spec_mut(kind).method = method;
        self
    }

    /// The route of one kind of request, relative to the base URL: a
    /// template with `{entity}` and (required for update, delete and
    /// fetch) `{id}`, percent-encoded as a path segment before the `?` and
    /// as a query value after it: `/{entity}/{id}/`,
    /// `/{entity}/records/{id}`, `/{entity}?id=eq.{id}`.
    #[must_use]
    pub fn route(mut self, kind: RequestKind, template: impl Into<String>) -> Self {
        self.spec_mut(kind).route = Route::Template(template.into());
        self
    }

    /// The route of every kind of request, computed by the app's own
    /// function (which must percent-encode what it inserts).
    #[must_use]
    pub fn route_fn(
        mut self,
        route: impl Fn(RequestKind, &EntityName, Option<&RecordId>) -> String + Send + Sync + 'static,
    ) -> Self {
        let route: Arc<RouteFn> = Arc::new(route);
        for kind in RequestKind::ALL {
            self.spec_mut(kind).route = Route::Custom(Arc::clone(&route));
        }
        self
    }

    /// Adds a header sent on this kind of request only (it replaces a
    /// default header of the same name there), such as `Prefer` on writes.
    #[must_use]
    pub fn header(mut self, kind: RequestKind, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec_mut(kind).headers.push((name.into(), value.into()));
        self
    }

    /// The answers that mean "the server has no such record" for these
    /// kinds of request, replacing the ones declared before; a success
    /// status counts too (Directus answers a `PATCH` of a missing record
    /// 204 where a real update answers 200). For a fetch
    /// it means no record; for an update, the record is re-created (after
    /// a fetch confirms it); for a delete, done (checked with a fetch on a
    /// first delete). Any other 404 or 410 is then a permanent error (a
    /// wrong route proves nothing). Not allowed for creates.
    #[must_use]
    pub fn absent_answers(
        mut self,
        kinds: impl IntoIterator<Item = RequestKind>,
        answers: impl IntoIterator<Item = AnswerMatch>,
    ) -> Self {
        let answers: Vec<AnswerMatch> = answers.into_iter().collect();
        for kind in kinds {
            self.spec_mut(kind).absent.clone_from(&answers);
        }
        self
    }

    /// The answers to a create that mean "the server already holds a
    /// record with this id", replacing the ones declared before: the
    /// engine then updates the record in the same attempt.
    #[must_use]
    pub fn already_exists_answers(mut self, answers: impl IntoIterator<Item = AnswerMatch>) -> Self {
        self.create.already_exists = answers.into_iter().collect();
        self
    }

    /// What a write's body holds. Default [`BodyShape::Document`].
    #[must_use]
    pub fn body(mut self, body: BodyShape) -> Self {
        self.body = body;
        self
    }

    /// Where the record is in answers. Default [`AnswerShape::Document`].
    #[must_use]
    pub fn answer(mut self, answer: AnswerShape) -> Self {
        self.answer = answer;
        self
    }

    /// The field of the document that holds the record's id. Default `id`.
    /// An answer to a write is adopted as the local document only when it
    /// holds this field with the record's id (or, when the document has no
    /// such field, none).
    #[must_use]
    pub fn id_field(mut self, field: impl Into<String>) -> Self {
        self.id_field = field.into();
        self
    }

    /// How the server compares ids. Default [`IdType::AsSent`].
    #[must_use]
    pub fn id_type(mut self, id_type: IdType) -> Self {
        self.id_type = id_type;
        self
    }

    /// Where the record's version comes from, for conditional writes.
    /// Default [`VersionSource::ETag`].
    #[must_use]
    pub fn version(mut self, version: VersionSource) -> Self {
        self.version = version;
        self
    }

    /// Whether update bodies leave out the id field. Default `false`
    /// (`true` for PocketBase, which refuses a primary key in a patch).
    #[must_use]
    pub fn omit_id_on_update(mut self, omit: bool) -> Self {
        self.omit_id_on_update = omit;
        self
    }

    /// Checks the shape; the reason names the setting that cannot work.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.fetch.method != HttpMethod::Get {
            return Err("the fetch request must use GET".to_owned());
        }
        if !self.create.absent.is_empty() {
            return Err(
                "a create has no \"absent\" answers: a 404 to a create is a missing route".to_owned(),
            );
        }
        if self.id_field.is_empty() {
            return Err("the id field name is empty".to_owned());
        }
        if let AnswerShape::Pointer(pointer) = &self.answer
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            return Err(format!(
                "the answer pointer {pointer:?} must start with '/' (RFC 6901)"
            ));
        }
        if self.body == BodyShape::MergePatch && self.update.method != HttpMethod::Patch {
            return Err(
                "a merge-patch body needs PATCH updates: a PUT of a patch would replace the record \
                 with the changed fields only (set the update method to HttpMethod::Patch)"
                    .to_owned(),
            );
        }
        if self
            .create
            .already_exists
            .iter()
            .any(|answer| (200..300).contains(&answer.status))
        {
            return Err("a success status cannot mean \"already exists\": the create was applied".to_owned());
        }
        if let BodyShape::Wrapped(key) = &self.body
            && key.is_empty()
        {
            return Err("the body's wrapping key is empty".to_owned());
        }
        self.check_lookup()?;
        for kind in RequestKind::ALL {
            let spec = self.spec(kind);
            if let Route::Template(template) = &spec.route {
                check_template(kind, template)?;
            }
            for (name, value) in &spec.headers {
                http::HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("the {kind} header {name:?} is not a valid header name"))?;
                http::HeaderValue::try_from(value.as_str()).map_err(|_| {
                    format!("the {kind} header {name:?} has characters a header cannot carry")
                })?;
            }
        }
        Ok(())
    }

    /// The body to send for a write of `data`, and whether it is a merge
    /// patch (against `base`, the copy the server last confirmed).
    pub(crate) fn write_body(
        &self,
        kind: RequestKind,
        data: &JsonObject,
        base: Option<&JsonObject>,
    ) -> (Value, bool) {
        let mut data = match (&self.body, kind, base) {
            (BodyShape::MergePatch, RequestKind::Update, Some(base)) => {
                let mut patch = merge_patch(base, data);
                patch.remove(&self.id_field);
                return (Value::Object(patch), true);
            }
            _ => data.clone(),
        };
        if kind == RequestKind::Update && self.omit_id_on_update {
            data.remove(&self.id_field);
        }
        if let Some(id) = data.get_mut(&self.id_field) {
            match (self.id_type, &*id) {
                (IdType::String, Value::Number(number)) => *id = Value::String(number.to_string()),
                (IdType::Number, Value::String(text)) => {
                    if let Ok(number) = text.parse::<u64>() {
                        *id = Value::from(number);
                    } else if let Ok(number) = text.parse::<i64>() {
                        *id = Value::from(number);
                    }
                }
                _ => {}
            }
        }
        match &self.body {
            BodyShape::Document | BodyShape::MergePatch => (Value::Object(data), false),
            BodyShape::Wrapped(key) => {
                let mut wrapper = JsonObject::new();
                wrapper.insert(key.clone(), Value::Object(data));
                (Value::Object(wrapper), false)
            }
        }
    }

    /// The record's version in an answer: its strong `ETag`, or the
    /// version field of `record`, as the shape says.
    pub(crate) fn version_in(&self, etag: Option<&str>, record: Option<&JsonObject>) -> Option<String> {
        match &self.version {
            VersionSource::ETag => etag
                .map(str::trim)
                .filter(|tag| tag.starts_with('"') && tag.ends_with('"') && tag.len() >= 2)
                .map(str::to_owned),
            VersionSource::Field(field) => record
                .and_then(|record| record.get(field))
                .and_then(scalar_text)
                .map(|value| format!("\"{value}\"")),
            VersionSource::None => None,
        }
    }

    /// The record in an answer, where the shape says it is: `Ok(None)` for
    /// an answer that says "no record" (an empty array), `Err` with what
    /// was found instead when there is no record where it should be.
    pub(crate) fn record_in(&self, answer: Value, for_fetch: bool) -> Result<Option<JsonObject>, String> {
        let located = match &self.answer {
            AnswerShape::Document => answer,
            AnswerShape::Nothing if for_fetch => answer,
            AnswerShape::Nothing => return Err("an answer the shape does not read".to_owned()),
            AnswerShape::Pointer(pointer) => match answer.pointer(pointer) {
                Some(found) => found.clone(),
                None => return Err(format!("JSON without a value at {pointer}")),
            },
            AnswerShape::FirstOfArray => match answer {
                Value::Array(mut rows) if rows.len() <= 1 => match rows.pop() {
                    Some(row) => row,
                    None => return Ok(None),
                },
                Value::Array(rows) => return Err(format!("an array of {} rows, not one", rows.len())),
                other => {
                    return Err(format!(
                        "JSON that is {}, not an array",
                        sync_core::model::json_type_name(&other)
                    ));
                }
            },
        };
        match located {
            Value::Object(record) => Ok(Some(record)),
            other => Err(format!(
                "JSON that is {}",
                sync_core::model::json_type_name(&other)
            )),
        }
    }

    /// Whether `record`, the answer to a create of record `id`, names
    /// another record: its id field holds another id (or null). Such a
    /// server assigns ids itself, so the record now exists there under an
    /// id this engine does not know.
    pub(crate) fn names_another_record(&self, record: &JsonObject, id: &RecordId) -> bool {
        record
            .get(&self.id_field)
            .is_some_and(|value| scalar_text(value).as_deref() != Some(id.as_str()))
    }

    /// The answer to a write of `sent` for record `id`, as a local document
    /// to adopt: only when it is that record (its id field holds `id`, or
    /// both lack the field). The id keeps the form the document gave it.
    pub(crate) fn adoptable(
        &self,
        mut record: JsonObject,
        sent: &JsonObject,
        id: &RecordId,
    ) -> Option<JsonObject> {
        match record.get(&self.id_field) {
            None if sent.contains_key(&self.id_field) => return None,
            None => {}
            Some(value) => {
                if scalar_text(value).as_deref() != Some(id.as_str()) {
                    return None;
                }
                if let Some(original) = sent.get(&self.id_field) {
                    record.insert(self.id_field.clone(), original.clone());
                }
            }
        }
        Some(record)
    }
}

/// The JSON Merge Patch (RFC 7386) that takes `base` to `target`: changed
/// and added fields with their new values (objects patched recursively),
/// removed fields as `null`.
#[must_use]
pub fn merge_patch(base: &JsonObject, target: &JsonObject) -> JsonObject {
    let mut patch = JsonObject::new();
    for (field, value) in target {
        match (base.get(field), value) {
            (Some(before), _) if before == value => {}
            (Some(Value::Object(before)), Value::Object(after)) => {
                patch.insert(field.clone(), Value::Object(merge_patch(before, after)));
            }
            _ => {
                patch.insert(field.clone(), value.clone());
            }
        }
    }
    for field in base.keys() {
        if !target.contains_key(field) {
            patch.insert(field.clone(), Value::Null);
        }
    }
    patch
}

/// Checks a route template: it starts with `/`, holds only the
/// `{entity}` and `{id}` placeholders, and `{id}` where the request needs
/// one.
fn check_template(kind: RequestKind, template: &str) -> Result<(), String> {
    if !template.starts_with('/') {
        return Err(format!("the {kind} route {template:?} must start with '/'"));
    }
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(length) = rest[start..].find('}') else {
            return Err(format!("the {kind} route {template:?} has an unclosed '{{'"));
        };
        let placeholder = &rest[start..=start + length];
        if !matches!(placeholder, "{entity}" | "{id}") {
            return Err(format!(
                "the {kind} route {template:?} has the unknown placeholder {placeholder} (use {{entity}} and {{id}})"
            ));
        }
        rest = &rest[start + length + 1..];
    }
    if kind != RequestKind::Create && !template.contains("{id}") {
        return Err(format!("the {kind} route {template:?} must hold {{id}}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> JsonObject {
        match value {
            Value::Object(object) => object,
            _ => JsonObject::new(),
        }
    }

    fn entity() -> EntityName {
        EntityName::new("my tasks").unwrap()
    }

    #[test]
    fn templates_encode_ids_for_where_they_stand() {
        let id: RecordId = "a/b c".parse().unwrap();
        let rendered = Route::Template("/{entity}/records/{id}/".into()).render(
            RequestKind::Update,
            &entity(),
            Some(&id),
        );
        assert_eq!(rendered.path, "/my%20tasks/records/a%2Fb%20c/");
        assert_eq!(rendered.shown.as_deref(), Some("/my%20tasks/records/{id}/"));
        let query =
            Route::Template("/{entity}?id=eq.{id}".into()).render(RequestKind::Fetch, &entity(), Some(&id));
        assert_eq!(query.path, "/my%20tasks?id=eq.a%2Fb%20c");
        assert_eq!(query.shown.as_deref(), Some("/my%20tasks?id=eq.{id}"));
    }

    #[test]
    fn every_preset_passes_its_own_checks() {
        for shape in [
            RequestShape::rest(),
            RequestShape::json_server(),
            RequestShape::django_rest_framework(),
            RequestShape::pocketbase(),
            RequestShape::directus(),
            RequestShape::postgrest(),
        ] {
            assert_eq!(shape.check(), Ok(()), "{}", shape.name);
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            (
                RequestShape::rest().route(RequestKind::Update, "/{entity}"),
                "must hold {id}",
            ),
            (
                RequestShape::rest().route(RequestKind::Fetch, "tasks/{id}"),
                "must start with '/'",
            ),
            (
                RequestShape::rest().route(RequestKind::Fetch, "/{entity}/{key}"),
                "unknown placeholder {key}",
            ),
            (
                RequestShape::rest().method(RequestKind::Fetch, HttpMethod::Post),
                "must use GET",
            ),
            (
                RequestShape::rest().absent_answers([RequestKind::Create], [AnswerMatch::status(404)]),
                "missing route",
            ),
            (
                RequestShape::rest().header(RequestKind::Create, "Pre fer", "x"),
                "not a valid header name",
            ),
            (
                RequestShape::rest().answer(AnswerShape::Pointer("data".into())),
                "must start with '/'",
            ),
            (
                RequestShape::rest().body(BodyShape::MergePatch),
                "needs PATCH updates",
            ),
            (
                RequestShape::rest().already_exists_answers([AnswerMatch::status(200)]),
                "cannot mean \"already exists\"",
            ),
        ];
        for (shape, reason) in cases {
            let error = shape.check().unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
    }

    #[test]
    fn declared_answers_need_their_body() {
        let forbidden = AnswerMatch::status(403).with_body_field("/errors/0/extensions/code", "FORBIDDEN");
        assert!(forbidden.matches(
            403,
            br#"{"errors":[{"message":"no","extensions":{"code":"FORBIDDEN"}}]}"#
        ));
        assert!(!forbidden.matches(403, b"<html>Forbidden</html>"));
        assert!(!forbidden.matches(404, br#"{"errors":[{"extensions":{"code":"FORBIDDEN"}}]}"#));
        let detail = AnswerMatch::status(404).with_body_field_present("/detail");
        assert!(detail.matches(404, br#"{"detail":"Not found."}"#));
        assert!(!detail.matches(404, b"<h1>Not Found</h1>"));
        let status = AnswerMatch::status(404).with_body_field("/status", "404");
        assert!(status.matches(404, br#"{"status":404,"message":"x"}"#));
        let phrase = AnswerMatch::status(400).with_body_containing("already exists");
        assert!(phrase.matches(400, br#"{"id":["task with this id already exists."]}"#));
        assert!(!phrase.matches(400, br#"{"title":["This field is required."]}"#));
        assert!(AnswerMatch::status(410).matches(410, b""));
    }

    #[test]
    fn bodies_follow_the_shape() {
        let data = object(json!({"id": 7, "title": "a"}));
        let body =
            |shape: RequestShape, data: &JsonObject| shape.write_body(RequestKind::Create, data, None).0;
        assert_eq!(
            body(RequestShape::json_server(), &data),
            json!({"id": "7", "title": "a"})
        );
        let text = object(json!({"id": "7"}));
        assert_eq!(
            body(RequestShape::rest().id_type(IdType::Number), &text),
            json!({"id": 7})
        );
        assert_eq!(
            body(
                RequestShape::rest().id_type(IdType::Number),
                &object(json!({"id": "x7"}))
            ),
            json!({"id": "x7"})
        );
        assert_eq!(
            body(
                RequestShape::rest().body(BodyShape::Wrapped("data".into())),
                &text
            ),
            json!({"data": {"id": "7"}})
        );
        assert_eq!(body(RequestShape::rest(), &data), json!({"id": 7, "title": "a"}));
        // PocketBase refuses the key in a patch.
        assert_eq!(
            RequestShape::pocketbase()
                .write_body(RequestKind::Update, &data, None)
                .0,
            json!({"title": "a"})
        );
    }

    #[test]
    fn updates_patch_only_what_changed_since_the_servers_copy() {
        let shape = RequestShape::rest()
            .method(RequestKind::Update, HttpMethod::Patch)
            .body(BodyShape::MergePatch);
        let base =
            object(json!({"id": "7", "title": "a", "tags": {"x": 1, "y": 2}, "gone": true, "same": 1}));
        let data = object(json!({"id": "7", "title": "b", "tags": {"x": 1, "y": 3}, "same": 1, "new": [1]}));
        assert_eq!(
            shape.write_body(RequestKind::Update, &data, Some(&base)),
            (
                json!({"title": "b", "tags": {"y": 3}, "gone": null, "new": [1]}),
                true
            )
        );
        // No copy known, or a create: the whole document.
        assert_eq!(
            shape.write_body(RequestKind::Update, &data, None),
            (Value::Object(data.clone()), false)
        );
        assert_eq!(
            shape.write_body(RequestKind::Create, &data, Some(&base)),
            (Value::Object(data), false)
        );
    }

    #[test]
    fn versions_come_from_strong_etags_or_the_named_field() {
        let rest = RequestShape::rest();
        assert_eq!(rest.version_in(Some("\"3\""), None), Some("\"3\"".to_owned()));
        assert_eq!(
            rest.version_in(Some("W/\"3\""), None),
            None,
            "weak tags never match If-Match"
        );
        assert_eq!(rest.version_in(None, None), None);
        let field = RequestShape::rest().version(VersionSource::Field("rev".into()));
        let record = object(json!({"rev": 4}));
        assert_eq!(
            field.version_in(Some("\"3\""), Some(&record)),
            Some("\"4\"".to_owned())
        );
        let none = RequestShape::rest().version(VersionSource::None);
        assert_eq!(none.version_in(Some("\"3\""), Some(&record)), None);
    }

    #[test]
    fn records_are_found_where_the_shape_says() {
        let record = json!({"id": "1", "title": "a"});
        let directus = RequestShape::directus();
        assert_eq!(
            directus.record_in(json!({"data": record.clone()}), false),
            Ok(Some(object(record.clone())))
        );
        assert!(directus.record_in(json!({"success": true}), false).is_err());
        let postgrest = RequestShape::postgrest();
        assert_eq!(
            postgrest.record_in(json!([record.clone()]), true),
            Ok(Some(object(record.clone())))
        );
        assert_eq!(postgrest.record_in(json!([]), true), Ok(None));
        assert!(
            postgrest
                .record_in(json!([record.clone(), record.clone()]), true)
                .is_err()
        );
        assert!(postgrest.record_in(record.clone(), true).is_err());
        let nothing = RequestShape::rest().answer(AnswerShape::Nothing);
        assert!(nothing.record_in(record.clone(), false).is_err());
        assert_eq!(nothing.record_in(record.clone(), true), Ok(Some(object(record))));
    }

    #[test]
    fn only_the_record_itself_is_adopted() {
        let id: RecordId = "7".parse().unwrap();
        let shape = RequestShape::json_server();
        let sent = object(json!({"id": 7, "title": "a"}));
        // json-server answers the string it stored: the document keeps its
        // number.
        assert_eq!(
            shape.adoptable(object(json!({"id": "7", "title": "a", "at": 1})), &sent, &id),
            Some(object(json!({"id": 7, "title": "a", "at": 1})))
        );
        assert_eq!(
            shape.adoptable(object(json!({"id": "8", "title": "a"})), &sent, &id),
            None
        );
        assert_eq!(shape.adoptable(object(json!({"title": "a"})), &sent, &id), None);
        let keyed = RequestShape::rest().id_field("key");
        assert_eq!(
            keyed.adoptable(
                object(json!({"key": "7", "v": 2})),
                &object(json!({"key": "7"})),
                &id
            ),
            Some(object(json!({"key": "7", "v": 2})))
        );
        assert_eq!(
            keyed.adoptable(object(json!({"v": 2})), &object(json!({"v": 1})), &id),
            Some(object(json!({"v": 2})))
        );
    }
}
