//! The HTTP route table: for each known path, the methods it answers and the restricted-API
//! category it belongs to. A known path asked with another method gets 405 with `Allow`; a path
//! not in the table falls through to the handlers, which answer 404.

use http::Method;

use crate::restricted::Category;

/// The methods a path answers. HEAD is answered wherever GET is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowed {
    Get,
    Post,
    GetPost,
}

impl Allowed {
    /// Whether `method` is answered.
    pub(crate) fn allows(self, method: &Method) -> bool {
        let get = *method == Method::GET || *method == Method::HEAD;
        match self {
            Allowed::Get => get,
            Allowed::Post => *method == Method::POST,
            Allowed::GetPost => get || *method == Method::POST,
        }
    }

    /// The `Allow` header's value.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Allowed::Get => "GET, HEAD",
            Allowed::Post => "POST",
            Allowed::GetPost => "GET, HEAD, POST",
        }
    }
}

/// A known path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) allowed: Allowed,
    /// The restricted-API category (Triton's grouping); `None` for `/metrics`, which Triton
    /// serves on its own port with no restriction.
    pub(crate) category: Option<Category>,
}

const fn route(allowed: Allowed, category: Option<Category>) -> Option<Route> {
    Some(Route { allowed, category })
}

/// The route of a path, split into percent-decoded segments.
pub(crate) fn lookup(segments: &[&str]) -> Option<Route> {
    use Allowed::*;
    use Category::*;
    match segments {
        ["v2"] => route(Get, Some(Metadata)),
        ["v2", "health", "live" | "ready"] => route(Get, Some(Health)),
        ["v2", "models", _, rest @ ..] => {
            let action = match rest {
                ["versions", _, action @ ..] => action,
                ["versions"] => return None,
                action => action,
            };
            match action {
                [] => route(Get, Some(Metadata)),
                ["ready"] => route(Get, Some(Health)),
                ["config"] => route(Get, Some(ModelConfig)),
                ["infer"] => route(Post, Some(Inference)),
                _ => None,
            }
        }
        ["v2", "repository", "index"] => route(Post, Some(ModelRepository)),
        ["v2", "repository", "models", _, "load" | "unload"] => route(Post, Some(ModelRepository)),
        ["v2", "repository", "models", _, "traffic"] => route(GetPost, Some(ModelRepository)),
        ["v2", "repository", "models", _, "traffic", "promote" | "rollback"] => route(Post, Some(ModelRepository)),
        ["v1", "models"] => route(Get, Some(Metadata)),
        ["v1", "models", target] => match target.rsplit_once(':') {
            // KServe V1's model status is its readiness check.
            None => route(Get, Some(Health)),
            Some((_, "predict")) => route(Post, Some(Inference)),
            Some(_) => None,
        },
        ["openai", "v1", "embeddings"] => route(Post, Some(Inference)),
        ["metrics"] => route(Get, None),
        ["openapi.json" | "openapi.yaml"] => route(Get, None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        lookup(&segments)
    }

    fn allowed(path: &str) -> &'static str {
        route_of(path).unwrap_or_else(|| panic!("{path} is not a known route")).allowed.header()
    }

    #[test]
    fn server_and_health_routes() {
        assert_eq!(allowed("/v2"), "GET, HEAD");
        assert_eq!(allowed("/v2/health/live"), "GET, HEAD");
        assert_eq!(allowed("/v2/health/ready"), "GET, HEAD");
        assert_eq!(route_of("/v2/health/live").unwrap().category, Some(Category::Health));
        assert_eq!(route_of("/v2").unwrap().category, Some(Category::Metadata));
        assert_eq!(route_of("/v2/health/other"), None);
    }

    #[test]
    fn model_routes_with_and_without_a_version() {
        for base in ["/v2/models/m", "/v2/models/m/versions/3"] {
            assert_eq!(allowed(base), "GET, HEAD");
            assert_eq!(allowed(&format!("{base}/ready")), "GET, HEAD");
            assert_eq!(allowed(&format!("{base}/config")), "GET, HEAD");
            assert_eq!(allowed(&format!("{base}/infer")), "POST");
            assert_eq!(route_of(&format!("{base}/infer")).unwrap().category, Some(Category::Inference));
            assert_eq!(route_of(&format!("{base}/config")).unwrap().category, Some(Category::ModelConfig));
            assert_eq!(route_of(&format!("{base}/ready")).unwrap().category, Some(Category::Health));
            assert_eq!(route_of(&format!("{base}/stats")), None);
        }
        assert_eq!(route_of("/v2/models/m/versions"), None);
        assert_eq!(route_of("/v2/models"), None);
    }

    #[test]
    fn repository_and_traffic_routes_are_model_repository() {
        for (path, allow) in [
            ("/v2/repository/index", "POST"),
            ("/v2/repository/models/m/load", "POST"),
            ("/v2/repository/models/m/unload", "POST"),
            ("/v2/repository/models/m/traffic", "GET, HEAD, POST"),
            ("/v2/repository/models/m/traffic/promote", "POST"),
            ("/v2/repository/models/m/traffic/rollback", "POST"),
        ] {
            assert_eq!(allowed(path), allow, "{path}");
            assert_eq!(route_of(path).unwrap().category, Some(Category::ModelRepository), "{path}");
        }
        assert_eq!(route_of("/v2/repository/models/m/traffic/other"), None);
        assert_eq!(route_of("/v2/repository/models/m"), None);
    }

    #[test]
    fn v1_openai_and_metrics_routes() {
        assert_eq!(allowed("/v1/models"), "GET, HEAD");
        assert_eq!(allowed("/v1/models/m"), "GET, HEAD");
        assert_eq!(allowed("/v1/models/m:predict"), "POST");
        assert_eq!(route_of("/v1/models/m:explain"), None);
        assert_eq!(allowed("/openai/v1/embeddings"), "POST");
        assert_eq!(allowed("/metrics"), "GET, HEAD");
        assert_eq!(route_of("/metrics").unwrap().category, None);
        assert_eq!(route_of("/nope"), None);
    }

    #[test]
    fn methods() {
        assert!(Allowed::Get.allows(&Method::HEAD));
        assert!(!Allowed::Get.allows(&Method::POST));
        assert!(!Allowed::Post.allows(&Method::GET));
        assert!(!Allowed::Post.allows(&Method::PUT));
        assert!(Allowed::GetPost.allows(&Method::POST) && Allowed::GetPost.allows(&Method::GET));
        assert!(!Allowed::GetPost.allows(&Method::DELETE));
    }
}
