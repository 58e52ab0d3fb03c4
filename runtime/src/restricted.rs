//! Triton's restricted APIs: `--http-restricted-api=<category>[,<category>...]:<HEADER>=<VALUE>`
//! and `--grpc-restricted-protocol=...` (same syntax). An endpoint of a restricted category is
//! answered only when the request carries the header with that value: HTTP 403 otherwise, gRPC
//! UNAVAILABLE (what Triton answers). On gRPC, as in Triton, the header a client sends is the
//! configured one prefixed with `triton-grpc-protocol-`.

use std::{fmt, str::FromStr, sync::Arc};

use subtle::ConstantTimeEq;
use thiserror::Error;

/// Triton's endpoint categories (`RESTRICTED_CATEGORY_NAMES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Liveness and readiness of the server and of models.
    Health,
    /// Server and model metadata.
    Metadata,
    /// Inference (V2, V1 predict, OpenAI embeddings).
    Inference,
    /// The shared-memory extension.
    SharedMemory,
    /// Model configuration.
    ModelConfig,
    /// The repository extension: index, load, unload, and Quiver's traffic (canary) endpoints.
    ModelRepository,
    /// Statistics.
    Statistics,
    /// Trace settings.
    Trace,
    /// Log settings.
    Logging,
}

impl Category {
    /// Every category, in Triton's order.
    pub const ALL: [Category; 9] = [
        Category::Health,
        Category::Metadata,
        Category::Inference,
        Category::SharedMemory,
        Category::ModelConfig,
        Category::ModelRepository,
        Category::Statistics,
        Category::Trace,
        Category::Logging,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Health => "health",
            Category::Metadata => "metadata",
            Category::Inference => "inference",
            Category::SharedMemory => "shared-memory",
            Category::ModelConfig => "model-config",
            Category::ModelRepository => "model-repository",
            Category::Statistics => "statistics",
            Category::Trace => "trace",
            Category::Logging => "logging",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = RestrictedApiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| RestrictedApiError::UnknownCategory(s.to_string()))
    }
}

/// Why a restricted-API flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RestrictedApiError {
    /// Not `<categories>:<header>=<value>`, or a part is empty.
    #[error("'{0}' is not <category>[,<category>...]:<header>=<value> (each part non-empty)")]
    Syntax(String),
    /// A category Triton does not define.
    #[error(
        "unknown category '{0}' (known: health, metadata, inference, shared-memory, model-config, model-repository, statistics, trace, logging)"
    )]
    UnknownCategory(String),
    /// A category named by two flags.
    #[error("category '{0}' is restricted by more than one flag")]
    Duplicate(Category),
    /// A header name HTTP does not allow.
    #[error("'{0}' is not a valid HTTP header name")]
    HeaderName(String),
}

/// The header a category requires and the value it must carry.
#[derive(Clone, PartialEq, Eq)]
pub struct Requirement {
    header: String,
    value: Vec<u8>,
}

impl fmt::Debug for Requirement {
    // The value is a shared secret: never logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requirement").field("header", &self.header).finish_non_exhaustive()
    }
}

impl Requirement {
    /// The header's name, lowercase.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// Whether `sent` is the expected value; the comparison takes the same time wherever the
    /// first difference is, so the value cannot be guessed byte by byte from response times.
    fn matches(&self, sent: Option<&[u8]>) -> bool {
        sent.is_some_and(|sent| bool::from(sent.ct_eq(&self.value)))
    }
}

/// The restrictions of one protocol: for each category, the header it requires, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestrictedApis {
    by_category: [Option<Arc<Requirement>>; 9],
}

/// A request refused by a restriction; the message is Triton's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("This API is restricted, expecting header '{header}'")]
pub struct Denied {
    /// The header the request lacked or had with a wrong value.
    pub header: String,
}

/// The prefix Triton puts before the configured header on gRPC.
pub const GRPC_HEADER_PREFIX: &str = "triton-grpc-protocol-";

