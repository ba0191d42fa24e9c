//! The API's OpenAPI 3 document, generated from the code: every handler carries its
//! operation (`#[utoipa::path]`: parameters, bodies, answers, links to the operations
//! that take what it returns), and the types below describe the bodies and parameters,
//! with every constraint the handlers enforce. Served at `GET /v1/openapi.json` and
//! printed by `vaultd openapi`; `tests/api.rs` holds it to [`super::ROUTES`] both ways.
//!
//! Most handlers read their bodies as JSON objects (Databunker's bodies are free-form),
//! so the body types here describe them rather than parse them.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse, ToSchema};
use uuid::Uuid;

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::to_string_pretty(&value()).unwrap_or_else(|_| "{}".into()))
}

/// The document as a JSON value: utoipa's, mended where utoipa 5 cannot say what the
/// handlers do (optional bodies, forms, `X-Purpose`, [`amend`]) or says it wrongly.
pub fn value() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
            if let Some(body) = operation.get_mut("requestBody") {
                optional_body(body);
                named_form_fields(body);
            }
            bad_purpose(operation);
            failed_auth_limited(operation);
            storage_full(operation);
            let responses = operation.get_mut("responses").and_then(Value::as_object_mut);
            for response in responses.into_iter().flat_map(|r| r.values_mut()) {
                let links = response.get_mut("links").and_then(Value::as_object_mut);
                for link in links.into_iter().flat_map(|l| l.values_mut()).filter_map(Value::as_object_mut) {
                    // utoipa 5 writes a link's `operationId` as `operation_id`.
                    if let Some(id) = link.remove("operation_id") {
                        link.insert("operationId".into(), id);
                    }
                }
            }
        }
    }
    amend(&mut document);
    document
}

/// What `str::trim` removes (Unicode White_Space), as the body of a regex class.
const WS: &str = r"\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// What the derives cannot say: constraints across fields, and two utoipa 5 slips
/// (`min_properties` written as `maxProperties`; no `propertyNames`). Each is a JSON merge
/// patch (RFC 7396) onto a component schema.
fn amend(document: &mut Value) {
    // Text that `str::trim` does not empty; ECMA's `\S` differs from Unicode White_Space.
    let not_blank = format!("[^{WS}]");
    let lookup = |field: &str| json!({"required": [field], "properties": {field: {"anyOf": [{"type": "string", "pattern": not_blank}, {"type": "number"}]}}});
    let form_lookup = |field: &str| json!({"required": [field], "properties": {field: {"pattern": not_blank}}});
    let part = format!("[{WS}]*[^,{WS}](?:[^,]{{0,126}}[^,{WS}])?[{WS}]*");
    let field_list = format!("^{part}(?:,{part}){{0,63}}$");
    let lookup_field = json!({"type": ["string", "number", "null"]});
    let pointer = "^(/([^~/]|~[01])*)*$";
    let no_control = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
    let field_name = json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": no_control});
    let patches = [
        // A subject needs a non-empty login, email, phone or custom (a string or a number).
        (
            "Profile",
            json!({
                "maxProperties": null, "minProperties": 1,
                "properties": {"login": lookup_field, "email": lookup_field, "phone": lookup_field, "custom": lookup_field},
                "anyOf": [lookup("login"), lookup("email"), lookup("phone"), lookup("custom")],
            }),
        ),
        ("SessionBody", json!({"maxProperties": null, "minProperties": 1})),
        // RFC 6902: `path` and `from` are JSON pointers; each op takes what it needs.
        (
            "PatchOperation",
            json!({
                "properties": {"path": {"pattern": pointer}, "from": {"pattern": pointer}},
                "allOf": [
                    {"if": {"properties": {"op": {"enum": ["add", "replace", "test"]}}}, "then": {"required": ["value"]}},
                    {"if": {"properties": {"op": {"enum": ["move", "copy"]}}}, "then": {"required": ["from"]}},
                ],
            }),
        ),
        ("FormRecord", json!({"minProperties": 1, "propertyNames": {"minLength": 1}})),
        (
            "ProfileForm",
            json!({
                "minProperties": 1,
                "propertyNames": {"minLength": 1},
                "anyOf": [form_lookup("login"), form_lookup("email"), form_lookup("phone"), form_lookup("custom")],
            }),
        ),
        // Scopes, or a subject (then no scopes).
        (
            "TokenRequest",
            json!({"anyOf": [
                {"required": ["scopes"], "properties": {"scopes": {"minItems": 1}, "subject": {"type": "null"}}},
                {"required": ["subject"], "properties": {"subject": {"type": "string"}, "scopes": {"maxItems": 0}}},
            ]}),
        ),
        // 1-64 field names of 1-128 characters (trimmed), comma-separated or a list.
        (
            "FieldList",
            json!({"oneOf": [
                {"type": "string", "pattern": field_list},
                {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "string", "maxLength": 128, "pattern": not_blank}},
            ]}),
        ),
        // An app record or a session, not both (an empty app names none).
        (
            "ShareRequest",
            json!({
                "not": {"required": ["app", "session"], "properties": {"app": {"minLength": 1}}},
                "properties": {
                    "app": {"pattern": "^([A-Za-z][A-Za-z0-9_-]{0,63})?$"},
                    "partner": {"pattern": no_control},
                },
            }),
        ),
        // Each action takes what it needs and nothing else.
        (
            "RetentionRule",
            json!({
                "properties": {
                    "fields": {"maxItems": 64, "items": field_name},
                    "match": {"properties": {
                        "hasFields": {"maxItems": 64, "items": field_name},
                        "app": {"pattern": "^[a-z][a-z0-9_-]{0,63}$"},
                    }},
                },
                "allOf": [
                    {"if": {"properties": {"action": {"enum": ["dropFields", "pseudonymize"]}}},
                     "then": {"required": ["fields"], "properties": {"fields": {"minItems": 1}}},
                     "else": {"properties": {"fields": {"maxItems": 0}}}},
                    {"if": {"properties": {"action": {"const": "deleteApp"}}},
                     "then": {"properties": {"match": {"required": ["app"]}}}},
                    {"if": {"properties": {"action": {"const": "startExpiration"}}},
                     "then": {"required": ["expiration"]},
                     "else": {"not": {"required": ["expiration"]}}},
                ],
            }),
        ),
    ];
    let Some(schemas) = document.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else { return };
    for (name, patch) in patches {
        if let Some(schema) = schemas.get_mut(name) {
            json_patch::merge(schema, &patch);
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strongroom vault API",
        description = r#"Encrypted, audited storage for personal data, compatible with the Databunker v1 API, plus Strongroom's own `/v1/sys/...` routes.

Authenticate with the root token or a scoped access token in the `X-Bunker-Token` header; each operation's description names the scope it requires (a token holding `*`, or a pattern such as `users:*` or `apps:*:read`, covers it). Optionally say why the data is accessed in `X-Purpose`; it is recorded in the audit event.

Every response is a JSON envelope: `{"status":"ok", ...}` with the payload fields beside `status`, or `{"status":"error","message":"..."}` with a fitting 4xx or 5xx code. Unknown routes are 404; a method a route does not serve is 405 with an `Allow` header naming those it does, in the same error envelope. Every route also answers with a trailing slash."#,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://localhost:3000", description = "`vaultd demo` (root token `DEMO`)")),
    security(("BunkerToken" = [])),
    tags(
        (name = "users", description = "Data subjects' profiles"),
        (name = "apps", description = "Per-application records of a subject, kept apart from the profile"),
        (name = "sessions", description = "Session records (an IP address, a user agent) under an id that logs can carry instead"),
        (name = "sharing", description = "Shared records: chosen fields of one subject, readable with the record id until it ends"),
        (name = "consent", description = "Legal bases, subjects' agreements to them, and processing activities"),
        (name = "requests", description = "Changes a subject asked for with its own token, awaiting a DPO's decision"),
        (name = "audit", description = "The hash-chained audit trail"),
        (name = "tokens", description = "Scoped access tokens"),
        (name = "expiration", description = "Databunker's expiration flow: a countdown after which a subject's data is forgotten unless the subject retains it"),
        (name = "retention", description = "Retention policies: scheduled, audited data minimisation"),
        (name = "cluster", description = "Membership and replication state of the Raft cluster"),
        (name = "backup", description = "Backups, and the erasure ledger that keeps a restored backup from bringing erased data back"),
        (name = "system", description = "Status, metrics and this document; no token needed"),
    ),
    paths(
        super::users::create,
        super::users::get,
        super::users::update,
        super::users::forget,
        super::users::list,
        super::apps::create,
        super::apps::update,
        super::apps::get,
        super::apps::delete,
        super::apps::list_for_user,
        super::apps::names,
        super::sessions::create,
        super::sessions::get,
        super::sessions::delete,
        super::sessions::for_user,
        super::consent::list_bases,
        super::consent::put_basis,
        super::consent::delete_basis,
        super::consent::accept,
        super::consent::withdraw,
        super::consent::get_agreement,
        super::consent::revoke_all,
        super::consent::list_agreements,
        super::consent::list_activities,
        super::consent::put_activity,
        super::consent::delete_activity,
        super::consent::link,
        super::consent::unlink,
        super::subject_requests::list,
        super::subject_requests::for_user,
        super::subject_requests::get,
        super::subject_requests::approve,
        super::subject_requests::cancel,
        super::shares::create,
        super::shares::get,
        super::expiration::start,
        super::expiration::status,
        super::expiration::cancel,
        super::expiration::retain,
        super::expiration::delete,
        super::audit::all,
        super::audit::for_subject,
        super::audit::event,
        super::audit::verify,
        super::tokens::create,
        super::tokens::list,
        super::tokens::revoke,
        super::tokens::retire_root,
        super::retention::run,
        super::retention::runs,
        super::backup::backup,
        super::backup::erasures,
        super::cluster::status,
        super::cluster::init,
        super::cluster::add_learner,
        super::cluster::promote,
        super::cluster::remove,
        super::system::status,
        super::system::metrics_v1,
        super::system::metrics,
        super::system::openapi
    ),
    components(responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        TooManyRequests,
        InternalError,
        Unavailable,
        InsufficientStorage
    )),
    modifiers(&BunkerToken),
)]
struct ApiDoc;

