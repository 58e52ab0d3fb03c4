//! The protocol-neutral inference request and response. Every edge decodes into these and
//! encodes from them; tensor payloads stay as `bytes::Bytes` throughout.

use std::{collections::BTreeMap, time::Duration};

use quiver_core::{Tensor, TokenCount};

use crate::ServeError;

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
    /// Triton's `priority` parameter: the priority level (0 or `None`: the model's default).
    pub priority: Option<u64>,
    /// Triton's `timeout` parameter: the longest the request may wait in the queue (honoured
    /// when the model's queue policy allows overrides).
    pub timeout: Option<Duration>,
}

impl InferRequest {
    /// A request from what an edge decoded. The scheduling parameters Triton defines
    /// (`priority`, `timeout` in microseconds) are read here, once, into typed fields, so a
    /// malformed one is refused before the request is routed.
    pub fn new(
        id: Option<String>,
        parameters: Parameters,
        inputs: Vec<InferInput>,
        outputs: Vec<RequestedOutput>,
    ) -> Result<InferRequest, ServeError> {
        let non_negative = |name: &str| -> Result<Option<u64>, ServeError> {
            match parameters.get(name) {
                None => Ok(None),
                Some(v) => {
                    v.as_u64().map(Some).ok_or_else(|| ServeError::invalid(format!("parameter '{name}' must be a non-negative integer")))
                }
            }
        };
        let priority = non_negative("priority")?;
        let timeout = non_negative("timeout")?.map(Duration::from_micros);
        Ok(InferRequest { id, parameters, inputs, outputs, priority, timeout })
    }
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
    /// Where the request's time went on the server.
    pub timing: Timing,
}

/// Where a request's time went, as the scheduler measured it; the edges report it to clients
/// (HTTP headers `x-queue-time-us` and `x-compute-time-us`, gRPC metadata of the same names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Time spent queued before its batch started.
    pub queue: Duration,
    /// Time its batch spent executing.
    pub compute: Duration,
}

impl Timing {
    /// Header (HTTP) and metadata key (gRPC) of the queue time, in microseconds.
    pub const QUEUE_HEADER: &'static str = "x-queue-time-us";
    /// Header (HTTP) and metadata key (gRPC) of the compute time, in microseconds.
    pub const COMPUTE_HEADER: &'static str = "x-compute-time-us";

    /// The two figures as (header name, microseconds).
    pub fn headers(&self) -> [(&'static str, u64); 2] {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        [(Self::QUEUE_HEADER, us(self.queue)), (Self::COMPUTE_HEADER, us(self.compute))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduling_parameters_are_typed_once() {
        let mut parameters = Parameters::new();
        parameters.insert("priority".into(), ParameterValue::Int(2));
        parameters.insert("timeout".into(), ParameterValue::Uint(1500));
        let request = InferRequest::new(None, parameters, vec![], vec![]).unwrap();
        assert_eq!(request.priority, Some(2));
        assert_eq!(request.timeout, Some(Duration::from_micros(1500)));
        let plain = InferRequest::new(Some("id".into()), Parameters::new(), vec![], vec![]).unwrap();
        assert_eq!((plain.priority, plain.timeout), (None, None));
        for bad in [ParameterValue::Int(-1), ParameterValue::String("1".into()), ParameterValue::Double(1.5)] {
            for name in ["priority", "timeout"] {
                let parameters = Parameters::from([(name.to_string(), bad.clone())]);
                let err = InferRequest::new(None, parameters, vec![], vec![]).unwrap_err();
                assert_eq!(err, ServeError::InvalidInput(format!("parameter '{name}' must be a non-negative integer")));
            }
        }
    }

    #[test]
    fn timing_headers_are_microseconds() {
        let timing = Timing { queue: Duration::from_micros(12), compute: Duration::from_millis(3) };
        assert_eq!(timing.headers(), [("x-queue-time-us", 12), ("x-compute-time-us", 3000)]);
    }
}
