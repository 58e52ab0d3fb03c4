//! OpenAI's embeddings API, as KServe's Hugging Face runtime serves it:
//! `POST /openai/v1/embeddings` with `{"model", "input": str | [str], "encoding_format"}`.
//!
//! It is one more edge over the same router and schedulers as V2 infer: each text becomes a
//! one-row BYTES request for the model's text input, which the dynamic batcher merges, so
//! batching, token budgets and metrics apply. Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.

use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use quiver_core::{DataType, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{json_response, pinned_revision, read_body, status_of, HttpResponse, HttpState};
use crate::{
    infer::{InferInput, InferRequest, RequestedOutput},
    model::VersionInfo,
    validate::ValidRequest,
    ServeError,
};

/// Most texts in one request (OpenAI's bound for `input` arrays).
pub const MAX_INPUTS: usize = 2048;

/// The request body.
#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u64>,
}

/// How the vectors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// JSON numbers.
    Float,
    /// Base64 of the little-endian FP32 bytes.
    Base64,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
struct EmbeddingObject {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Debug, Serialize)]
struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingObject>,
    model: String,
    usage: Usage,
}

/// The texts of `input`: a string or a non-empty list of strings.
fn texts(input: Value) -> Result<Vec<String>, ServeError> {
    let items = match input {
        Value::String(text) => return Ok(vec![text]),
        Value::Array(items) => items,
        _ => return Err(ServeError::invalid("'input' must be a string or a list of strings")),
    };
    if items.is_empty() {
        return Err(ServeError::invalid("'input' is an empty list"));
    }
    if items.len() > MAX_INPUTS {
        return Err(ServeError::invalid(format!("'input' has {} texts, more than the {MAX_INPUTS} accepted", items.len())));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) => Ok(text),
            Value::Number(_) | Value::Array(_) => Err(ServeError::invalid("token id inputs are not supported: send text")),
            _ => Err(ServeError::invalid(format!("'input' element {i} is not a string"))),
        })
        .collect()
}

fn encoding(format: Option<&str>) -> Result<Encoding, ServeError> {
    match format {
        None | Some("float") => Ok(Encoding::Float),
        Some("base64") => Ok(Encoding::Base64),
        Some(other) => Err(ServeError::invalid(format!("encoding_format '{other}' is not one of float, base64"))),
    }
}

/// The text input's name and the embedding output's name and width, if `model` is an
/// embedding model: one BYTES input, a first output of FP32 `[rows, hidden]`.
fn embedding_tensors(model: &VersionInfo) -> Result<(&str, &str, usize), ServeError> {
    let not_embedding = || {
        ServeError::invalid(format!(
            "model '{}' is not a text embedding model (one BYTES input and an FP32 [rows, hidden] output)",
            model.name()
        ))
    };
    let [input] = model.inputs() else { return Err(not_embedding()) };
    let output = model.outputs().first().ok_or_else(not_embedding)?;
    let hidden = match output.shape.as_slice() {
        [_, hidden] if *hidden > 0 => usize::try_from(*hidden).map_err(|_| not_embedding())?,
        _ => return Err(not_embedding()),
    };
    if input.datatype != DataType::Bytes || output.datatype != DataType::Fp32 || input.shape.first() != Some(&-1) {
        return Err(not_embedding());
    }
    Ok((&input.name, &output.name, hidden))
}

/// The V2 request embedding one text: a BYTES tensor of one row, in the shape of the model's
/// input (`[1]`, or `[1, 1]` for dims `[1]`).
fn infer_request(model: &VersionInfo, input: &str, output: &str, text: &str) -> Result<InferRequest, ServeError> {
    let shape = vec![1; model.inputs()[0].shape.len().max(1)];
    let tensor = Tensor::from_bytes_elements(shape, [text.as_bytes()])?;
    Ok(InferRequest {
        inputs: vec![InferInput { name: input.to_string(), tensor }],
        outputs: vec![RequestedOutput { name: output.to_string(), ..Default::default() }],
        ..Default::default()
    })
}

/// An embeddings body, decoded and checked as far as it can be without the model.
pub(crate) struct Decoded {
    /// The model asked for.
    pub(crate) model: String,
    /// The texts to embed.
    pub(crate) texts: Vec<String>,
    encoding: Encoding,
    dimensions: Option<u64>,
}

/// Decodes an embeddings request body.
pub(crate) fn decode(body: &[u8]) -> Result<Decoded, ServeError> {
    let parsed: EmbeddingsRequest =
        serde_json::from_slice(body).map_err(|e| ServeError::invalid(format!("failed to parse the request JSON: {e}")))?;
    let encoding = encoding(parsed.encoding_format.as_deref())?;
    let texts = texts(parsed.input)?;
    Ok(Decoded { model: parsed.model, texts, encoding, dimensions: parsed.dimensions })
}

/// The checked requests of a decoded body for `model`, and the output they answer with.
pub(crate) struct Embedding<'a> {
    /// One request per text.
    pub(crate) requests: Vec<ValidRequest>,
    /// The embedding output's name.
    pub(crate) output: &'a str,
    /// The embedding width.
    pub(crate) hidden: usize,
}