/// utoipa writes an optional body (`Option<T>`) as "`null` or T"; what the handlers
/// take is no body or T.
fn optional_body(body: &mut Value) {
    let mut optional = false;
    let contents = body.get_mut("content").and_then(Value::as_object_mut);
    for content in contents.into_iter().flat_map(|c| c.values_mut()) {
        let Some(schema) = content.get_mut("schema") else { continue };
        let Some(choices) = schema.get("oneOf").and_then(Value::as_array) else { continue };
        let null = json!({"type": "null"});
        if choices.len() == 2 && choices.contains(&null) {
            let other = choices.iter().find(|choice| **choice != null).cloned().unwrap_or_default();
            *schema = other;
            optional = true;
        }
    }
    if optional {
        body["required"] = json!(false);
    }
}

/// A form's fields must have names (`Body::object`).
fn named_form_fields(body: &mut Value) {
    if let Some(schema) = body.pointer_mut("/content/application~1x-www-form-urlencoded/schema") {
        *schema = json!({"allOf": [schema.take()], "propertyNames": {"minLength": 1}});
    }
}

/// A malformed `X-Purpose` is 400 wherever it is read.
fn bad_purpose(operation: &mut Value) {
    let parameters = operation.get("parameters").and_then(Value::as_array);
    let reads_purpose = parameters.is_some_and(|p| p.iter().any(|p| p["name"] == "X-Purpose"));
    if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
        if reads_purpose && !responses.contains_key("400") {
            responses.insert("400".into(), json!({"$ref": "#/components/responses/BadRequest"}));
        }
    }
}

/// Wherever a token is checked, failed authentications are rate-limited per address.
fn failed_auth_limited(operation: &mut Value) {
    if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
        if responses.contains_key("401") && !responses.contains_key("429") {
            responses.insert("429".into(), json!({"$ref": "#/components/responses/TooManyRequests"}));
        }
    }
}

/// Whatever may answer 503 goes through the cluster, and so may meet a nearly full disk.
fn storage_full(operation: &mut Value) {
    if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
        let unavailable = json!({"$ref": "#/components/responses/Unavailable"});
        if responses.get("503") == Some(&unavailable) && !responses.contains_key("507") {
            responses.insert("507".into(), json!({"$ref": "#/components/responses/InsufficientStorage"}));
        }
    }
}

/// The `X-Bunker-Token` security scheme.
struct BunkerToken;

impl Modify for BunkerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "BunkerToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Bunker-Token",
                "The root token or a scoped access token created through `/v1/sys/tokens`",
            ))),
        );
    }
}

/// The error answers, each a reusable response with the error envelope.
macro_rules! error_responses {
    ($($name:ident: $description:literal, $example:expr;)*) => {$(
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                let mut content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorReply")));
                if let Some(message) = $example {
                    content = content.example(Some(json!({"status": "error", "message": message})));
                }
                let response = ResponseBuilder::new().description($description).content("application/json", content.build());
                (stringify!($name), response.build().into())
            }
        }
    )*};
}