impl RestrictedApis {
    /// Parses the values of `--http-restricted-api` (repeatable); `header_prefix` is put before
    /// each header name (empty for HTTP, [`GRPC_HEADER_PREFIX`] for gRPC).
    pub fn parse(flags: &[String], header_prefix: &str) -> Result<RestrictedApis, RestrictedApiError> {
        let mut apis = RestrictedApis::default();
        for flag in flags {
            let syntax = || RestrictedApiError::Syntax(flag.clone());
            let (categories, setting) = flag.split_once(':').ok_or_else(syntax)?;
            let (header, value) = setting.split_once('=').ok_or_else(syntax)?;
            let (categories, header) = (categories.trim(), header.trim());
            if categories.is_empty() || header.is_empty() || value.is_empty() {
                return Err(syntax());
            }
            let header = format!("{header_prefix}{}", header.to_ascii_lowercase());
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(RestrictedApiError::HeaderName(header));
            }
            let requirement = Arc::new(Requirement { header, value: value.as_bytes().to_vec() });
            for category in categories.split(',') {
                let category: Category = category.trim().parse()?;
                let slot = &mut apis.by_category[category.index()];
                if slot.is_some() {
                    return Err(RestrictedApiError::Duplicate(category));
                }
                *slot = Some(requirement.clone());
            }
        }
        Ok(apis)
    }

    /// Whether any category is restricted.
    pub fn is_empty(&self) -> bool {
        self.by_category.iter().all(Option::is_none)
    }

    /// The requirement of `category`, if it is restricted.
    pub fn requirement(&self, category: Category) -> Option<&Requirement> {
        self.by_category[category.index()].as_deref()
    }

    /// Checks a request of `category`; `header` looks a header up by its lowercase name.
    pub fn check<'a>(&self, category: Category, header: impl FnOnce(&str) -> Option<&'a [u8]>) -> Result<(), Denied> {
        match self.requirement(category) {
            None => Ok(()),
            Some(requirement) if requirement.matches(header(requirement.header())) => Ok(()),
            Some(requirement) => Err(Denied { header: requirement.header.clone() }),
        }
    }
}

/// The category of a gRPC method (`/inference.GRPCInferenceService/<Method>`), as Triton groups
/// them; `None` for a path that is not one of its methods (tonic answers UNIMPLEMENTED).
pub fn grpc_category(path: &str) -> Option<Category> {
    let method = path.rsplit_once('/').map_or(path, |(_, m)| m);
    Some(match method {
        "ServerLive" | "ServerReady" | "ModelReady" => Category::Health,
        "ServerMetadata" | "ModelMetadata" => Category::Metadata,
        "ModelInfer" | "ModelStreamInfer" => Category::Inference,
        "ModelConfig" => Category::ModelConfig,
        "ModelStatistics" => Category::Statistics,
        "RepositoryIndex" | "RepositoryModelLoad" | "RepositoryModelUnload" => Category::ModelRepository,
        "TraceSetting" => Category::Trace,
        "LogSettings" => Category::Logging,
        m if m.contains("SharedMemory") => Category::SharedMemory,
        _ => return None,
    })
}

/// A gRPC service behind `--grpc-restricted-protocol`: a call of a restricted category without
/// the header is answered UNAVAILABLE before it reaches the service, as Triton answers it.
#[derive(Debug, Clone)]
pub struct RestrictedService<S> {
    inner: S,
    apis: Arc<RestrictedApis>,
}

impl<S> RestrictedService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, apis: RestrictedApis) -> Self {
        RestrictedService { inner, apis: Arc::new(apis) }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for RestrictedService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower_service::Service<http::Request<B>> for RestrictedService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures_util::future::Either<S::Future, std::future::Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(category) = grpc_category(request.uri().path()) {
            let headers = request.headers();
            if let Err(denied) = self.apis.check(category, |name| headers.get(name).map(http::HeaderValue::as_bytes)) {
                let message = format!("This protocol is restricted, expecting header '{}'", denied.header);
                return futures_util::future::Either::Right(std::future::ready(Ok(tonic::Status::unavailable(message).into_http())));
            }
        }
        futures_util::future::Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<RestrictedApis, RestrictedApiError> {
        RestrictedApis::parse(&flags.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "")
    }

