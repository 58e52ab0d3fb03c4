//! The management API on the runtime's HTTP port: the runtime asks each request's path once,
//! and the API's paths (`/apis/...`, `/api/v1/...`) come here.

use std::{future::Future, pin::Pin, sync::Arc};

use http::Request;
use hyper::body::Incoming;
use quiver_runtime::http::{HttpExtension, HttpResponse};

use crate::api::ManagementApi;

/// The management API's OpenAPI document, generated from `docs/openapi/management.yaml` (the
/// runtime's tests check the two agree).
pub const MANAGEMENT_OPENAPI: &str = include_str!("../../../docs/openapi/management.json");

/// The management API as an extension of the runtime's HTTP edge.
pub struct ManagementRoutes(pub Arc<ManagementApi>);

impl std::fmt::Debug for ManagementRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagementRoutes")
    }
}

impl HttpExtension for ManagementRoutes {
    fn claims(&self, path: &str) -> bool {
        ManagementApi::claims(path)
    }

    fn handle(&self, request: Request<Incoming>) -> Pin<Box<dyn Future<Output = HttpResponse> + Send + '_>> {
        Box::pin(self.0.handle(request))
    }

    fn openapi(&self) -> Option<serde_json::Value> {
        serde_json::from_str(MANAGEMENT_OPENAPI).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_the_api_paths() {
        let doc: serde_json::Value = serde_json::from_str(MANAGEMENT_OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(!paths.is_empty());
        for path in paths.keys() {
            assert!(ManagementApi::claims(path), "{path} is documented but not served by the management API");
        }
        assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    }
}
