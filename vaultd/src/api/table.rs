//! The route table: one list that both registers every route and names it
//! ([`ROUTES`]), so the API document can be checked against what is served.
//!
//! Each resource answers a method it does not serve with 405, an `Allow` header listing
//! the methods it does serve (RFC 9110 §15.5.6) and the JSON error envelope.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{
    apps, audit, backup, cluster, consent, expiration, retention, sessions, shares, subject_requests, system, tokens,
    users,
};

macro_rules! route_table {
    ($($path:literal => [$($method:ident $handler:path),+ $(,)?]),* $(,)?) => {
        /// Every route the API serves: its path template and its methods.
        pub const ROUTES: &[(&str, &[&str])] = &[$(($path, &[$(route_table!(@name $method)),+])),*];

        /// Registers every route of [`ROUTES`], each with its 405 answer.
        pub(super) fn register(cfg: &mut web::ServiceConfig) {
            $(
                cfg.service(
                    web::resource($path)
                        $(.route(web::$method().to($handler)))+
                        .default_service(web::to(|| async {
                            method_not_allowed(&[$(route_table!(@name $method)),+])
                        })),
                );
            )*
        }
    };
    (@name get) => { "GET" };
    (@name post) => { "POST" };
    (@name put) => { "PUT" };
    (@name delete) => { "DELETE" };
}

route_table! {
    "/v1/user" => [post users::create],
    "/v1/user/{mode}/{id}" => [get users::get, put users::update, delete users::forget],
    "/v1/users" => [post users::list],
    "/v1/userapp/{mode}/{id}/{app}" => [post apps::create, put apps::update, get apps::get, delete apps::delete],
    "/v1/userapp/{mode}/{id}" => [get apps::list_for_user],
    "/v1/userapps" => [get apps::names],
    "/v1/session/{session}" => [post sessions::create, get sessions::get, delete sessions::delete],
    "/v1/sessions/{mode}/{id}" => [get sessions::for_user],
    "/v1/lbasis" => [get consent::list_bases],
    "/v1/lbasis/{brief}" => [post consent::put_basis, delete consent::delete_basis],
    "/v1/agreement/{brief}/{mode}/{id}" => [post consent::accept, delete consent::withdraw, get consent::get_agreement],
    "/v1/agreement/{brief}" => [delete consent::revoke_all],
    "/v1/agreements/{mode}/{id}" => [get consent::list_agreements],
    "/v1/pactivity" => [get consent::list_activities],
    "/v1/pactivity/{activity}" => [post consent::put_activity, delete consent::delete_activity],
    "/v1/pactivity/{activity}/{brief}" => [post consent::link, delete consent::unlink],
    "/v1/requests" => [get subject_requests::list],
    "/v1/requests/{mode}/{id}" => [get subject_requests::for_user],
    "/v1/request/{rtoken}" => [get subject_requests::get, post subject_requests::approve, delete subject_requests::cancel],
    "/v1/sharedrecord/{mode}/{id}" => [post shares::create],
    "/v1/get/{record}" => [get shares::get],
    "/v1/exp/start/{mode}/{id}" => [post expiration::start],
    "/v1/exp/status/{mode}/{id}" => [get expiration::status],
    "/v1/exp/cancel/{mode}/{id}" => [delete expiration::cancel],
    "/v1/exp/retain/{exptoken}" => [get expiration::retain],
    "/v1/exp/delete/{exptoken}" => [get expiration::delete],
    "/v1/audit/admin" => [get audit::all],
    "/v1/audit/list/{token}" => [get audit::for_subject],
    "/v1/audit/get/{atoken}" => [get audit::event],
    "/v1/sys/audit/verify" => [get audit::verify],
    "/v1/sys/tokens" => [post tokens::create, get tokens::list],
    "/v1/sys/tokens/{id}" => [delete tokens::revoke],
    "/v1/sys/root-token/retire" => [post tokens::retire_root],
    "/v1/sys/retention/run" => [post retention::run],
    "/v1/sys/retention/runs" => [get retention::runs],
    "/v1/sys/backup" => [get backup::backup],
    "/v1/sys/erasures" => [get backup::erasures],
    "/v1/sys/cluster" => [get cluster::status],
    "/v1/sys/cluster/init" => [post cluster::init],
    "/v1/sys/cluster/learners" => [post cluster::add_learner],
    "/v1/sys/cluster/members/{id}/promote" => [post cluster::promote],
    "/v1/sys/cluster/members/{id}" => [delete cluster::remove],
    "/v1/status" => [get system::status],
    "/v1/metrics" => [get system::metrics_v1],
    "/metrics" => [get system::metrics],
    "/v1/openapi.json" => [get system::openapi],
}

/// 405 with the resource's methods in `Allow`, in the JSON error envelope.
fn method_not_allowed(methods: &[&str]) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, methods.join(", ")))
        .json(json!({"status": "error", "message": "method not allowed"}))
}
