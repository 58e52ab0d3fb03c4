//! Bounds on what a node allocates when its sizes come from constants in the file.
//!
//! A few bytes of constant can ask for gigabytes: `ConstantOfShape` with the shape
//! `[1000000, 1000000]`, a `Range` from 0 to 1e12, an `Expand` or `Tile` to a huge shape. An
//! engine folds such a node while it optimizes the graph at load (tract and onnxruntime both do),
//! or allocates its output at every request. Before either, the values of small constants
//! (initializers, `Constant` nodes, and what `Identity`, `Cast`, `Reshape`, `Squeeze`,
//! `Unsqueeze`, `Flatten` and `Concat` make of them) are followed through the graph, and a node
//! whose output these values make larger than [`MAX_NODE_OUTPUT_BYTES`] is refused, naming the
//! node. Sizes computed from the request's inputs are bounded by the request, not checked here.

use std::collections::HashMap;

use super::{pb, OnnxType};

/// Largest output a node may have when constants in the file decide its size.
pub(crate) const MAX_NODE_OUTPUT_BYTES: f64 = (1u64 << 30) as f64;

/// Constants longer than this are weights, not shapes or bounds: they are not followed.
const MAX_FOLLOWED_ELEMENTS: usize = 1024;

/// A constant's values (as f64: exact for every size that could pass the bound) and the byte
/// size of its element type.
#[derive(Debug, Clone)]
pub(super) struct Known {
    values: Vec<f64>,
    element_bytes: usize,
}

/// The constants of one graph (and, for a nested graph, those of the graphs around it).
#[derive(Debug, Clone, Default)]
pub(super) struct Constants {
    known: HashMap<String, Known>,
}

impl Constants {
    /// Records a small initializer or constant tensor under `name`. `read_external` reads the
    /// bytes of a tensor kept in an external data file (already checked to lie inside it).
    pub(super) fn add_tensor(&mut self, name: &str, tensor: &pb::TensorProto, read_external: impl Fn(&pb::TensorProto) -> Option<Vec<u8>>) {
        if let Some(known) = decode(tensor, read_external) {
            self.known.insert(name.to_string(), known);
        }
    }

    fn get(&self, name: Option<&String>) -> Option<&Known> {
        name.and_then(|n| self.known.get(n))
    }

    /// Checks one node against the bound, then records what it makes of known constants.
    pub(super) fn node(&mut self, node: &pb::NodeProto, read_external: impl Fn(&pb::TensorProto) -> Option<Vec<u8>>) -> Result<(), String> {
        let input = |i: usize| self.get(node.input.get(i));
        let refuse = |what: String, bytes: f64| {
            Err(format!(
                "node '{}' ({}) would produce {what}, {bytes:.0} bytes, from constants in the file; a node whose size the file decides may produce at most {MAX_NODE_OUTPUT_BYTES:.0} bytes",
                node.name, node.op_type
            ))
        };
        match node.op_type.as_str() {
            "ConstantOfShape" => {
                if let Some(shape) = input(0) {
                    let value_bytes = attribute(node, "value")
                        .and_then(|a| a.t.as_ref())
                        .and_then(|t| OnnxType::try_from(t.data_type).ok())
                        .and_then(super::element_size)
                        .unwrap_or(4);
                    let bytes = product(&shape.values) * value_bytes as f64;
                    if bytes > MAX_NODE_OUTPUT_BYTES {
                        return refuse(format!("a tensor of shape {:?}", shape.values), bytes);
                    }
                }
            }
            "Range" => {
                if let (Some(start), Some(limit), Some(delta)) = (input(0), input(1), input(2)) {
                    if let ([start], [limit], [delta]) = (&start.values[..], &limit.values[..], &delta.values[..]) {
                        if *delta == 0.0 {
                            return Err(format!("node '{}' (Range): delta is 0, so the range never ends", node.name));
                        }
                        let count = ((limit - start) / delta).ceil().max(0.0);
                        let bytes = count * input(0).map_or(8, |k| k.element_bytes) as f64;
                        if bytes > MAX_NODE_OUTPUT_BYTES {
                            return refuse(format!("{count:.0} values from {start} to {limit} by {delta}"), bytes);
                        }
                    }
                }
            }
            // The output has at least the product of the target shape's elements (and of the
            // repeats, for Tile) times the input's.
            "Expand" | "Tile" => {
                if let Some(sizes) = input(1) {
                    let data = input(0);
                    let elements = product(&sizes.values) * data.map_or(1.0, |d| d.values.len() as f64);
                    let bytes = elements * data.map_or(1, |d| d.element_bytes) as f64;
                    if bytes > MAX_NODE_OUTPUT_BYTES {
                        let what = if node.op_type == "Tile" { "repeats" } else { "shape" };
                        return refuse(format!("{elements:.0} elements ({what} {:?})", sizes.values), bytes);
                    }
                }
            }
            _ => {}
        }
        self.follow(node, read_external);
        Ok(())
    }

