//! storageUri fetching: local paths, http(s) through a real in-test hyper server, and `inspect`.

use std::{
    convert::Infallible,
    fs,
    net::SocketAddr,
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::{body::Frame, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use quiver_control_plane::storage::{self, fetch, fetch_with, inspect, FetchOptions, ModelLayout, Progress, StorageError};
use sha2::{Digest, Sha256};

/// Starts like an ONNX ModelProto (field 1, ir_version), which is all `inspect` looks at.
const MODEL: &[u8] = b"\x08\x07pretend this is an onnx model";

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn no_progress(_: Progress) {}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: &'static [u8]) -> Body {
    Full::new(Bytes::from_static(bytes)).map_err(|never| match never {}).boxed()
}

/// GET/HEAD /model.onnx (ETag, Last-Modified), /missing (404), /forbidden (403), /truncated
/// (Content-Length 1000, 10 bytes, then the connection drops). Counts GETs per path.
fn respond(req: Request<hyper::body::Incoming>, gets: &Mutex<Vec<String>>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if req.method() == hyper::Method::GET {
        gets.lock().unwrap().push(req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default());
    }
    let ok = |body: Body, length: usize| {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-length", length)
            .header("etag", "\"v1\"")
            .header("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT")
            .body(body)
            .unwrap()
    };
    match path.as_str() {
        "/model.onnx" => ok(full(MODEL), MODEL.len()),
        "/truncated" => {
            let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> =
                vec![Ok(Frame::data(Bytes::from_static(b"0123456789"))), Err(std::io::Error::other("connection dropped"))];
            ok(StreamBody::new(futures_util::stream::iter(chunks)).boxed(), 1000)
        }
        "/forbidden" => Response::builder().status(StatusCode::FORBIDDEN).body(full(b"no")).unwrap(),
        _ => Response::builder().status(StatusCode::NOT_FOUND).body(full(b"not here")).unwrap(),
    }
}

struct Server {
    addr: SocketAddr,
    gets: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gets = Arc::new(Mutex::new(Vec::new()));
        let served = gets.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let gets = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let gets = gets.clone();
                        async move { Ok::<_, Infallible>(respond(req, &gets)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Server { addr, gets }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn gets(&self, path: &str) -> usize {
        self.gets.lock().unwrap().iter().filter(|p| p.split('?').next() == Some(path)).count()
    }
}

fn cache_is_clean(cache: &Path) {
    for dir in ["sha256", "tmp"] {
        let entries: Vec<_> = fs::read_dir(cache.join(dir)).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(entries.is_empty(), "{dir} holds {entries:?}");
    }
}

#[tokio::test]
async fn http_download_then_cache_hit() {
    let server = Server::start().await;
    let cache = tempfile::tempdir().unwrap();
    let reports = AtomicUsize::new(0);
    let progress = |p: Progress| {
        assert_eq!(p.total_bytes, Some(MODEL.len() as u64));
        reports.fetch_add(1, Ordering::Relaxed);
    };
    let first = fetch(&server.url("/model.onnx"), cache.path(), &progress).await.unwrap();
    assert!(!first.from_cache);
    assert_eq!(first.digest, sha(MODEL));
    assert_eq!(first.bytes, MODEL.len() as u64);
    assert_eq!(first.path, cache.path().join("sha256").join(sha(MODEL)));
    assert_eq!(fs::read(&first.path).unwrap(), MODEL);
    assert!(reports.load(Ordering::Relaxed) >= 1);

    let second = fetch(&server.url("/model.onnx"), cache.path(), &no_progress).await.unwrap();
    assert!(second.from_cache);
    assert_eq!(second.path, first.path);
    assert_eq!(server.gets("/model.onnx"), 1, "the second fetch must not download again");

    // A signed URL's query string reaches the server; the content is the same cache entry.
    let signed = fetch(&server.url("/model.onnx?X-Signature=abc"), cache.path(), &no_progress).await.unwrap();
    assert_eq!(signed.path, first.path);
    assert_eq!(server.gets("/model.onnx"), 2);
    assert!(server.gets.lock().unwrap().iter().any(|p| p == "/model.onnx?X-Signature=abc"));

    // With the right digest in the URI, the cache answers without asking the server.
    let pinned = fetch(&format!("{}#sha256={}", server.url("/model.onnx"), sha(MODEL)), cache.path(), &no_progress).await.unwrap();
    assert!(pinned.from_cache);
    assert_eq!(server.gets("/model.onnx"), 2);
    assert_eq!(inspect(&first.path, "onnx").unwrap(), ModelLayout::OnnxFile(first.path.clone()));
}

#[tokio::test]
async fn http_errors_leave_no_cache_entry() {
    let server = Server::start().await;
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&server.url("/missing"), cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("/missing"), "{err}");

    let err = fetch(&server.url("/forbidden"), cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::HttpStatus { status: 403, .. }), "{err}");

    let err = fetch(&server.url("/truncated"), cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::Transfer { .. } | StorageError::SizeMismatch { .. }), "{err}");
    cache_is_clean(cache.path());

    let wrong = "0".repeat(64);
    let err = fetch(&format!("{}#sha256={wrong}", server.url("/model.onnx")), cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(&err, StorageError::DigestMismatch { expected, actual, .. } if *expected == wrong && *actual == sha(MODEL)), "{err}");
    cache_is_clean(cache.path());

    let small = FetchOptions { max_bytes: 10, ..FetchOptions::default() };
    let err = fetch_with(&server.url("/model.onnx"), cache.path(), &small, &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { limit: 10, .. }), "{err}");
    cache_is_clean(cache.path());

    let err = fetch("ftp://host/model.onnx", cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::UnsupportedScheme { .. }), "{err}");
}