    #[test]
    fn parses_triton_syntax() {
        let apis = parse(&["model-repository,model-config:Admin-Key=s3cret", "inference:infer-key=v=1"]).unwrap();
        let repo = apis.requirement(Category::ModelRepository).unwrap();
        assert_eq!(repo.header(), "admin-key");
        assert_eq!(apis.requirement(Category::ModelConfig), Some(repo));
        // Only the first '=' splits: the value may hold one.
        assert!(apis.check(Category::Inference, |_| Some(b"v=1")).is_ok());
        assert!(apis.requirement(Category::Health).is_none());
        assert!(!apis.is_empty());
        assert!(parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_syntax_names_the_problem() {
        assert_eq!(parse(&["model-repository"]), Err(RestrictedApiError::Syntax("model-repository".into())));
        assert_eq!(parse(&["model-repository:key"]), Err(RestrictedApiError::Syntax("model-repository:key".into())));
        assert_eq!(parse(&[":k=v"]), Err(RestrictedApiError::Syntax(":k=v".into())));
        assert_eq!(parse(&["health:=v"]), Err(RestrictedApiError::Syntax("health:=v".into())));
        assert_eq!(parse(&["health:k="]), Err(RestrictedApiError::Syntax("health:k=".into())));
        assert_eq!(parse(&["health,bogus:k=v"]), Err(RestrictedApiError::UnknownCategory("bogus".into())));
        assert_eq!(parse(&["health:k=v", "metadata,health:k2=v"]), Err(RestrictedApiError::Duplicate(Category::Health)));
        assert!(matches!(parse(&["health:bad header=v"]), Err(RestrictedApiError::HeaderName(_))));
        let message = parse(&["health,bogus:k=v"]).unwrap_err().to_string();
        assert!(message.contains("bogus") && message.contains("model-repository"), "{message}");
    }

    #[test]
    fn check_needs_the_exact_value() {
        let apis = parse(&["model-repository:admin-key=s3cret"]).unwrap();
        let denied = Denied { header: "admin-key".into() };
        assert_eq!(apis.check(Category::ModelRepository, |_| None), Err(denied.clone()));
        assert_eq!(apis.check(Category::ModelRepository, |_| Some(b"s3cre")), Err(denied.clone()));
        assert_eq!(apis.check(Category::ModelRepository, |_| Some(b"s3cret!")), Err(denied.clone()));
        assert_eq!(apis.check(Category::ModelRepository, |h| (h == "admin-key").then_some(&b"s3cret"[..])), Ok(()));
        assert_eq!(apis.check(Category::Inference, |_| None), Ok(()));
        assert_eq!(denied.to_string(), "This API is restricted, expecting header 'admin-key'");
    }

    #[test]
    fn grpc_headers_carry_tritons_prefix() {
        let apis = RestrictedApis::parse(&["inference:infer-key=v".to_string()], GRPC_HEADER_PREFIX).unwrap();
        assert_eq!(apis.requirement(Category::Inference).unwrap().header(), "triton-grpc-protocol-infer-key");
    }

    #[test]
    fn grpc_methods_fall_in_tritons_categories() {
        let path = |m: &str| format!("/inference.GRPCInferenceService/{m}");
        assert_eq!(grpc_category(&path("ServerLive")), Some(Category::Health));
        assert_eq!(grpc_category(&path("ModelReady")), Some(Category::Health));
        assert_eq!(grpc_category(&path("ServerMetadata")), Some(Category::Metadata));
        assert_eq!(grpc_category(&path("ModelInfer")), Some(Category::Inference));
        assert_eq!(grpc_category(&path("ModelStreamInfer")), Some(Category::Inference));
        assert_eq!(grpc_category(&path("ModelConfig")), Some(Category::ModelConfig));
        assert_eq!(grpc_category(&path("ModelStatistics")), Some(Category::Statistics));
        assert_eq!(grpc_category(&path("RepositoryModelLoad")), Some(Category::ModelRepository));
        assert_eq!(grpc_category(&path("SystemSharedMemoryStatus")), Some(Category::SharedMemory));
        assert_eq!(grpc_category(&path("Nope")), None);
    }

    #[test]
    fn the_secret_is_not_logged() {
        let apis = parse(&["health:k=topsecret"]).unwrap();
        assert!(!format!("{apis:?}").contains("topsecret"));
    }
}
