//! The protocol-neutral inference request and response. Every edge decodes into these and
//! encodes from them; tensor payloads stay as `bytes::Bytes` throughout.

use std::collections::BTreeMap;

use quiver_core::{Tensor, TokenCount};

/// A request or tensor parameter value (the `InferParameter` oneof).
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `Int`.
    Uint(u64),
    /// A floating-point number.
    Double(f64),
    /// A string.
    String(String),
}

impl ParameterValue {
    /// The value as a boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ParameterValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as a non-negative integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            ParameterValue::Int(i) => u64::try_from(*i).ok(),
            ParameterValue::Uint(u) => Some(*u),
            _ => None,
        }
    }
}

/// Named parameters, in a stable order.
pub type Parameters = BTreeMap<String, ParameterValue>;

/// One input tensor of a request.
#[derive(Debug, Clone)]
pub struct InferInput {
    /// The model input it feeds.
    pub name: String,
    /// The data.
    pub tensor: Tensor,
}

/// One output the client asked for.
#[derive(Debug, Clone, Default)]
pub struct RequestedOutput {
    /// The model output's name.
    pub name: String,
    /// The output's own parameters (`binary_data`, ...), interpreted by the edge.
    pub parameters: Parameters,
}

/// An inference request, whatever protocol it came in on.
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    /// Client-chosen id, echoed in the response.
    pub id: Option<String>,
    /// Request parameters.
    pub parameters: Parameters,
    /// Input tensors.
    pub inputs: Vec<InferInput>,
    /// Requested outputs; empty means every output of the model.
    pub outputs: Vec<RequestedOutput>,
}

/// One output tensor of a response.
#[derive(Debug, Clone)]
pub struct InferOutput {
    /// The model output's name.
    pub name: String,
    /// The data.
    pub tensor: Tensor,
}

/// An inference response.
#[derive(Debug, Clone)]
pub struct InferResponse {
    /// The model that served it.
    pub model_name: String,
    /// The version that served it.
    pub model_version: String,
    /// The request's id, if it had one.
    pub id: Option<String>,
    /// Outputs in the order requested (or the model's order when none were requested).
    pub outputs: Vec<InferOutput>,
    /// For text models, the tokens of the request's inputs (OpenAI's `usage`).
    pub tokens: Option<TokenCount>,
}
