//! `ZipMap`: turns class probabilities into a sequence of maps, which tract cannot represent.
//! Models must be converted without it; loading one fails with a message saying how.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// The error message given for a `ZipMap` node.
pub fn unsupported_message(node: &NodeProto) -> String {
    format!(
        "ZipMap node '{}' is not supported (its output is a sequence of maps, not a tensor): \
         convert with zipmap disabled (skl2onnx: options={{id(model): {{'zipmap': False}}}}, \
         onnxmltools: zipmap=False) so the probabilities stay a tensor",
        node.name
    )
}

/// Rejects `ZipMap` nodes at load time.
pub fn build(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    bail!(unsupported_message(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_says_how_to_convert() {
        let node = NodeProto { name: "zm".into(), op_type: "ZipMap".into(), ..Default::default() };
        let msg = unsupported_message(&node);
        assert!(msg.contains("convert with zipmap disabled") && msg.contains("'zm'"));
    }
}
