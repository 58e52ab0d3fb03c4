//! The management API on the runtime's HTTP port: the runtime asks each request's path once,
//! and the API's paths (`/apis/...`, `/api/v1/...`) come here.

use std::{future::Future, pin::Pin, sync::Arc};

use http::Request;
use hyper::body::Incoming;
use quiver_runtime::http::{HttpExtension, HttpResponse};

use crate::api::ManagementApi;

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
}