error_responses! {
    BadRequest: "Malformed input: unknown mode, malformed identifier, token or node id, invalid app name, malformed or empty body, invalid paging or query parameter, or a bad `X-Purpose` header", Some("unknown mode: use token, login, email, phone or custom");
    Unauthorized: "`X-Bunker-Token` is missing or not a valid token", Some("missing or malformed X-Bunker-Token");
    Forbidden: "The token lacks the required scope, or the feature is disabled on this vault", Some("token lacks scope users:write");
    NotFound: "No such subject, record, event, token or cluster member", Some("record not found");
    Conflict: "A unique identifier is taken, the record changed concurrently (retry), a per-person limit is reached (100 open requests; 100 each of app records, sessions and shares started by a subject token), another backup is being sent from this node, or the cluster's membership does not allow the change", Some("duplicate email");
    PayloadTooLarge: "The request body exceeds the configured limit (default 1 MiB)", Some("request body exceeds 1048576 bytes");
    TooManyRequests: "Over a rate limit: this client address's requests without a token (`--anonymous-requests-per-minute`) or failed authentications (`--failed-auth-per-minute`), or this subject token's requests (`--subject-token-requests-per-minute`); `Retry-After` says when to try again", Some("too many requests; retry later");
    InternalError: "A storage or key operation failed; no details are disclosed", Some("storage failure");
    Unavailable: "The vault cannot serve the request right now: it is not initialised, this node has not joined a cluster, the cluster has no leader (no quorum), a write was not confirmed by a quorum in time (its outcome is unknown), or this node's storage failed and it needs a restart", None::<&str>;
    InsufficientStorage: "The disk of this node or of the leader is nearly full: writes are refused (reads and erasures go on until half the reserve is used too) and are accepted again once space is freed; nothing was written", Some("the vault's storage is full: writes are refused until space is freed");
}

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/// How `id` identifies the subject.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Token,
    Login,
    Email,
    Phone,
    Custom,
}

/// `{mode}/{id}`: one subject.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SubjectPath {
    #[param(inline)]
    pub mode: Mode,
    /// The subject's token (a UUID) for mode `token`; otherwise the login, email, phone or custom identifier. Emails are compared trimmed and lowercased, phones in E.164.
    #[param(
        min_length = 1,
        pattern = r"[^\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub id: String,
}

/// `{mode}/{id}/{app}`: one subject's record of one app.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppRecordPath {
    #[param(inline)]
    pub mode: Mode,
    /// The subject's token (a UUID) for mode `token`; otherwise the login, email, phone or custom identifier.
    #[param(
        min_length = 1,
        pattern = r"[^\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub id: String,
    /// App name: 1-64 letters, digits, `-` or `_`, starting with a letter; lower-cased first
    #[param(pattern = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
    pub app: String,
}

/// `{brief}/{mode}/{id}`: one subject's agreement to one legal basis.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgreementPath {
    /// A legal basis's short name (trimmed and lower-cased; 1-64 of a-z, 0-9, '-')
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9-]{1,64}[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub brief: String,
    #[param(inline)]
    pub mode: Mode,
    /// The subject's token (a UUID) for mode `token`; otherwise the login, email, phone or custom identifier. An email or phone that is no subject yet may agree (consent before sign-up).
    #[param(
        min_length = 1,
        pattern = r"[^\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub id: String,
}

/// `{brief}`: a legal basis.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BriefPath {
    /// A legal basis's short name (trimmed and lower-cased; 1-64 of a-z, 0-9, '-')
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9-]{1,64}[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub brief: String,
}

/// `{activity}`: a processing activity.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ActivityPath {
    /// A processing activity's short name (trimmed and lower-cased; 1-64 of a-z, 0-9, '-')
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9-]{1,64}[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub activity: String,
}

/// `{activity}/{brief}`: a legal basis of a processing activity.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ActivityBriefPath {
    /// A processing activity's short name (trimmed and lower-cased; 1-64 of a-z, 0-9, '-')
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9-]{1,64}[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub activity: String,
    /// A legal basis's short name (trimmed and lower-cased; 1-64 of a-z, 0-9, '-')
    #[param(
        pattern = r"^[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9-]{1,64}[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub brief: String,
}

macro_rules! uuid_path {
    ($($name:ident { $field:ident: $description:literal })*) => {$(
        #[doc = concat!("`{", stringify!($field), "}`")]
        #[derive(IntoParams)]
        #[into_params(parameter_in = Path)]
        pub struct $name {
            #[doc = $description]
            pub $field: Uuid,
        }
    )*};
}

uuid_path! {
    SessionPath { session: "The session id, chosen by the caller" }
    RecordPath { record: "The shared record id handed out by `POST /v1/sharedrecord`: the partner's credential" }
    RequestPath { rtoken: "The request's id" }
    ExptokenPath { exptoken: "The exptoken handed out by `/v1/exp/start`: the subject's credential for retain and delete" }
    SubjectTokenPath { token: "The subject's token" }
    AuditEventPath { atoken: "The audit event's id" }
}

/// `{id}` of an access token.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenIdPath {
    /// The access token's id (`tok-...`), not its secret
    #[param(
        min_length = 1,
        pattern = r"[^\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub id: String,
}

/// `{id}` of a cluster member.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePath {
    /// The member's node id
    #[param(minimum = 1)]
    pub id: u64,
}

/// `X-Purpose`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct Purpose {
    /// Why the data is accessed; recorded in the audit event. At most 128 printable ASCII characters (400 otherwise).
    #[param(rename = "X-Purpose", required = false, max_length = 128, pattern = r"^[ -~]*$")]
    pub purpose: String,
}

/// `?status=` of `GET /v1/requests`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestStatusQuery {
    /// Only requests in this state: `open`, `approved` or `cancelled` (also spelt
    /// `canceled`); empty or absent, every state
    #[param(pattern = "^(open|approved|cancelled|canceled)?$")]
    pub status: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------

/// `"ok"`
#[derive(Serialize, ToSchema)]
pub enum OkStatus {
    #[serde(rename = "ok")]
    Ok,
}

/// `"error"`
#[derive(Serialize, ToSchema)]
pub enum ErrorStatus {
    #[serde(rename = "error")]
    Error,
}

/// The success envelope; each operation adds its payload fields beside `status`.
#[derive(Serialize, ToSchema)]
pub struct OkReply {
    pub status: OkStatus,
}

/// The error envelope, returned with every 4xx and 5xx code (including unknown routes, 404, and wrong methods, 405).
#[derive(Serialize, ToSchema)]
pub struct ErrorReply {
    pub status: ErrorStatus,
    /// What went wrong. Never contains personal data or secrets.
    pub message: String,
}

/// The answer of a broken audit chain.
#[derive(Serialize, ToSchema)]
pub struct VerifyFailure {
    pub status: ErrorStatus,
    pub message: String,
    pub verification: Verification,
}

/// A JSON object of the caller's choosing.
#[derive(Serialize, ToSchema)]
pub struct Record(pub Map<String, Value>);

/// Form fields; every value is stored as a string. Fields must have names.
#[derive(Serialize, ToSchema)]
pub struct FormRecord(pub HashMap<String, String>);

