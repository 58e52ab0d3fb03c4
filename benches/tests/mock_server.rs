//! `quiver bench` end to end against a mock V2 server that checks every request it gets: the
//! binary tensor layout, the headers, and the shapes the flags ask for.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use quiver_benches::{run_with_output, BenchArgs};
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[derive(Default)]
struct Mock {
    /// Serve `/metrics`.
    metrics: bool,
    /// Successful infer requests and rows.
    successes: AtomicU64,
    rows: AtomicU64,
    /// Infer requests seen (every tenth is answered 503).
    seen: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(body.into())).unwrap()
}

/// Checks a plain-JSON infer request; returns the batch size or what is wrong.
fn check_json_infer(headers: &hyper::HeaderMap, body: &[u8]) -> Result<u64, String> {
    if headers.get("inference-header-content-length").is_some() {
        return Err("binary header on a JSON body".into());
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let inputs = request["inputs"].as_array().ok_or("no inputs")?;
    let expect = [("x", "FP32", vec![2, 4]), ("ids", "INT64", vec![2, 3])];
    if inputs.len() != expect.len() {
        return Err(format!("{} inputs", inputs.len()));
    }
    for (input, (name, datatype, shape)) in inputs.iter().zip(expect) {
        if input["name"] != name || input["datatype"] != datatype || input["shape"] != json!(shape) {
            return Err(format!("unexpected input {input}"));
        }
        let data = input["data"].as_array().ok_or("no data")?;
        if data.len() != shape.iter().product::<usize>() || !data.iter().all(Value::is_number) {
            return Err(format!("data of {name}: {data:?}"));
        }
    }
    Ok(2)
}

/// Checks an infer request; returns the batch size or what is wrong.
fn check_infer(headers: &hyper::HeaderMap, body: &[u8]) -> Result<u64, String> {
    if headers.get("content-type").map(|v| v.as_bytes()) == Some(b"application/json") {
        return check_json_infer(headers, body);
    }
    let json_len: usize = headers
        .get("inference-header-content-length")
        .ok_or("no Inference-Header-Content-Length")?
        .to_str()
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    if headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/octet-stream") {
        return Err("content-type".into());
    }
    let header: Value = serde_json::from_slice(body.get(..json_len).ok_or("short body")?).map_err(|e| e.to_string())?;
    if header["parameters"]["binary_data_output"] != json!(true) {
        return Err("binary_data_output missing".into());
    }
    let inputs = header["inputs"].as_array().ok_or("no inputs")?;
    let mut binary = 0;
    let expect = [("x", "FP32", vec![2, 4], 32), ("ids", "INT64", vec![2, 3], 48)];
    if inputs.len() != expect.len() {
        return Err(format!("{} inputs", inputs.len()));
    }
    for (input, (name, datatype, shape, size)) in inputs.iter().zip(expect) {
        if input["name"] != name || input["datatype"] != datatype || input["shape"] != json!(shape) {
            return Err(format!("unexpected input {input}"));
        }
        if input["parameters"]["binary_data_size"] != json!(size) {
            return Err(format!("binary_data_size of {input}"));
        }
        binary += size;
    }
    if body.len() != json_len + binary {
        return Err(format!("body is {} bytes, header says {}", body.len(), json_len + binary));
    }
    // INT64 ids are small non-negative integers.
    let ids = &body[json_len + 32..];
    if !ids.chunks(8).all(|c| (0..100).contains(&i64::from_le_bytes(c.try_into().unwrap()))) {
        return Err("ids out of range".into());
    }
    Ok(2)
}

