//! The HTTP ceiling: a bare hyper HTTP/1.1 server that speaks just enough of the V2 protocol for
//! `quiver bench` and answers every infer request with a fixed response, doing no model work.
//! What it serves per second is the most any V2 REST server can on the same machine and stack.
//!
//! `target/release/hello --metadata MODEL.json [--port 8000] [--address 127.0.0.1]`
//!
//! Routes: `GET /v2/health/live|ready` and `GET /v2/models/{m}/ready` → 200; `GET
//! /v2/models/{m}` → the metadata file; `GET /v2/models/{m}/config` → 404 (a plain V2 server,
//! not Triton); `POST /v2/models/{m}/infer` → the whole body is read, then a fixed V2 JSON
//! response with every output of the metadata (its -1 dimensions as 1, zeros); else 404.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Serves a fixed V2 model over bare hyper.
#[derive(Debug, Parser)]
#[command(name = "hello")]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    /// A V2 model metadata object (`GET /v2/models/{m}` of the real model), served as is.
    #[arg(long, value_name = "FILE.json")]
    metadata: PathBuf,
}

/// The two bodies the server sends, built once.
struct Bodies {
    /// The metadata file's bytes.
    metadata: Bytes,
    /// The infer response.
    infer: Bytes,
}

/// The infer response for `metadata`: every declared output, zeros, -1 dimensions as 1.
fn infer_response(metadata: &Value) -> Bytes {
    let outputs: Vec<Value> = metadata["outputs"]
        .as_array()
        .map(|outs| {
            outs.iter()
                .map(|o| {
                    let shape: Vec<u64> = o["shape"].as_array().map_or(vec![1], |s| s.iter().map(|d| d.as_u64().unwrap_or(1)).collect());
                    let zeros = vec![0; shape.iter().product::<u64>() as usize];
                    json!({ "name": o["name"], "datatype": o["datatype"], "shape": shape, "data": zeros })
                })
                .collect()
        })
        .unwrap_or_default();
    Bytes::from(json!({ "model_name": metadata["name"], "outputs": outputs }).to_string())
}

/// A response with `status` and `body`, JSON when `json`.
fn reply(status: StatusCode, body: Bytes, json: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if json {
        response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    }
    response
}

/// Routes one request.
async fn handle(bodies: &'static Bodies, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    Ok(match (&parts.method, segments.as_slice()) {
        (&Method::POST, ["v2", "models", _, "infer"]) => match body.collect().await {
            Ok(_) => reply(StatusCode::OK, bodies.infer.clone(), true),
            Err(e) => reply(StatusCode::BAD_REQUEST, Bytes::from(json!({ "error": e.to_string() }).to_string()), true),
        },
        (&Method::GET, ["v2", "models", _]) => reply(StatusCode::OK, bodies.metadata.clone(), true),
        (&Method::GET, ["v2", "health", "live" | "ready"] | ["v2", "models", _, "ready"]) => reply(StatusCode::OK, Bytes::new(), false),
        _ => reply(StatusCode::NOT_FOUND, Bytes::from_static(br#"{"error":"not found"}"#), true),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let raw = std::fs::read(&args.metadata).with_context(|| format!("reading {}", args.metadata.display()))?;
    let metadata: Value = serde_json::from_slice(&raw).with_context(|| format!("parsing {}", args.metadata.display()))?;
    anyhow::ensure!(metadata["name"].is_string() && metadata["inputs"].is_array(), "{} is not V2 model metadata", args.metadata.display());
    let bodies: &'static Bodies = Box::leak(Box::new(Bodies { infer: infer_response(&metadata), metadata: Bytes::from(raw) }));
    let listener = TcpListener::bind(SocketAddr::new(args.address, args.port)).await.context("binding")?;
    println!("hello: HTTP server listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("hello: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await; // e.g. out of file descriptors
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(bodies, request));
            // Ends when the client closes the connection (or sends garbage).
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