/// One request per text, as text-embeddings-inference queues them: the dynamic batcher merges
/// them again within max_batch_size and the token budget, and padding stays per batch.
pub(crate) fn embedding_requests<'a>(model: &'a VersionInfo, parsed: &Decoded) -> Result<Embedding<'a>, ServeError> {
    let (input, output, hidden) = embedding_tensors(model)?;
    if parsed.dimensions.is_some_and(|d| d != hidden as u64) {
        return Err(ServeError::invalid(format!(
            "model '{}' gives {hidden} dimensions; other 'dimensions' are not supported",
            parsed.model
        )));
    }
    let requests = parsed
        .texts
        .iter()
        .map(|text| infer_request(model, input, output, text).and_then(|r| model.validate_counted(r)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Embedding { requests, output, hidden })
}

/// Serves `POST /openai/v1/embeddings`; errors come back in OpenAI's shape.
pub async fn embeddings(state: &HttpState, request: Request<Incoming>) -> HttpResponse {
    match embed(state, request).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => error_response(&e),
    }
}

async fn embed(state: &HttpState, request: Request<Incoming>) -> Result<Value, ServeError> {
    let pin = pinned_revision(&request)?;
    let (_, body) = read_body(state, request).await?;
    let parsed = decode(&body)?;
    // Routed once: every text goes to the same version (and side of a canary split).
    let routed = state.registry.route(&parsed.model, "", pin)?;
    let info = routed.info().clone();
    let Embedding { requests, output, hidden } = embedding_requests(&info, &parsed)?;
    let answers = routed.infer_all(requests).await?;
    let mut data = Vec::with_capacity(parsed.texts.len());
    let mut prompt_tokens = 0;
    for answer in answers {
        prompt_tokens += answer.tokens.map_or(0, |t| t.total);
        let tensor = answer
            .outputs
            .into_iter()
            .next()
            .map(|o| o.tensor)
            .ok_or_else(|| ServeError::Inference(format!("model '{}' returned no '{output}' output", parsed.model)))?;
        for row in rows(&tensor, hidden)? {
            let index = data.len();
            data.push(EmbeddingObject { object: "embedding", index, embedding: vector(row, parsed.encoding) });
        }
    }
    if data.len() != parsed.texts.len() {
        return Err(ServeError::Inference(format!(
            "model '{}' returned {} embeddings for {} texts",
            parsed.model,
            data.len(),
            parsed.texts.len()
        )));
    }
    let response =
        EmbeddingsResponse { object: "list", data, model: parsed.model, usage: Usage { prompt_tokens, total_tokens: prompt_tokens } };
    serde_json::to_value(&response).map_err(|e| ServeError::Inference(e.to_string()))
}

/// The rows of an FP32 `[rows, hidden]` tensor, as little-endian bytes each.
fn rows(tensor: &Tensor, hidden: usize) -> Result<Vec<Bytes>, ServeError> {
    if tensor.datatype() != DataType::Fp32 || tensor.shape().get(1) != Some(&hidden) || tensor.shape().len() != 2 {
        return Err(ServeError::Inference(format!(
            "the embedding output is {} {:?}, expected FP32 [rows, {hidden}]",
            tensor.datatype(),
            tensor.shape()
        )));
    }
    let row_bytes = hidden * 4;
    Ok((0..tensor.shape()[0]).map(|r| tensor.data().slice(r * row_bytes..(r + 1) * row_bytes)).collect())
}

fn vector(row: Bytes, encoding: Encoding) -> Vector {
    match encoding {
        Encoding::Float => Vector::Float(row.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        Encoding::Base64 => Vector::Base64(base64::engine::general_purpose::STANDARD.encode(&row)),
    }
}

/// OpenAI's error body, with KServe's status mapping.
fn error_response(error: &ServeError) -> HttpResponse {
    let status = status_of(error);
    let kind = if status.is_client_error() { "invalid_request_error" } else { "server_error" };
    json_response(status, &json!({ "error": { "message": error.to_string(), "type": kind, "param": null, "code": null } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_a_string_or_a_list_of_strings() {
        assert_eq!(texts(json!("one")).unwrap(), vec!["one"]);
        assert_eq!(texts(json!(["a", ""])).unwrap(), vec!["a", ""]);
        for bad in [json!([]), json!(7), json!(null), json!([1, 2]), json!([[1]]), json!(["a", {}])] {
            assert!(matches!(texts(bad.clone()), Err(ServeError::InvalidInput(_))), "{bad}");
        }
        let many: Vec<Value> = (0..=MAX_INPUTS).map(|_| json!("x")).collect();
        assert!(texts(Value::Array(many)).unwrap_err().to_string().contains("2049 texts"));
    }

    #[test]
    fn encodings() {
        assert_eq!(encoding(None).unwrap(), Encoding::Float);
        assert_eq!(encoding(Some("base64")).unwrap(), Encoding::Base64);
        assert!(encoding(Some("int8")).is_err());
        let row = Bytes::from([1.0f32, -0.5].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        assert!(matches!(vector(row.clone(), Encoding::Float), Vector::Float(v) if v == vec![1.0, -0.5]));
        assert!(matches!(vector(row, Encoding::Base64), Vector::Base64(s) if s == "AACAPwAAAL8="));
    }

    #[test]
    fn rows_are_checked_and_sliced() {
        let values: Vec<u8> = (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let t = Tensor::from_bytes(DataType::Fp32, vec![3, 2], Bytes::from(values)).unwrap();
        let r = rows(&t, 2).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(&r[2][..], &[4f32.to_le_bytes(), 5f32.to_le_bytes()].concat()[..]);
        assert!(rows(&t, 3).is_err());
    }

    #[test]
    fn errors_have_openai_shape() {
        let response = error_response(&ServeError::NotFound("no model".into()));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
