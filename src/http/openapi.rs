//! The OpenAPI document, generated from the handlers' annotations and the wire types,
//! served at `/openapi.json` with Swagger UI at `/swagger/index.html` (its files are
//! vendored into the binary; nothing is fetched at build or run time).

use actix_web::web;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vidne",
        description = "The hash-chained audit ledger of an eID broker. Every `/v1` call takes \
                       `Authorization: Bearer <key>`; each route names the roles it accepts. \
                       Every POST accepts an `Idempotency-Key`."
    ),
    paths(super::keys::create, super::clients::register),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys)
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

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(SwaggerUi::new("/swagger/{_:.*}").url("/openapi.json", ApiDoc::openapi()));
}