#[tokio::test]
async fn local_file_and_directory_are_used_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.onnx");
    fs::write(&file, MODEL).unwrap();
    let fetched = fetch(file.to_str().unwrap(), cache.path(), &no_progress).await.unwrap();
    assert_eq!(fetched.path, fs::canonicalize(&file).unwrap());
    assert_eq!(fetched.digest, sha(MODEL));
    assert!(!fetched.from_cache);
    let via_scheme = fetch(&format!("file://{}#sha256={}", file.display(), sha(MODEL)), cache.path(), &no_progress).await.unwrap();
    assert_eq!(via_scheme.path, fetched.path);
    let err = fetch(&format!("file://{}#sha256={}", file.display(), "1".repeat(64)), cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");

    let model = dir.path().join("m");
    fs::create_dir_all(model.join("1")).unwrap();
    fs::write(model.join("config.pbtxt"), b"max_batch_size: 4").unwrap();
    fs::write(model.join("1/model.onnx"), MODEL).unwrap();
    let fetched = fetch(model.to_str().unwrap(), cache.path(), &no_progress).await.unwrap();
    let expected = sha(format!("1/model.onnx\0{}\nconfig.pbtxt\0{}\n", sha(MODEL), sha(b"max_batch_size: 4")).as_bytes());
    assert_eq!(fetched.digest, expected);
    assert_eq!(fetched.bytes, MODEL.len() as u64 + 17);
    assert_eq!(inspect(&fetched.path, "onnx").unwrap(), ModelLayout::TritonModel(fetched.path.clone()));

    let few = FetchOptions { max_files: 1, ..FetchOptions::default() };
    let err = fetch_with(model.to_str().unwrap(), cache.path(), &few, &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::TooManyFiles { limit: 1, .. }), "{err}");

    let missing = dir.path().join("nope");
    let err = fetch(missing.to_str().unwrap(), cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    cache_is_clean(cache.path());
}

#[test]
fn inspect_layouts_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, bytes: &[u8]| {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    };
    write("single/x.onnx", b"m");
    write("named/model.onnx", b"m");
    write("named/other.onnx", b"m");
    write("hf/config.json", b"{}");
    write("hf/tokenizer.json", b"{}");
    write("hf/model.safetensors", b"");
    write("skl/model.joblib", b"");
    write("xgb/model.ubj", b"");
    write("lgbm/model.txt", b"");
    write("two/a.onnx", b"m");
    write("two/b.onnx", b"m");
    write("tritonhf/1/config.json", b"{}");
    write("tritonhf/1/tokenizer.json", b"{}");
    write("tritonhf/1/model.safetensors", b"");
    write("noversion/config.pbtxt", b"");
    write("sklver/1/model.pkl", b"");

    assert_eq!(inspect(&root.join("single/x.onnx"), "onnx").unwrap(), ModelLayout::OnnxFile(root.join("single/x.onnx")));
    assert_eq!(inspect(&root.join("single"), "sklearn").unwrap(), ModelLayout::OnnxFile(root.join("single/x.onnx")));
    assert_eq!(inspect(&root.join("named"), "ONNX").unwrap(), ModelLayout::OnnxFile(root.join("named/model.onnx")));
    assert_eq!(inspect(&root.join("hf"), "huggingface").unwrap(), ModelLayout::HuggingFace(root.join("hf")));
    assert_eq!(inspect(&root.join("tritonhf"), "huggingface").unwrap(), ModelLayout::TritonModel(root.join("tritonhf")));

    let converter = |path: &str, format: &str| match inspect(&root.join(path), format) {
        Err(StorageError::ConversionNeeded { converter, .. }) => converter,
        other => panic!("{path}: {other:?}"),
    };
    assert!(converter("skl", "sklearn").contains("skl2onnx"));
    assert!(converter("skl/model.joblib", "sklearn").contains("to_onnx"));
    assert!(converter("xgb", "xgboost").contains("convert_xgboost"));
    assert!(converter("lgbm", "lightgbm").contains("convert_lightgbm"));
    assert!(converter("sklver", "sklearn").contains("skl2onnx"));

    let err = inspect(&root.join("single/x.onnx"), "huggingface").unwrap_err();
    assert!(matches!(err, StorageError::FormatMismatch { .. }), "{err}");
    let err = inspect(&root.join("single"), "huggingface").unwrap_err();
    assert!(matches!(err, StorageError::FormatMismatch { .. }), "{err}");
    let err = inspect(&root.join("hf"), "onnx").unwrap_err();
    assert!(matches!(err, StorageError::FormatMismatch { .. }), "{err}");
    let err = inspect(&root.join("two"), "onnx").unwrap_err();
    assert!(err.to_string().contains("a.onnx, b.onnx"), "{err}");
    let err = inspect(&root.join("noversion"), "onnx").unwrap_err();
    assert!(err.to_string().contains("version directory"), "{err}");
    let err = inspect(&root.join("skl"), "pytorch").unwrap_err();
    assert!(matches!(err, StorageError::UnsupportedFormat { .. }), "{err}");
    let _ = storage::DEFAULT_MAX_BYTES;
}
