//! The HTTP API: Databunker v1 routes plus Strongroom's `/v1/sys/...` additions. Handlers
//! parse and authorise; the `Vault` does the work. Every response is a JSON envelope:
//! `{"status":"ok", ...}` or `{"status":"error","message":...}` with a fitting code.

mod apps;
mod audit;
mod body;
mod cluster;
mod consent;
mod expiration;
mod middleware;
mod requests;
mod retention;
mod sessions;
mod shares;
mod system;
mod tokens;
mod users;

use actix_web::{
    middleware::{from_fn, NormalizePath},
    web, HttpResponse,
};
use serde::Deserialize;
use serde_json::{json, Value};

pub use body::BodyLimit;

use crate::error::{VaultError, VaultResult};
use crate::identifiers::Mode;

/// Registers every route. `max_body` is the request-body limit in bytes.
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(BodyLimit(max_body)).service(
        web::scope("")
            .wrap(from_fn(middleware::observe))
            // Databunker's router answers `/v1/user/` like `/v1/user` (its published
            // client posts to the former); so do we, for every route.
            .wrap(NormalizePath::trim())
            .service(web::resource("/v1/user").post(users::create))
            .service(web::resource("/v1/user/{mode}/{id}").get(users::get).put(users::update).delete(users::forget))
            .service(web::resource("/v1/users").post(users::list))
            .service(
                web::resource("/v1/userapp/{mode}/{id}/{app}")
                    .post(apps::create)
                    .put(apps::update)
                    .get(apps::get)
                    .delete(apps::delete),
            )
            .service(web::resource("/v1/userapp/{mode}/{id}").get(apps::list_for_user))
            .service(web::resource("/v1/userapps").get(apps::names))
            .service(
                web::resource("/v1/session/{session}")
                    .post(sessions::create)
                    .get(sessions::get)
                    .delete(sessions::delete),
            )
            .service(web::resource("/v1/sessions/{mode}/{id}").get(sessions::for_user))
            .service(web::resource("/v1/lbasis").get(consent::list_bases))
            .service(web::resource("/v1/lbasis/{brief}").post(consent::put_basis).delete(consent::delete_basis))
            .service(
                web::resource("/v1/agreement/{brief}/{mode}/{id}")
                    .post(consent::accept)
                    .delete(consent::withdraw)
                    .get(consent::get_agreement),
            )
            .service(web::resource("/v1/agreement/{brief}").delete(consent::revoke_all))
            .service(web::resource("/v1/agreements/{mode}/{id}").get(consent::list_agreements))
            .service(web::resource("/v1/pactivity").get(consent::list_activities))
            .service(
                web::resource("/v1/pactivity/{activity}").post(consent::put_activity).delete(consent::delete_activity),
            )
            .service(web::resource("/v1/pactivity/{activity}/{brief}").post(consent::link).delete(consent::unlink))
            .service(web::resource("/v1/requests").get(requests::list))
            .service(web::resource("/v1/requests/{mode}/{id}").get(requests::for_user))
            .service(
                web::resource("/v1/request/{rtoken}")
                    .get(requests::get)
                    .post(requests::approve)
                    .delete(requests::cancel),
            )
            .service(web::resource("/v1/sharedrecord/{mode}/{id}").post(shares::create))
            .service(web::resource("/v1/get/{record}").get(shares::get))
            .service(web::resource("/v1/exp/start/{mode}/{id}").post(expiration::start))
            .service(web::resource("/v1/exp/status/{mode}/{id}").get(expiration::status))
            .service(web::resource("/v1/exp/cancel/{mode}/{id}").delete(expiration::cancel))
            .service(web::resource("/v1/exp/retain/{exptoken}").get(expiration::retain))
            .service(web::resource("/v1/exp/delete/{exptoken}").get(expiration::delete))
            .service(web::resource("/v1/audit/admin").get(audit::all))
            .service(web::resource("/v1/audit/list/{token}").get(audit::for_subject))
            .service(web::resource("/v1/audit/get/{atoken}").get(audit::event))
            .service(web::resource("/v1/sys/audit/verify").get(audit::verify))
            .service(web::resource("/v1/sys/tokens").post(tokens::create).get(tokens::list))
            .service(web::resource("/v1/sys/tokens/{id}").delete(tokens::revoke))
            .service(web::resource("/v1/sys/retention/run").post(retention::run))
            .service(web::resource("/v1/sys/retention/runs").get(retention::runs))
            .service(web::resource("/v1/sys/cluster").get(cluster::status))
            .service(web::resource("/v1/sys/cluster/init").post(cluster::init))
            .service(web::resource("/v1/sys/cluster/learners").post(cluster::add_learner))
            .service(web::resource("/v1/sys/cluster/members/{id}/promote").post(cluster::promote))
            .service(web::resource("/v1/sys/cluster/members/{id}").delete(cluster::remove))
            .service(web::resource("/v1/status").get(system::status))
            .service(web::resource("/v1/metrics").get(system::metrics))
            .service(web::resource("/metrics").get(system::metrics))
            .service(web::resource("/v1/openapi.json").get(system::openapi))
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> VaultResult<HttpResponse> {
    Err(VaultError::NotFound("route"))
}

/// `{"status":"ok"}` merged with the payload's fields.
pub(crate) fn ok(payload: Value) -> HttpResponse {
    let mut body = json!({"status": "ok"});
    if let (Value::Object(target), Value::Object(fields)) = (&mut body, payload) {
        target.extend(fields);
    }
    HttpResponse::Ok().json(body)
}

/// `{"status":"ok"}` merged with the fields of an admin-API body.
pub(crate) fn ok_body<T: serde::Serialize>(body: &T) -> VaultResult<HttpResponse> {
    let payload = serde_json::to_value(body).map_err(|_| VaultError::Unavailable("answer cannot be encoded"))?;
    Ok(ok(payload))
}

pub(crate) fn parse_mode(mode: &str) -> VaultResult<Mode> {
    mode.parse().map_err(|_| VaultError::bad_request("unknown mode: use token, login, email, phone or custom"))
}

/// `?offset=&limit=` paging, as Databunker's list routes take it.
#[derive(Debug, Deserialize)]
pub(crate) struct Paging {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    10
}

impl Paging {
    pub const MAX_LIMIT: usize = 1000;

    pub fn checked(&self) -> VaultResult<(usize, usize)> {
        if self.limit == 0 || self.limit > Self::MAX_LIMIT {
            return Err(VaultError::bad_request(format!("limit must be between 1 and {}", Self::MAX_LIMIT)));
        }
        Ok((self.offset, self.limit))
    }
}

/// Query-string parsing with a JSON error instead of actix's plain-text one.
pub(crate) fn paging(query: &str) -> VaultResult<Paging> {
    serde_urlencoded::from_str(query)
        .map_err(|_| VaultError::bad_request("offset and limit must be non-negative integers"))
}