    /// Records the constant output of a node whose values follow from known inputs.
    fn follow(&mut self, node: &pb::NodeProto, read_external: impl Fn(&pb::TensorProto) -> Option<Vec<u8>>) {
        let Some(output) = node.output.first() else { return };
        let known = match node.op_type.as_str() {
            "Constant" => constant_node(node, read_external),
            // Values unchanged (a Cast's element size follows its target type).
            "Identity" | "Reshape" | "Squeeze" | "Unsqueeze" | "Flatten" => self.get(node.input.first()).cloned(),
            "Cast" => self.get(node.input.first()).map(|k| Known {
                values: k.values.clone(),
                element_bytes: attribute(node, "to")
                    .and_then(|a| OnnxType::try_from(a.i as i32).ok())
                    .and_then(super::element_size)
                    .unwrap_or(k.element_bytes),
            }),
            "Concat" => {
                let parts: Option<Vec<&Known>> = node.input.iter().map(|name| self.known.get(name)).collect();
                parts.and_then(|parts| {
                    let values: Vec<f64> = parts.iter().flat_map(|k| k.values.iter().copied()).collect();
                    (values.len() <= MAX_FOLLOWED_ELEMENTS)
                        .then(|| Known { values, element_bytes: parts.first().map_or(8, |k| k.element_bytes) })
                })
            }
            _ => None,
        };
        // A valid graph defines each name once; an invalid one that redefines a constant keeps
        // the constant's values here, so the check errs toward refusing.
        if let Some(known) = known {
            self.known.insert(output.clone(), known);
        }
    }
}

fn attribute<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The product of a shape's dimensions (negative ones count as 0: the engine refuses them).
fn product(dims: &[f64]) -> f64 {
    dims.iter().map(|d| d.max(0.0)).product()
}

fn constant_node(node: &pb::NodeProto, read_external: impl Fn(&pb::TensorProto) -> Option<Vec<u8>>) -> Option<Known> {
    let a = node.attribute.first()?;
    match a.name.as_str() {
        "value" => decode(a.t.as_ref()?, read_external),
        "value_int" => Some(Known { values: vec![a.i as f64], element_bytes: 8 }),
        "value_ints" => {
            (a.ints.len() <= MAX_FOLLOWED_ELEMENTS).then(|| Known { values: a.ints.iter().map(|&v| v as f64).collect(), element_bytes: 8 })
        }
        "value_float" => Some(Known { values: vec![f64::from(a.f)], element_bytes: 4 }),
        "value_floats" => (a.floats.len() <= MAX_FOLLOWED_ELEMENTS)
            .then(|| Known { values: a.floats.iter().map(|&v| f64::from(v)).collect(), element_bytes: 4 }),
        _ => None,
    }
}

/// The values of a small numeric tensor, from its typed fields, raw data or external data.
fn decode(tensor: &pb::TensorProto, read_external: impl Fn(&pb::TensorProto) -> Option<Vec<u8>>) -> Option<Known> {
    let data_type = OnnxType::try_from(tensor.data_type).ok()?;
    let element_bytes = super::element_size(data_type)?;
    let count = super::elements(&tensor.dims).ok()?;
    if count > MAX_FOLLOWED_ELEMENTS {
        return None;
    }
    let external;
    let raw: &[u8] = if super::is_external(tensor) {
        external = read_external(tensor)?;
        &external
    } else {
        &tensor.raw_data
    };
    let values: Vec<f64> = if !raw.is_empty() {
        if raw.len() != count * element_bytes {
            return None;
        }
        let chunks = raw.chunks_exact(element_bytes);
        match data_type {
            OnnxType::Int64 => chunks.map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()) as f64).collect(),
            OnnxType::Int32 => chunks.map(|c| f64::from(i32::from_le_bytes(c.try_into().unwrap_or_default()))).collect(),
            OnnxType::Uint64 => chunks.map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()) as f64).collect(),
            OnnxType::Uint32 => chunks.map(|c| f64::from(u32::from_le_bytes(c.try_into().unwrap_or_default()))).collect(),
            OnnxType::Float => chunks.map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or_default()))).collect(),
            OnnxType::Double => chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
            _ => return None,
        }
    } else {
        match data_type {
            OnnxType::Int64 => tensor.int64_data.iter().map(|&v| v as f64).collect(),
            // ONNX keeps uint32 and uint64 values in uint64_data.
            OnnxType::Uint64 | OnnxType::Uint32 => tensor.uint64_data.iter().map(|&v| v as f64).collect(),
            OnnxType::Int32 | OnnxType::Int16 | OnnxType::Uint16 | OnnxType::Int8 | OnnxType::Uint8 => {
                tensor.int32_data.iter().map(|&v| f64::from(v)).collect()
            }
            OnnxType::Float => tensor.float_data.iter().map(|&v| f64::from(v)).collect(),
            OnnxType::Double => tensor.double_data.clone(),
            _ => return None,
        }
    };
    (values.len() == count).then_some(Known { values, element_bytes })
}