/// An RFC 7396 merge object or an RFC 6902 patch array.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UpdateBody {
    /// RFC 7396 JSON merge patch
    Merge(Map<String, Value>),
    /// RFC 6902 JSON Patch
    Patch(Vec<PatchOperation>),
}

/// `users:read|write|*`, `apps:<app|*>:read|write|*`, `audit:read`, `tokens:admin`, `retention:run`, `cluster:admin`, `consent:admin`, `requests:admin` or `backup:read`. `*` in a segment covers any value of that segment.
#[derive(Serialize, ToSchema)]
#[schema(
    pattern = r"^(users:(read|write|\*)|apps:(\*|[a-z][a-z0-9_-]{0,63}):(read|write|\*)|audit:read|tokens:admin|retention:run|cluster:admin|consent:admin|requests:admin|backup:read)$"
)]
pub struct Scope(pub String);

/// An expiration: a count with a unit (`30s`, `12h`, `30d`, `6m`: months of 31 days), a bare count of seconds (`"3600"`, `3600`), or a Unix time in seconds (any count past the current time). Fractions of a second are cut off.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Expiration {
    Text(ExpirationText),
    Seconds(ExpirationSeconds),
}

/// `30s`, `12h`, `30d`, `6m`, `3600`, or empty (the maximum)
#[derive(Serialize, ToSchema)]
#[schema(pattern = r"^([0-9]{1,19}[smhd]?)?$")]
pub struct ExpirationText(pub String);

/// Seconds, or a Unix time; 0: the maximum
#[derive(Serialize)]
pub struct ExpirationSeconds(pub f64);

/// A number of seconds (at least 0; fractions are cut off): derives cannot give a
/// newtype a `minimum`.
macro_rules! seconds_schema {
    ($($name:ident: $description:literal;)*) => {$(
        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Number)
                    .minimum(Some(0))
                    .description(Some($description))
                    .into()
            }
        }

        impl ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
        }
    )*};
}

seconds_schema! {
    ExpirationSeconds: "Seconds, or a Unix time; 0: the maximum. Fractions are cut off.";
}

/// A point in time: a duration from now (`30d`; a count of at most six digits and `s`, `h`, `d` or `m`), or Unix seconds (a string or a number); empty: none.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Moment {
    Text(MomentText),
    Seconds(u64),
}

/// `30d` or Unix seconds; empty: none
#[derive(Serialize, ToSchema)]
#[schema(pattern = r"^([0-9]{1,6}[smhd]|[0-9]{1,19})?$")]
pub struct MomentText(pub String);

/// A flag: `true`/`false`, a number (above 0: true), or the text `true`, `yes`, `false`, `no`, empty or a number.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Number(f64),
    Text(FlagText),
}

/// `true`, `yes`, `false`, `no`, empty, or a number (above 0: true)
#[derive(Serialize, ToSchema)]
#[schema(pattern = r"^(true|yes|false|no|[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)?$")]
pub struct FlagText(pub String);

/// Comma-separated field names, or a list of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum FieldList {
    Csv(String),
    List(Vec<String>),
}

/// A profile as form fields (every value a string).
#[derive(Serialize, ToSchema)]
pub struct ProfileForm(pub HashMap<String, String>);

/// Any JSON document (this one).
#[derive(Serialize, ToSchema)]
pub struct Document(pub Map<String, Value>);

/// A subject's profile: any non-empty JSON object. The four identifier fields below, when present and not empty, are indexed (blind index) for lookup by `{mode}` and must be unique in the vault.
#[derive(Serialize, ToSchema)]
#[schema(min_properties = 1)]
pub struct Profile {
    /// Unique login; looked up with mode `login`
    #[schema(required = false)]
    pub login: String,
    /// Unique email, compared trimmed and lowercased; mode `email`
    #[schema(required = false)]
    pub email: String,
    /// Unique phone, normalised to E.164 with the vault's default country; mode `phone`
    #[schema(required = false)]
    pub phone: String,
    /// Unique custom identifier; mode `custom`
    #[schema(required = false)]
    pub custom: String,
}

/// One RFC 6902 JSON Patch operation.
#[derive(Serialize, ToSchema)]
pub struct PatchOperation {
    #[schema(inline)]
    pub op: PatchOperationOp,
    /// JSON Pointer (RFC 6901) to the target
    pub path: String,
    /// JSON Pointer to the source, for `move` and `copy`
    #[schema(required = false)]
    pub from: String,
    /// The value, for `add`, `replace` and `test`
    #[schema(required = false)]
    pub value: Value,
}

