//! s3:// fetching against moto's S3 server (`moto[server]` in tests/requirements.txt).
//!
//! The Python comes from `QUIVER_TEST_PYTHON`, else `target/pyenv/bin/python` under the
//! workspace root; without either this test fails (it never passes silently).

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use object_store::{aws::AmazonS3Builder, path::Path, ObjectStoreExt, PutPayload};
use quiver_control_plane::storage::{fetch, fetch_with, inspect, FetchOptions, ModelLayout, Progress, StorageError};

fn no_progress(_: Progress) {}

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("QUIVER_TEST_PYTHON") {
        // A relative path is the workspace's (cargo runs the test in the crate's directory).
        let python = PathBuf::from(python);
        return if python.is_relative() { PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(python) } else { python };
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
    assert!(
        venv.exists(),
        "no Python for the S3 test: run `bash tests/setup-venv.sh` (creates target/pyenv with moto[server]) or set QUIVER_TEST_PYTHON"
    );
    venv
}

/// moto's server on a free port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let python = python();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} -m moto.server ({e}): run `bash tests/setup-venv.sh`", python.display()));
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.request("GET", "/").is_none() {
            assert!(
                Instant::now() < deadline,
                "moto.server did not answer on port {port} (is moto[server] installed? run `bash tests/setup-venv.sh`)"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        moto
    }

    /// A bare HTTP/1.1 request; the status line's code.
    fn request(&self, method: &str, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port);
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn s3_object_and_prefix() {
    let moto = Moto::start();
    // The one test in this binary: the process environment is the documented way to configure S3.
    std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", moto.port));
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ALLOW_HTTP", "true");
    assert_eq!(moto.request("PUT", "/models"), Some(200), "create the bucket");

    let store = AmazonS3Builder::from_env().with_bucket_name("models").build().unwrap();
    let onnx = b"\x08\x07an onnx model".to_vec();
    for (key, bytes) in [
        ("single/model.onnx", onnx.clone()),
        ("repo/m/config.pbtxt", b"max_batch_size: 2".to_vec()),
        ("repo/m/1/model.onnx", onnx.clone()),
        ("repo/m/2/model.onnx", onnx.clone()),
    ] {
        store.put(&Path::from(key), PutPayload::from(bytes)).await.unwrap();
    }

    let cache = tempfile::tempdir().unwrap();
    let file = fetch("s3://models/single/model.onnx", cache.path(), &no_progress).await.unwrap();
    assert!(!file.from_cache);
    assert_eq!(std::fs::read(&file.path).unwrap(), onnx);
    assert_eq!(inspect(&file.path, "onnx").unwrap(), ModelLayout::OnnxFile(file.path.clone()));
    let again = fetch("s3://models/single/model.onnx", cache.path(), &no_progress).await.unwrap();
    assert!(again.from_cache);
    assert_eq!(again.digest, file.digest);

    let dir = fetch("s3://models/repo/m/", cache.path(), &no_progress).await.unwrap();
    assert!(!dir.from_cache);
    assert!(dir.path.is_dir());
    assert_eq!(std::fs::read(dir.path.join("2/model.onnx")).unwrap(), onnx);
    assert_eq!(std::fs::read(dir.path.join("config.pbtxt")).unwrap(), b"max_batch_size: 2");
    assert_eq!(dir.bytes, 2 * onnx.len() as u64 + 17);
    assert_eq!(inspect(&dir.path, "onnx").unwrap(), ModelLayout::TritonModel(dir.path.clone()));
    let again = fetch("s3://models/repo/m", cache.path(), &no_progress).await.unwrap();
    assert!(again.from_cache);
    assert_eq!(again.digest, dir.digest);

    // A changed object under the prefix is downloaded again.
    store.put(&Path::from("repo/m/2/model.onnx"), PutPayload::from(b"\x08\x08changed".to_vec())).await.unwrap();
    let changed = fetch("s3://models/repo/m", cache.path(), &no_progress).await.unwrap();
    assert!(!changed.from_cache);
    assert_ne!(changed.digest, dir.digest);

    let few = FetchOptions { max_files: 2, ..FetchOptions::default() };
    let err = fetch_with("s3://models/repo/m", tempfile::tempdir().unwrap().path(), &few, &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::TooManyFiles { limit: 2, .. }), "{err}");
    let err = fetch("s3://models/absent", cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err}");
    let err = fetch("s3://no-such-bucket/k", cache.path(), &no_progress).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. } | StorageError::S3 { .. }), "{err}");
}
