//! The [`RequestShape`] presets: the default and one per server apps meet
//! most, each checked against that server's recorded answers
//! (`tests/servers/README.md`).

use crate::shape::{
    AnswerMatch, AnswerShape, BodyShape, HttpMethod, IdType, RequestShape, RequestSpec, VersionSource,
};

impl RequestShape {
    /// The default: `POST /{entity}`, `PUT /{entity}/{id}`,
    /// `DELETE /{entity}/{id}`, `GET /{entity}/{id}`; the whole document as
    /// the body and the whole answer as the record; 404 and 410 mean
    /// absent, a 409 to a create means the id is taken; the id field is
    /// `id`. The reference server's shape.
    #[must_use]
    pub fn rest() -> Self {
        let absent = || [AnswerMatch::status(404), AnswerMatch::status(410)];
        let mut create = RequestSpec::new(HttpMethod::Post, "/{entity}");
        create.already_exists = vec![AnswerMatch::status(409)];
        Self {
            name: "rest",
            create,
            update: RequestSpec::new(HttpMethod::Put, "/{entity}/{id}").absent(absent()),
            delete: RequestSpec::new(HttpMethod::Delete, "/{entity}/{id}").absent(absent()),
            fetch: RequestSpec::new(HttpMethod::Get, "/{entity}/{id}").absent(absent()),
            body: BodyShape::Document,
            answer: AnswerShape::Document,
            id_field: sync_core::answer::ID_FIELD.to_owned(),
            id_type: IdType::AsSent,
            version: VersionSource::ETag,
            omit_id_on_update: false,
            lookup: crate::lookup::LookupShape::default(),
        }
    }

    /// json-server (1.0): the default routes, with ids sent as strings,
    /// since json-server stores a numeric id as a number but matches the
    /// id in a URL as a string (a numeric id would never be found again,
    /// and every edit would re-create the record). It never answers
    /// "already exists" (it keeps duplicate ids), so a create that may
    /// have been applied is always checked with a `GET` first.
    ///
    /// json-server assigns an id itself (a 4-hex-digit string) to a record
    /// posted without one, and filters lists by any field
    /// (`GET /tasks?client_ref=...`), so
    /// `RequestShape::json_server().local_id_field("client_ref")` serves
    /// server-assigned ids: records created under a temporary id are
    /// posted without an id, with the temporary id in `client_ref`, and a
    /// create whose answer was lost is found by it
    /// ([`Self::local_id_field`]).
    #[must_use]
    pub fn json_server() -> Self {
        let mut shape = Self::rest().id_type(IdType::String);
        shape.name = "json-server";
        shape
    }

    /// Django REST framework's router: `/{entity}/` and `/{entity}/{id}/`
    /// (trailing slashes: without one, Django answers a write with a
    /// redirect that drops its body), `PUT` updates; a missing record is
    /// a 404 with a `detail` field (a wrong route's 404 is an HTML page and
    /// proves nothing); a taken id is a 400 saying "already exists". The
    /// model's key must be a client-set field for the app's ids to be kept.
    ///
    /// For server-assigned ids (an auto-increment key), set a local-id
    /// field ([`Self::local_id_field`]) that the model stores and the view
    /// can filter by (django-filter's `filterset_fields`: without it, DRF
    /// ignores the query and lists everything, which the lookup refuses),
    /// and, when the list is paginated, `lookup_results("/results")`
    /// ([`Self::lookup_results`]).
    #[must_use]
    pub fn django_rest_framework() -> Self {
        let absent = || [AnswerMatch::status(404).with_body_field_present("/detail")];
        let mut create = RequestSpec::new(HttpMethod::Post, "/{entity}/");
        create.already_exists = vec![AnswerMatch::status(400).with_body_containing("already exists")];
        Self {
            name: "django-rest-framework",
            create,
            update: RequestSpec::new(HttpMethod::Put, "/{entity}/{id}/").absent(absent()),
            delete: RequestSpec::new(HttpMethod::Delete, "/{entity}/{id}/").absent(absent()),
            fetch: RequestSpec::new(HttpMethod::Get, "/{entity}/{id}/").absent(absent()),
            ..Self::rest()
        }
    }