#[derive(Serialize, ToSchema)]
pub struct TokenReply {
    pub status: OkStatus,
    /// The subject's token
    pub token: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct DoneReply {
    pub status: OkStatus,
    #[schema(inline)]
    pub result: DoneReplyResult,
}

#[derive(Serialize, ToSchema)]
pub struct DoneTokenReply {
    pub status: OkStatus,
    #[schema(inline)]
    pub result: DoneTokenReplyResult,
    /// The subject's token; null when an agreement-only identifier (consent before sign-up) was forgotten
    pub token: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct UserReply {
    pub status: OkStatus,
    /// The subject's token
    pub token: Uuid,
    /// The profile; `{}` for a forgotten subject
    pub data: Record,
}

#[derive(Serialize, ToSchema)]
pub struct UserListReply {
    pub status: OkStatus,
    /// Active subjects in all
    #[schema(minimum = 0)]
    pub total: i64,
    #[schema(inline)]
    pub rows: Vec<UserListReplyRowsItem>,
}

#[derive(Serialize, ToSchema)]
pub struct AppReply {
    pub status: OkStatus,
    /// The subject's token
    pub token: Uuid,
    pub app: String,
    pub data: Record,
}

#[derive(Serialize, ToSchema)]
pub struct UserAppsReply {
    pub status: OkStatus,
    /// The subject's token
    pub token: Uuid,
    pub apps: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AppNamesReply {
    pub status: OkStatus,
    pub apps: Vec<String>,
}

/// One access to personal data, hash-chained to the one before. Names the actor by token id and the lookup by its mode only: never the identifier looked up, profile fields or secrets.
#[derive(Serialize, ToSchema)]
pub struct AuditEvent {
    /// Position in the chain, from 1
    #[schema(minimum = 1)]
    pub seq: i64,
    /// The event's id (Databunker's `atoken`); a version-8 UUID derived from `seq` and `hash`
    pub id: Uuid,
    /// Milliseconds since the Unix epoch
    pub time: i64,
    /// `root`, `system` or an access token id (`tok-...`)
    pub actor: String,
    /// What happened, e.g. `user-read`, `app-update`, `consent-accept`, `activity-change`, `retention-drop-fields`
    pub operation: String,
    /// The subject's token; absent when none was resolved
    #[schema(required = false)]
    pub subject: Uuid,
    /// `seq` of the subject's previous event; absent for its first (and for events without a subject). Covered by `hash`
    #[schema(minimum = 1, required = false)]
    pub subject_prev: i64,
    /// The app, for app-record operations
    #[schema(required = false)]
    pub app: String,
    /// How the subject was looked up: `token`, `login`, `email`, `phone`, `custom`, or `record` (a shared record's id)
    #[schema(required = false)]
    pub mode: String,
    /// From the caller's `X-Purpose` header
    #[schema(required = false)]
    pub purpose: String,
    /// `ok`, `not-found` or `rejected: <reason>` (e.g. `rejected: duplicate email`)
    pub result: String,
    /// Hash of the previous event (hex SHA-256; 64 zeros for the first)
    #[schema(pattern = r#"^[0-9a-f]{64}$"#)]
    pub prev: String,
    /// SHA-256 over this event with `hash` empty and `id` nil (hex)
    #[schema(pattern = r#"^[0-9a-f]{64}$"#)]
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditListReply {
    pub status: OkStatus,
    /// Events in all (before paging)
    #[schema(minimum = 0)]
    pub total: i64,
    /// Newest first
    pub rows: Vec<AuditEvent>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventReply {
    pub status: OkStatus,
    pub event: AuditEvent,
}

/// The result of walking the audit chain.
#[derive(Serialize, ToSchema)]
pub struct Verification {
    pub intact: bool,
    /// Events verified
    #[schema(minimum = 0)]
    pub events: i64,
    /// Sequence number of the first event that does not verify; only when broken
    #[schema(required = false)]
    pub broken_at: i64,
    /// Why the chain breaks there; only when broken
    #[schema(required = false)]
    pub reason: String,
    /// The recorded hash of the chain's last event
    pub head: String,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyReply {
    pub status: OkStatus,
    pub verification: Verification,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// 1-64 printable characters (trimmed)
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// Each must be held by the caller itself (403 otherwise). Required unless `subject` is given; must then be absent or empty.
    #[schema(required = false)]
    pub scopes: Vec<Scope>,
    /// Makes a subject token (self-service): it reaches only this subject's own data (profile, app records, sessions, agreements, shares, expiration), with `users:*` and `apps:*:*` limited to that subject; any other subject is 403 (an unknown subject 404).
    #[schema(required = false)]
    pub subject: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedTokenReply {
    pub status: OkStatus,
    /// The token's id, recorded as `actor` in audit events
    #[schema(pattern = r#"^tok-[0-9a-f]{16}$"#)]
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The secret for `X-Bunker-Token`; shown only this once
    #[schema(pattern = r#"^sr_[0-9a-f]{64}$"#)]
    pub token: String,
    /// The subject of a subject token
    #[schema(required = false)]
    pub subject: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct AccessToken {
    #[schema(pattern = r#"^tok-[0-9a-f]{16}$"#)]
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Milliseconds since the Unix epoch
    pub created: i64,
    /// The subject of a subject token
    #[schema(required = false)]
    pub subject: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct TokenListReply {
    pub status: OkStatus,
    pub tokens: Vec<AccessToken>,
}

#[derive(Serialize, ToSchema)]
pub struct StatusReply {
    pub status: OkStatus,
    /// vaultd's version
    pub version: String,
    /// Label of the key encryption key in use
    pub kek: String,
    /// Whether `POST /v1/users` is enabled
    #[serde(rename = "bulkListEnabled")]
    pub bulk_list_enabled: bool,
    /// This node's place in the cluster
    pub node: NodeSummary,
    pub storage: StorageState,
}

/// The state of this node's data directory. `ok`; `full`: less free space than the reserve, writes are refused with 507 until space is freed; `failed`: a storage failure stopped this node's Raft core, and it needs a restart.
#[derive(Serialize, ToSchema)]
pub struct StorageState {
    pub state: StorageCondition,
    /// Bytes still free on the data directory's file system (absent when `failed` or when the guard is off)
    #[serde(rename = "freeBytes")]
    #[schema(required = false, minimum = 0)]
    pub free_bytes: i64,
    /// The reserve below which writes are refused (`--min-free-bytes`)
    #[serde(rename = "minFreeBytes")]
    #[schema(required = false, minimum = 0)]
    pub min_free_bytes: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageCondition {
    Ok,
    Full,
    Failed,
}

/// A node's Raft role as seen by that node. `uninitialized`: not (yet) part of a cluster, waiting for `POST /v1/sys/cluster/init` or to be added as a learner. `shutdown`: Raft stopped after a fatal error; the node must be restarted.
#[derive(Serialize, ToSchema)]
pub enum NodeState {
    #[serde(rename = "uninitialized")]
    Uninitialized,
    #[serde(rename = "leader")]
    Leader,
    #[serde(rename = "follower")]
    Follower,
    #[serde(rename = "learner")]
    Learner,
    #[serde(rename = "candidate")]
    Candidate,
    #[serde(rename = "shutdown")]
    Shutdown,
}

/// A node's id, Raft role and the leader it knows of.
#[derive(Serialize, ToSchema)]
pub struct NodeSummary {
    /// This node's id; null until it joins a cluster
    #[schema(minimum = 1)]
    pub id: Option<i64>,
    pub state: NodeState,
    /// The current leader's id; null when none is known
    #[schema(minimum = 1)]
    pub leader: Option<i64>,
}

/// One member of the cluster. `matchedIndex`, `lag` and `healthy` are the leader's view and are null when the answering node is not the leader.
#[derive(Serialize, ToSchema)]
pub struct Member {
    /// The member's node id
    #[schema(minimum = 1)]
    pub id: i64,
    /// `host:port` of the node's peer (Raft) listener
    #[serde(rename = "raftAddress")]
    pub raft_address: String,
    /// Base URL of the node's API, e.g. `http://vault-1.vault-headless:3000`
    #[serde(rename = "apiAddress")]
    pub api_address: String,
    /// A voter; otherwise a learner
    pub voter: bool,
    /// The last log index the leader knows the member has
    #[serde(rename = "matchedIndex")]
    #[schema(minimum = 0)]
    pub matched_index: Option<i64>,
    /// Log entries the member is behind the leader
    #[schema(minimum = 0)]
    pub lag: Option<i64>,
    /// The leader heard from this member recently (within a few election timeouts)
    pub healthy: Option<bool>,
}

/// Crypto-shredding progress on the answering node: forget-me erasures applied but still present in its Raft log or an older snapshot on its disk.
#[derive(Serialize, ToSchema)]
pub struct ErasureCompaction {
    /// Erasures applied but still in this node's Raft log or snapshot
    #[schema(minimum = 0)]
    pub pending: i64,
    /// Milliseconds since the Unix epoch at which the oldest pending erasure was applied; null when none is pending
    #[serde(rename = "oldestPendingSince")]
    pub oldest_pending_since: Option<i64>,
    /// The longest an erasure waits before the node compacts it away, in milliseconds
    #[serde(rename = "compactionDeadlineMs")]
    #[schema(minimum = 0)]
    pub compaction_deadline_ms: i64,
}

/// A node's view of the cluster.
#[derive(Serialize, ToSchema)]
pub struct ClusterStatus {
    /// The node that answered; null when it has not joined a cluster
    #[serde(rename = "nodeId")]
    #[schema(minimum = 1)]
    pub node_id: Option<i64>,
    pub state: NodeState,
    /// The current leader's id; null when none is known
    #[schema(minimum = 1)]
    pub leader: Option<i64>,
    /// The current Raft term
    #[schema(minimum = 0)]
    pub term: i64,
    /// The index of the last entry in this node's log
    #[serde(rename = "lastLogIndex")]
    #[schema(minimum = 0)]
    pub last_log_index: Option<i64>,
    /// The index of the last entry applied to this node's state machine
    #[serde(rename = "appliedIndex")]
    #[schema(minimum = 0)]
    pub applied_index: Option<i64>,
    /// The last log index included in this node's latest snapshot
    #[serde(rename = "snapshotIndex")]
    #[schema(minimum = 0)]
    pub snapshot_index: Option<i64>,
    /// Log entries up to here have been removed from this node's disk
    #[serde(rename = "purgedIndex")]
    #[schema(minimum = 0)]
    pub purged_index: Option<i64>,
    /// Voters and learners
    pub members: Vec<Member>,
    pub erasures: ErasureCompaction,
}

#[derive(Serialize, ToSchema)]
pub struct ClusterStatusReply {
    pub status: OkStatus,
    #[serde(flatten)]
    pub inner: ClusterStatus,
}

#[derive(Serialize, ToSchema)]
pub struct AddLearner {
    /// `host:port` of the new node's peer (Raft) listener
    #[serde(rename = "raftAddress")]
    #[schema(min_length = 1)]
    pub raft_address: String,
    /// Base URL of the new node's API (`http://` or `https://`)
    #[serde(rename = "apiAddress")]
    #[schema(pattern = r#"^https?://"#)]
    pub api_address: String,
    /// When another member already has `raftAddress` (its node was wiped and restarted), remove that member first instead of refusing with 409
    #[schema(required = false, default = json!(false))]
    pub replace: bool,
}

#[derive(Serialize, ToSchema)]
pub struct MemberAddedReply {
    pub status: OkStatus,
    /// The node's id
    #[schema(minimum = 1)]
    pub id: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PromotedReply {
    pub status: OkStatus,
    #[schema(minimum = 1)]
    pub id: i64,
    pub voter: bool,
}

#[derive(Serialize, ToSchema)]
pub struct RemovedReply {
    pub status: OkStatus,
    #[schema(minimum = 1)]
    pub id: i64,
    pub removed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ExpirationStart {
    /// How long until the data is forgotten; none, `""` or `0`: the vault's maximum (`--max-user-retention-period`), to which a longer one is cut
    #[schema(required = false, example = "30d")]
    pub expiration: Expiration,
    #[schema(inline, required = false)]
    pub status: ExpirationStartStatus,
}

#[derive(Serialize, ToSchema)]
pub struct ExpirationStarted {
    pub status: OkStatus,
    pub exptoken: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct ExpirationStatusReply {
    pub status: OkStatus,
    /// End of the countdown, seconds since the Unix epoch; 0 when no expiration was started
    pub exptime: i64,
    /// `wait`, `retain`, `expired`, or empty when no expiration was started
    #[schema(pattern = r"^(|wait|retain|expired)$")]
    pub expstatus: String,
    /// Empty when there is none (no expiration, or the subject was forgotten)
    pub exptoken: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResultReply {
    pub status: OkStatus,
    #[schema(required = false)]
    pub result: String,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionRule {
    /// Unique within the policy
    #[schema(pattern = r#"^[A-Za-z0-9_-]{1,63}$"#)]
    pub name: String,
    #[schema(inline)]
    pub r#match: RetentionRuleMatch,
    #[schema(inline)]
    pub action: RetentionRuleAction,
    /// dropFields and pseudonymize: the profile fields to change
    #[schema(required = false)]
    pub fields: Vec<String>,
    /// startExpiration: the countdown
    #[schema(pattern = r#"^[0-9]{1,6}[smhd]$"#, required = false)]
    pub expiration: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionPolicySpec {
    /// Ignored by the vault
    #[serde(rename = "vaultRef")]
    #[schema(inline, required = false)]
    pub vault_ref: Option<RetentionPolicySpecVaultRef>,
    /// Ignored by the vault
    #[schema(required = false)]
    pub schedule: Option<String>,
    /// Ignored by the vault
    #[schema(required = false)]
    pub suspend: bool,
    #[serde(rename = "dryRun")]
    #[schema(required = false, default = json!(false))]
    pub dry_run: bool,
    #[schema(min_items = 1, max_items = 64)]
    pub rules: Vec<RetentionRule>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRunRequest {
    #[schema(pattern = r#"^[a-z0-9./-]{1,253}$"#, example = "shop/drop-phone")]
    pub policy: String,
    pub spec: RetentionPolicySpec,
}

#[derive(Serialize, ToSchema)]
pub struct ErasuresReply {
    pub status: OkStatus,
    /// The vault whose ledger this is
    #[serde(rename = "clusterId")]
    pub cluster_id: Uuid,
    pub erasures: Vec<Erasure>,
    /// The sequence number the ledger's next entry will take
    pub next: u64,
}

/// One erasure: whose data, what of it, when; or a token revocation. No personal data.
#[derive(Serialize, ToSchema)]
pub struct Erasure {
    /// Its place in the ledger, from 1
    pub seq: u64,
    /// When it was applied, ms since the Unix epoch
    pub time: u64,
    /// The subject's token (absent for a token revocation)
    #[schema(required = false)]
    pub token: Uuid,
    pub kind: ErasureKind,
    /// The revoked access token's id (`revokeToken`)
    #[serde(rename = "accessToken")]
    #[schema(required = false)]
    pub access_token: String,
    /// The forgotten identifier's blind-index entry, hex (`forgetIdentifier`: an email or
    /// phone kept with agreements before sign-up); never the identifier itself
    #[schema(required = false)]
    pub entry: String,
    /// The app record erased (`deleteApp`)
    #[schema(required = false)]
    pub app: String,
    /// The profile fields dropped or pseudonymised
    #[schema(required = false)]
    pub fields: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ErasureKind {
    Forget,
    DeleteApp,
    DropFields,
    Pseudonymize,
    RevokeToken,
    ForgetIdentifier,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionRun {
    pub policy: String,
    #[serde(rename = "dryRun")]
    pub dry_run: bool,
    /// ms since the Unix epoch
    #[serde(rename = "startedAt")]
    pub started_at: i64,
    #[serde(rename = "finishedAt")]
    pub finished_at: i64,
    pub matched: i64,
    /// Changed, or in a dry run would have been
    pub changed: i64,
    /// The audit event recording the run
    #[serde(rename = "auditEventId")]
    pub audit_event_id: Uuid,
    #[schema(inline)]
    pub rules: Vec<RetentionRunRulesItem>,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionRunReply {
    pub status: OkStatus,
    #[serde(flatten)]
    pub inner: RetentionRun,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionRunsReply {
    pub status: OkStatus,
    pub runs: Vec<RetentionRun>,
}

/// Any JSON object (or form). A `login`, `email`, `phone`, `custom` or `token` field (in that order) links the session to that subject (none when it names nobody); `expiration` (e.g. `1h`) shortens its life below the configured maximum (`--max-session-ttl`, default 30d); one the vault cannot read asks for the maximum.
#[derive(Serialize, ToSchema)]
#[schema(min_properties = 1, example = json!({"login": "john", "ip": "203.0.113.7", "user-agent": "Mozilla/5.0", "expiration": "1h"}))]
pub struct SessionBody {}

#[derive(Serialize, ToSchema)]
pub struct SessionCreated {
    pub status: OkStatus,
    pub session: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct Session {
    pub session: Uuid,
    /// Creation time, seconds since the Unix epoch
    pub when: i64,
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Serialize, ToSchema)]
pub struct SessionReply {
    pub status: OkStatus,
    #[serde(flatten)]
    pub inner: Session,
}

#[derive(Serialize, ToSchema)]
pub struct SessionListReply {
    pub status: OkStatus,
    pub total: i64,
    pub rows: Vec<Session>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"fields": "first,email", "partner": "acme-delivery", "expiration": "7d"}))]
pub struct ShareRequest {
    /// Top-level fields to share (1-64); `token` is the subject's token
    pub fields: FieldList,
    /// Share from this app's record instead of the profile (needs `apps:<app>:read`)
    #[schema(required = false)]
    pub app: String,
    /// Who it is shared with; recorded in the audit trail
    #[schema(max_length = 128, required = false)]
    pub partner: String,
    /// How long the share lasts, at most `--max-share-ttl` (default 30d); none: that maximum
    #[schema(required = false)]
    pub expiration: Expiration,
    /// Share fields of this session of the subject's instead of the profile
    #[schema(required = false)]
    pub session: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct ShareCreated {
    pub status: OkStatus,
    pub record: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct SharedReply {
    pub status: OkStatus,
    /// The app, for a share of an app record
    #[schema(required = false)]
    pub app: String,
    /// The session, for a share of a session
    #[schema(required = false)]
    pub session: Uuid,
    /// Only the shared fields (null when the record lacks one)
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Serialize, ToSchema)]
pub struct LegalBasis {
    #[schema(required = false)]
    pub brief: String,
    #[schema(inline, required = false)]
    pub status: LegalBasisStatus,
    #[schema(required = false)]
    pub module: String,
    #[schema(required = false)]
    pub shortdesc: String,
    #[schema(required = false)]
    pub fulldesc: String,
    /// e.g. consent, contract, legal-requirement
    #[schema(required = false)]
    pub basistype: String,
    #[schema(required = false)]
    pub requiredmsg: String,
    #[schema(required = false)]
    pub usercontrol: bool,
    #[schema(required = false)]
    pub requiredflag: bool,
    #[schema(required = false)]
    pub creationtime: i64,
}

/// All optional; `brief` renames the basis
#[derive(Serialize, ToSchema)]
pub struct LegalBasisBody {
    /// Renames the basis
    #[schema(
        required = false,
        pattern = r"^([\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9-]{1,64}[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?$"
    )]
    pub brief: Option<String>,
    /// `disabled`; anything else is `active`
    #[schema(required = false, max_length = 4096)]
    pub status: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub module: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub shortdesc: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub fulldesc: Option<String>,
    /// e.g. consent, contract, legal-requirement
    #[schema(required = false, max_length = 4096)]
    pub basistype: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub requiredmsg: Option<String>,
    #[schema(required = false)]
    pub usercontrol: Option<Flag>,
    #[schema(required = false)]
    pub requiredflag: Option<Flag>,
}

#[derive(Serialize, ToSchema)]
pub struct LegalBasisListReply {
    pub status: OkStatus,
    #[schema(required = false)]
    pub total: i64,
    #[schema(required = false)]
    pub rows: Vec<LegalBasis>,
}

#[derive(Serialize, ToSchema)]
pub struct Agreement {
    /// The subject's token; null for an agreement kept by an email or phone that is no
    /// subject yet (consent before sign-up).
    #[schema(required = false)]
    pub token: Option<Uuid>,
    #[schema(required = false)]
    pub brief: String,
    #[schema(inline, required = false)]
    pub status: AgreementStatus,
    #[schema(required = false)]
    pub creationtime: i64,
    #[schema(required = false)]
    pub when: i64,
    #[schema(required = false)]
    pub starttime: i64,
    /// 0: no end; past it a `yes` shows as `expired`
    #[schema(required = false)]
    pub endtime: i64,
    #[schema(required = false)]
    pub mode: String,
    #[schema(required = false)]
    pub agreementmethod: String,
    #[schema(required = false)]
    pub referencecode: String,
    #[schema(required = false)]
    pub lastmodifiedby: String,
}

/// All optional
#[derive(Serialize, ToSchema)]
pub struct AgreementBody {
    /// `yes` (the default; also `accept`, `agree`, `allow`, `true`) or `no` (also `withdraw`, `disagree`, `deny`, `false`), in any case
    #[schema(
        required = false,
        pattern = r"^(|[yY][eE][sS]|[aA][cC][cC][eE][pP][tT]|[aA][gG][rR][eE][eE]|[aA][lL][lL][oO][wW]|[tT][rR][uU][eE]|[nN][oO]|[wW][iI][tT][hH][dD][rR][aA][wW]|[dD][iI][sS][aA][gG][rR][eE][eE]|[dD][eE][nN][yY]|[fF][aA][lL][sS][eE])$"
    )]
    pub status: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub agreementmethod: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub referencecode: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub lastmodifiedby: Option<String>,
    /// When the agreement starts: a duration from now (`1d`) or Unix seconds; none: now
    #[schema(required = false)]
    pub starttime: Option<Moment>,
    /// When the agreement ends: a duration from now (`365d`) or Unix seconds; none: never
    #[schema(required = false)]
    pub expiration: Option<Moment>,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementReply {
    pub status: OkStatus,
    /// The agreement; null when there is none
    pub data: Option<Agreement>,
}

#[derive(Serialize, ToSchema)]
pub struct AgreementListReply {
    pub status: OkStatus,
    #[schema(required = false)]
    pub total: i64,
    #[schema(required = false)]
    pub rows: Vec<Agreement>,
}

#[derive(Serialize, ToSchema)]
pub struct Activity {
    #[schema(required = false)]
    pub activity: String,
    #[schema(required = false)]
    pub title: String,
    #[schema(required = false)]
    pub script: String,
    #[schema(required = false)]
    pub fulldesc: String,
    #[schema(required = false)]
    pub applicableto: String,
    /// Linked briefs, comma-separated
    #[schema(required = false)]
    pub legalbasis: String,
    #[schema(required = false)]
    pub creationtime: i64,
}

/// All optional; `activity` renames it
#[derive(Serialize, ToSchema)]
pub struct ActivityBody {
    /// Renames the activity
    #[schema(
        required = false,
        pattern = r"^([\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[A-Za-z0-9-]{1,64}[\t\n\x0b\x0c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?$"
    )]
    pub activity: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub title: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub script: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub fulldesc: Option<String>,
    #[schema(required = false, max_length = 4096)]
    pub applicableto: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ActivityListReply {
    pub status: OkStatus,
    #[schema(required = false)]
    pub total: i64,
    #[schema(required = false)]
    pub rows: Vec<Activity>,
}

#[derive(Serialize, ToSchema)]
pub struct Request {
    #[schema(required = false)]
    pub rtoken: Uuid,
    /// The subject
    #[schema(required = false)]
    pub token: Uuid,
    #[schema(inline, required = false)]
    pub action: RequestAction,
    #[schema(required = false)]
    pub app: String,
    #[schema(inline, required = false)]
    pub status: RequestStatus,
    #[schema(required = false)]
    pub reason: String,
    #[schema(required = false)]
    pub creationtime: i64,
    #[schema(required = false)]
    pub when: i64,
    /// Single request only: the data it would change
    #[schema(value_type = Object, required = false)]
    pub original: Value,
    /// Single request only: the requested JSON merge object or patch
    #[schema(required = false)]
    pub change: Value,
}

#[derive(Serialize, ToSchema)]
pub struct RequestListReply {
    pub status: OkStatus,
    #[schema(required = false)]
    pub total: i64,
    #[schema(required = false)]
    pub rows: Vec<Request>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestReply {
    pub status: OkStatus,
    #[schema(required = false)]
    pub request: Request,
}

/// A subject token's change under `--subject-changes request`
#[derive(Serialize, ToSchema)]
pub struct RequestFiled {
    pub status: OkStatus,
    #[schema(inline)]
    pub result: RequestFiledResult,
    /// The request, for the DPO to approve or cancel
    pub rtoken: Uuid,
}

/// A change made, or (a subject token's, under `--subject-changes request`) filed for a DPO.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ChangeReply {
    Done(TokenReply),
    Filed(RequestFiled),
}

/// A subject forgotten, or (a subject token's, under `--subject-changes request`) its request filed for a DPO.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ForgetReply {
    Done(DoneTokenReply),
    Filed(RequestFiled),
}

#[derive(Serialize, ToSchema)]
pub struct ReasonBody {
    #[schema(max_length = 1024, required = false)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub enum PatchOperationOp {
    #[serde(rename = "add")]
    Add,
    #[serde(rename = "remove")]
    Remove,
    #[serde(rename = "replace")]
    Replace,
    #[serde(rename = "move")]
    Move,
    #[serde(rename = "copy")]
    Copy,
    #[serde(rename = "test")]
    Test,
}

#[derive(Serialize, ToSchema)]
pub enum DoneReplyResult {
    #[serde(rename = "done")]
    Done,
}

#[derive(Serialize, ToSchema)]
pub enum DoneTokenReplyResult {
    #[serde(rename = "done")]
    Done,
}

#[derive(Serialize, ToSchema)]
pub struct UserListReplyRowsItem {
    /// The subject's token
    pub token: Uuid,
    pub data: Record,
}

#[derive(Serialize, ToSchema)]
pub enum ExpirationStartStatus {
    #[serde(rename = "wait")]
    Wait,
}

#[derive(Serialize, ToSchema)]
pub enum RetentionRuleMatchSince {
    #[serde(rename = "created")]
    Created,
    #[serde(rename = "updated")]
    Updated,
    #[serde(rename = "expirationStart")]
    ExpirationStart,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionRuleMatch {
    #[serde(rename = "olderThan")]
    #[schema(pattern = r#"^[0-9]{1,6}[smhd]$"#, required = false)]
    pub older_than: Option<String>,
    #[schema(inline, required = false, default = json!("created"))]
    pub since: RetentionRuleMatchSince,
    /// Only subjects with a record of this app; the age is then that record's
    #[schema(required = false)]
    pub app: Option<String>,
    #[serde(rename = "hasFields")]
    #[schema(required = false)]
    pub has_fields: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub enum RetentionRuleAction {
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "dropFields")]
    DropFields,
    #[serde(rename = "pseudonymize")]
    Pseudonymize,
    #[serde(rename = "deleteApp")]
    DeleteApp,
    #[serde(rename = "startExpiration")]
    StartExpiration,
}

/// Ignored by the vault
#[derive(Serialize, ToSchema)]
pub struct RetentionPolicySpecVaultRef {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionRunRulesItem {
    #[schema(required = false)]
    pub name: String,
    #[schema(required = false)]
    pub action: String,
    #[schema(required = false)]
    pub matched: i64,
    #[schema(required = false)]
    pub changed: i64,
    /// Changed concurrently while the run decided; left for the next run
    #[schema(required = false)]
    pub skipped: i64,
}

#[derive(Serialize, ToSchema)]
pub enum LegalBasisStatus {
    #[serde(rename = "active")]
    Active,
    #[serde(rename = "disabled")]
    Disabled,
}

#[derive(Serialize, ToSchema)]
pub enum AgreementStatus {
    #[serde(rename = "yes")]
    Yes,
    #[serde(rename = "no")]
    No,
    #[serde(rename = "revoked")]
    Revoked,
    #[serde(rename = "expired")]
    Expired,
}

#[derive(Serialize, ToSchema)]
pub enum RequestAction {
    #[serde(rename = "forget-me")]
    ForgetMe,
    #[serde(rename = "change-profile")]
    ChangeProfile,
    #[serde(rename = "change-app-data")]
    ChangeAppData,
}

#[derive(Serialize, ToSchema)]
pub enum RequestStatus {
    #[serde(rename = "open")]
    Open,
    #[serde(rename = "approved")]
    Approved,
    #[serde(rename = "cancelled")]
    Cancelled,
}

#[derive(Serialize, ToSchema)]
pub enum RequestFiledResult {
    #[serde(rename = "request-created")]
    RequestCreated,
}
