//! The OpenAPI document, generated from the handlers' annotations and the wire types,
//! served at `/openapi.json` with Swagger UI at `/swagger/index.html` (its files are
//! vendored into the binary; nothing is fetched at build or run time).

use std::collections::BTreeMap;

use actix_web::web;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vidne",
        description = "The hash-chained audit ledger of an eID broker. Every `/v1` call takes \
                       `Authorization: Bearer <key>`; each route names the roles it accepts. \
                       Every POST accepts an `Idempotency-Key`."
    ),
    paths(
        super::keys::create,
        super::clients::register,
        super::sessions::start_session,
        super::sessions::start_transaction,
        super::sessions::login,
        super::sessions::sso_reuse,
        super::sessions::sign,
        super::sessions::match_cpr,
        super::sessions::look_up_pid,
        super::sessions::issue_transfer,
        super::sessions::complete,
        super::sessions::logout,
        super::sessions::flow_error,
        super::transfers::exchange,
        super::maintenance::record,
        super::maintenance::cancel,
        super::log::record,
        super::log::checkpoint,
        super::log::checkpoint_at,
        super::log::sign_checkpoint,
        super::log::verifier_key,
        super::log::inclusion,
        super::log::consistency,
        super::audit::records,
        super::audit::export,
        super::reports::compliance,
        super::tokens::jwks,
        super::tokens::token,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys, &IdempotencyHeader)
)]
pub struct ApiDoc;

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every POST takes an `Idempotency-Key`, which the middleware reads, not the handlers.
struct IdempotencyHeader;

impl Modify for IdempotencyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let header = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "1 to 255 visible ASCII characters. A retry with the same key and request \
                 gets the first answer and appends nothing; the same key with another \
                 request is refused (422).",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        for item in openapi.paths.paths.values_mut() {
            if let Some(post) = item.post.as_mut() {
                post.parameters
                    .get_or_insert_with(Vec::new)
                    .push(RefOr::T(header.clone()));
            }
        }
    }
}

/// The body of every error answer (4xx and 5xx).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// `invalid_request`, `access_denied`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `unavailable`, `commit_unknown` or `internal_error`.
    error: String,
    /// The seed's code where one exists, else a short reason.
    error_description: String,
    /// The input member at fault, when there is one.
    field: Option<String>,
}

/// `{session_id}` of the session routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SessionPath {
    /// The broker's session id.
    session_id: String,
}

/// The error answers every broker route shares (each route adds its 201).
pub struct BrokerErrors;

impl IntoResponses for BrokerErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let error = |description: &str| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", content)
                    .build(),
            )
        };
        [
            (
                "400",
                "A rule of the seeds refused it (`error_description` holds the seed's code \
                 where it has one, `field` the member at fault), or the body is malformed; \
                 nothing was appended, except for a 4th CPR match, recorded then refused",
            ),
            ("401", "No key, or an unknown one"),
            ("403", "Not a broker key"),
            (
                "409",
                "The stream changed under the command too often, or a request with this \
                 `Idempotency-Key` is still running",
            ),
            ("413", "The body is larger than the configured limit"),
            (
                "422",
                "This `Idempotency-Key` was used before for a different request",
            ),
            (
                "503",
                "The database is unavailable (nothing appended), or `commit_unknown`: the \
                 commit's outcome is unknown, and a retry with the same `Idempotency-Key` \
                 gets this answer again",
            ),
        ]
        .into_iter()
        .map(|(status, description)| (status.to_string(), error(description)))
        .collect()
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(SwaggerUi::new("/swagger/{_:.*}").url("/openapi.json", ApiDoc::openapi()));
}