async fn handle(mock: Arc<Mock>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if parts.headers.get("host").is_none() {
        return Ok(reply(StatusCode::BAD_REQUEST, "no Host"));
    }
    let response = match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/v2/models/m") => reply(
            StatusCode::OK,
            json!({"name": "m", "versions": ["1"], "platform": "mock",
                   "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                              {"name": "ids", "datatype": "INT64", "shape": [-1, -1]}],
                   "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]})
            .to_string(),
        ),
        ("GET", "/v2/models/m/config") => reply(StatusCode::OK, r#"{"name":"m","max_batch_size":8}"#),
        ("GET", "/metrics") if mock.metrics => {
            let ok = mock.successes.load(Ordering::SeqCst);
            let rows = mock.rows.load(Ordering::SeqCst);
            // Half of the successes in each of two versions; every two requests share a batch.
            let mut text = String::from("# HELP nv_inference_count x\n# TYPE nv_inference_count counter\n");
            for v in ["1", "2"] {
                text += &format!(
                    "nv_inference_request_success{{model=\"m\",version=\"{v}\"}} {}\n\
                     nv_inference_count{{model=\"m\",version=\"{v}\"}} {}\n\
                     nv_inference_exec_count{{model=\"m\",version=\"{v}\"}} {}\n\
                     nv_inference_queue_duration_us{{model=\"m\",version=\"{v}\"}} {}\n\
                     nv_inference_compute_infer_duration_us{{model=\"m\",version=\"{v}\"}} {}\n\
                     nv_inference_count{{model=\"other\",version=\"{v}\"}} 999999\n",
                    ok as f64 / 2.0,
                    rows as f64 / 2.0,
                    ok as f64 / 4.0,
                    ok * 50,
                    ok * 25,
                );
            }
            reply(StatusCode::OK, text)
        }
        ("POST", "/v2/models/m/infer") => match check_infer(&parts.headers, &body) {
            Err(e) => reply(StatusCode::BAD_REQUEST, json!({ "error": e }).to_string()),
            Ok(_) if mock.seen.fetch_add(1, Ordering::SeqCst) % 10 == 9 => reply(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"busy"}"#),
            Ok(rows) => {
                mock.successes.fetch_add(1, Ordering::SeqCst);
                mock.rows.fetch_add(rows, Ordering::SeqCst);
                let header =
                    r#"{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[2,1],"parameters":{"binary_data_size":8}}]}"#;
                let mut out = header.as_bytes().to_vec();
                out.extend_from_slice(&[0; 8]);
                let mut r = reply(StatusCode::OK, out);
                r.headers_mut().insert("inference-header-content-length", header.len().into());
                r
            }
        },
        _ => reply(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    };
    Ok(response)
}

async fn start(mock: Arc<Mock>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            mock.connections.fetch_add(1, Ordering::SeqCst);
            let mock = mock.clone();
            tokio::spawn(async move {
                let service = service_fn(move |r| handle(mock.clone(), r));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn args(addr: SocketAddr, extra: &[&str]) -> BenchArgs {
    let url = format!("http://{addr}");
    // Windows of 200 ms; 100% stability, so three windows are always stable.
    let base = ["bench", "-m", "m", "-u", &url, "-p", "200", "-s", "100", "-r", "5", "--warmup", "0.1", "--json"];
    Cli::parse_from(base.iter().chain(extra)).args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_a_v2_server() {
    let mock = Arc::new(Mock { metrics: true, ..Default::default() });
    let addr = start(mock.clone()).await;
    let mut out = Vec::new();
    let reports = run_with_output(args(addr, &["--concurrency-range", "1:3:2", "-b", "2", "--shape", "ids:3"]), &mut out).await.unwrap();
    // --json: one object per level, the same as the returned reports.
    let lines: Vec<Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["concurrency"], 3);
    assert_eq!(lines[1]["requests"], reports[1].requests);

    assert_eq!(reports.iter().map(|r| r.concurrency).collect::<Vec<_>>(), [Some(1), Some(3)]);
    for r in &reports {
        assert_eq!((r.windows, r.stable, r.request_rate), (3, Some(true), None), "{r:?}");
        assert!(r.requests > 10, "{r:?}");
        assert_eq!(r.errors.keys().collect::<Vec<_>>(), ["503"], "{r:?}");
        let errors = r.errors["503"] as f64 / (r.requests + r.errors["503"]) as f64;
        assert!((0.05..0.15).contains(&errors), "{r:?}");
        assert!((r.throughput_infer_per_s - 2.0 * r.requests_per_s).abs() < 1e-6);
        assert!((r.duration_s - 0.6).abs() < 1e-9);
        assert!((r.requests_per_s - r.requests as f64 / 0.6).abs() < 1e-6);
        let l = r.latency_us;
        assert!(0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, "{l:?}");
        let server = r.server.expect("the mock serves metrics");
        // Summed over both versions, and only for model "m".
        // (rows and successes are two counters, so a scrape may fall between their updates).
        assert!((server.avg_batch_size.unwrap() - 4.0).abs() < 0.05, "{server:?}");
        assert_eq!(server.queue_us_per_request, Some(100.0), "{server:?}");
        assert_eq!(server.compute_infer_us_per_request, Some(50.0), "{server:?}");
        // The server's window and the client's nearly coincide.
        let server_ok = server.delta.request_success;
        assert!((server_ok - r.requests as f64).abs() <= 0.2 * r.requests as f64 + 5.0, "{server_ok} vs {}", r.requests);
    }
    // One connection for the model's metadata, one for the metrics, then one per worker:
    // reused across requests, windows and levels.
    assert_eq!(mock.connections.load(Ordering::SeqCst), 1 + 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_without_metrics_and_reports_bad_settings() {
    let mock = Arc::new(Mock::default());
    let addr = start(mock).await;
    let mut table = Vec::new();
    let mut a = args(addr, &["--concurrency", "2", "--shape", "ids:3", "-b", "2"]);
    a.json = false;
    let reports = run_with_output(a, &mut table).await.unwrap();
    let table = String::from_utf8(table).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].trim_start().starts_with("concurrency"), "{table}");
    assert!(lines[1].trim_start().starts_with('2') && lines[1].ends_with("-    yes"), "{table}");
    assert_eq!(reports.len(), 1);
    assert!(reports[0].requests > 0);
    assert_eq!(reports[0].server, None);

    let err = |extra: &[&str]| {
        let a = args(addr, extra);
        async move { run_with_output(a, &mut Vec::new()).await.unwrap_err().to_string() }
    };
    assert!(err(&["-b", "2"]).await.contains("--shape ids"));
    assert!(err(&["-b", "9", "--shape", "ids:3"]).await.contains("max_batch_size 8"));
    assert!(err(&["-i", "grpc", "--input-tensor-format", "json"]).await.contains("raw contents"));
    assert!(err(&["--shape", "ids:3", "--plot", "x.jpg"]).await.contains(".png or .svg"));
    let mut no_trials = args(addr, &["--shape", "ids:3"]);
    no_trials.max_trials = 0;
    assert!(run_with_output(no_trials, &mut Vec::new()).await.unwrap_err().to_string().contains("--max-trials"));
    assert!(err(&["--shape", "ids:3", "--input-data", "/nonexistent.json"]).await.contains("/nonexistent.json"));
    let mut unknown = args(addr, &[]);
    unknown.model = "nope".into();
    assert!(run_with_output(unknown, &mut Vec::new()).await.unwrap_err().to_string().contains("404"));

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    assert!(run_with_output(args(closed, &[]), &mut Vec::new()).await.unwrap_err().to_string().contains("cannot connect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_holds_the_offered_rate() {
    let mock = Arc::new(Mock { metrics: true, ..Default::default() });
    let addr = start(mock.clone()).await;
    let mut out = Vec::new();
    let a = args(addr, &["--request-rate-range", "100:300:200", "--request-distribution", "poisson", "--shape", "ids:3", "-b", "2"]);
    let reports = run_with_output(a, &mut out).await.unwrap();
    assert_eq!(reports.iter().map(|r| r.request_rate).collect::<Vec<_>>(), [Some(100.0), Some(300.0)]);
    for r in &reports {
        assert_eq!(r.concurrency, None);
        let rate = r.request_rate.unwrap();
        // Every request counts, answered or 503: the mock keeps up, so the offered rate is
        // what arrives (Poisson: within a generous band over 0.6 s).
        let sent = (r.requests + r.errors.values().sum::<u64>()) as f64 / r.duration_s;
        assert!((sent / rate - 1.0).abs() < 0.35, "{sent} req/s at {rate}: {r:?}");
        assert_eq!(r.delayed, 0, "128 connections to spare: {r:?}");
        let l = r.latency_us;
        assert!(0 < l.p50 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
    }
    let lines: Vec<Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["request_rate"], 100.0);
    assert!(lines[0]["concurrency"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_tensors_csv_and_plot() {
    let mock = Arc::new(Mock::default());
    let addr = start(mock.clone()).await;
    let dir = std::env::temp_dir().join(format!("quiver-bench-mock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (csv, plot, data) = (dir.join("levels.csv"), dir.join("sweep.svg"), dir.join("data.json"));
    // Two steps; a batch of two takes both, and the file gives the ids' shape.
    std::fs::write(
        &data,
        json!({"data": [
            {"x": [1, 2, 3, 4], "ids": {"content": [1, 2, 3], "shape": [3]}},
            {"x": [5, 6, 7, 8], "ids": {"content": [4, 5, 6], "shape": [3]}},
        ]})
        .to_string(),
    )
    .unwrap();
    let a = args(
        addr,
        &[
            "--concurrency-range",
            "1:2",
            "-b",
            "2",
            "--input-data",
            data.to_str().unwrap(),
            "--input-tensor-format",
            "json",
            "--output-tensor-format",
            "json",
            "--csv",
            csv.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    let reports = run_with_output(a, &mut Vec::new()).await.unwrap();
    for r in &reports {
        // Any request the mock found malformed would be a 400.
        assert_eq!(r.errors.keys().collect::<Vec<_>>(), ["503"], "{r:?}");
        assert!(r.requests > 10);
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.starts_with("model,protocol,concurrency,request_rate,"));
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
    std::fs::remove_dir_all(dir).unwrap();
}