    /// PocketBase, with the base URL ending in `/api/collections`:
    /// `/{entity}/records` and `/{entity}/records/{id}`, `PATCH` updates
    /// (PocketBase has no `PUT`) without the id in the body (it refuses a
    /// primary key in a patch); a missing record is a 404 with its JSON
    /// error body; a taken id is a 400 whose `data.id.code` is
    /// `validation_not_unique`. Ids must be 15 lowercase letters and digits.
    #[must_use]
    pub fn pocketbase() -> Self {
        // PocketBase's own "Missing collection context." and "File not
        // found." 404s name a wrong route, not a missing record.
        let absent =
            || [AnswerMatch::status(404).with_body_field("/message", "The requested resource wasn't found.")];
        let mut create = RequestSpec::new(HttpMethod::Post, "/{entity}/records");
        create.already_exists =
            vec![AnswerMatch::status(400).with_body_field("/data/id/code", "validation_not_unique")];
        Self {
            name: "pocketbase",
            create,
            update: RequestSpec::new(HttpMethod::Patch, "/{entity}/records/{id}").absent(absent()),
            delete: RequestSpec::new(HttpMethod::Delete, "/{entity}/records/{id}").absent(absent()),
            fetch: RequestSpec::new(HttpMethod::Get, "/{entity}/records/{id}").absent(absent()),
            omit_id_on_update: true,
            ..Self::rest()
        }
    }

    /// Directus, with the base URL ending in `/items`: `/{entity}` and
    /// `/{entity}/{id}`, `PATCH` updates (Directus has no `PUT`), every
    /// answer wrapped in `{"data": ...}`. Directus never says 404 for a
    /// record: a `GET` of a missing one is a 403 `FORBIDDEN` (read as
    /// absent), a `PATCH` of a missing one a 204 with no body (a real update
    /// answers 200 with the record), and a `DELETE` answers 204 whether the
    /// record was there or not (so a delete is done either way; 11.x; a
    /// 403 to a delete, which Directus 12 gives for a missing record but
    /// also for a token without the right, is a permanent error, not done).
    /// A taken id is a 400
    /// `RECORD_NOT_UNIQUE`. Give the token with a default `Authorization`
    /// header or an auth hook.
    #[must_use]
    pub fn directus() -> Self {
        let code = "/errors/0/extensions/code";
        let forbidden = || AnswerMatch::status(403).with_body_field(code, "FORBIDDEN");
        let mut create = RequestSpec::new(HttpMethod::Post, "/{entity}");
        create.already_exists = vec![AnswerMatch::status(400).with_body_field(code, "RECORD_NOT_UNIQUE")];
        Self {
            name: "directus",
            create,
            update: RequestSpec::new(HttpMethod::Patch, "/{entity}/{id}")
                .absent([AnswerMatch::status(204), forbidden()]),
            // No "absent" answer for a delete: Directus 11 answers 204 either
            // way, and a 403 may as well be a token without the right, which
            // must not count as done.
            delete: RequestSpec::new(HttpMethod::Delete, "/{entity}/{id}"),
            fetch: RequestSpec::new(HttpMethod::Get, "/{entity}/{id}").absent([forbidden()]),
            answer: AnswerShape::Pointer("/data".to_owned()),
            ..Self::rest()
        }
    }

    /// PostgREST and APIs shaped like it: rows filtered by query
    /// (`/{entity}?id=eq.{id}`), `PATCH` updates, answers are arrays (an
    /// empty one means no such row), and every write asks for the row back
    /// with `Prefer: return=representation` (so an update or delete of a
    /// missing row is told apart from a done one). A taken id is a 409.
    #[must_use]
    pub fn postgrest() -> Self {
        let represent = || vec![("Prefer".to_owned(), "return=representation".to_owned())];
        let mut create = RequestSpec::new(HttpMethod::Post, "/{entity}");
        create.headers = represent();
        create.already_exists = vec![AnswerMatch::status(409)];
        let mut update = RequestSpec::new(HttpMethod::Patch, "/{entity}?id=eq.{id}");
        update.headers = represent();
        let mut delete = RequestSpec::new(HttpMethod::Delete, "/{entity}?id=eq.{id}");
        delete.headers = represent();
        Self {
            name: "postgrest",
            create,
            update,
            delete,
            fetch: RequestSpec::new(HttpMethod::Get, "/{entity}?id=eq.{id}"),
            answer: AnswerShape::FirstOfArray,
            ..Self::rest()
        }
    }
}
