//! `GET /v1/openapi.json`: the API described in OpenAPI 3.1. The paths and
//! request schemas are written by hand (`openapi.template.json`); every
//! response schema is generated from the response types themselves
//! (schemars), so the document cannot drift from what handlers send.
//! docs/openapi.json is this document, written by `bridge openapi`; a test
//! checks it is current.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::Value;

use super::AppState;

const TEMPLATE: &str = include_str!("openapi.template.json");

/// The document, as served and as docs/openapi.json holds it.
pub static DOCUMENT: LazyLock<String> = LazyLock::new(render);

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response() }),
    )
}

/// Adds `T`'s schema (and every schema it uses) to `components/schemas`.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

/// The template with the generated response schemas, pretty-printed.
fn render() -> String {
    let mut document: Value = serde_json::from_str(TEMPLATE).expect("openapi.template.json is JSON");
    // JSON Schema 2020-12 is OpenAPI 3.1's schema dialect; serialised
    // shapes (an Option is null, not absent, unless skipped when None).
    let mut settings = SchemaSettings::draft2020_12().for_serialize();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    add::<super::jobs::bodies::JobView>(&mut generator);
    add::<super::jobs::bodies::JobRecord>(&mut generator);
    add::<super::jobs::bodies::JobPage>(&mut generator);
    add::<super::jobs::bodies::EventBody>(&mut generator);
    add::<super::jobs::bodies::JobHealth>(&mut generator);
    add::<super::jobs::DryRun>(&mut generator);
    add::<super::users::UserBody>(&mut generator);
    add::<super::auth::TokenPair>(&mut generator);
    add::<super::oidc::Providers>(&mut generator);
    add::<super::error::Problem<'static>>(&mut generator);
    add::<super::nodes::Nodes>(&mut generator);
    add::<super::nodes::NodeAction>(&mut generator);
    add::<super::nodes::NodeActionBody>(&mut generator);
    add::<super::policy::PolicyBody>(&mut generator);
    add::<crate::scheduling::Policy>(&mut generator);
    add::<super::health::Health>(&mut generator);
    add::<super::health::Ready>(&mut generator);
    add::<super::health_reports::Ingested>(&mut generator);
    add::<super::workers::WorkersBody>(&mut generator);
    add::<super::workers::TokenRequest>(&mut generator);
    add::<super::workers::TokenBody>(&mut generator);
    add::<super::workers::JoinRequest>(&mut generator);
    add::<super::workers::JoinBody>(&mut generator);
    add::<super::workers::WorkerBody>(&mut generator);
    let schemas = &mut document["components"]["schemas"];
    for (name, schema) in generator.take_definitions(true) {
        assert!(schemas.get(&name).is_none(), "the template already has a schema {name}");
        schemas[&name] = schema;
    }
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(&document, &mut serializer).expect("a JSON value serialises");
    out.push(b'\n');
    String::from_utf8(out).expect("serde_json writes UTF-8")
}
