//! Checks an ONNX file's tensors against the bytes that back them before tract builds anything
//! from it.
//!
//! A tensor's `dims` are a claim: tract allocates a tensor of that shape when it materializes an
//! initializer or a constant attribute. Every tensor in the file (graph initializers, sparse
//! initializers, node attributes, nested graphs and functions) must hold exactly the bytes its
//! dims and type need, in `raw_data`, in a typed data field, or in an external data file inside
//! the model's directory. So nothing is allocated from a shape the file cannot back, and the
//! error names the tensor. Nodes whose output size constants in the file decide are bounded too
//! ([`sizes`]).

mod sizes;

use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    path::{Component, Path, PathBuf},
};

use sizes::Constants;

use prost::Message;
use tract_onnx::pb::{self, tensor_proto::DataType as OnnxType};

/// Largest ONNX file read: protobuf itself cannot encode a message past 2 GiB (larger models
/// keep their weights in external data files).
pub(crate) const MAX_ONNX_FILE_BYTES: u64 = 2 << 30;

/// Deepest nesting of graphs (a `Loop` or `If` body inside another) walked.
const MAX_GRAPH_DEPTH: usize = 64;

/// Reads and decodes `path`, then checks every tensor in it (see the module docs).
pub(crate) fn read_checked(path: &Path) -> Result<pb::ModelProto, String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_ONNX_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes; an ONNX file is at most {MAX_ONNX_FILE_BYTES} bytes (larger weights belong in external data files)",
            meta.len()
        ));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let proto = pb::ModelProto::decode(bytes.as_slice()).map_err(|e| format!("not an ONNX model (the protobuf does not decode: {e})"))?;
    drop(bytes);
    let dir = path.parent().unwrap_or(Path::new("."));
    let checker = Checker { dir };
    let graph = proto.graph.as_ref().ok_or("not an ONNX model (it has no graph)")?;
    checker.graph(graph, 0, Constants::default())?;
    for function in &proto.functions {
        checker.nodes(&function.node, 0, Constants::default())?;
    }
    Ok(proto)
}

struct Checker<'a> {
    /// The model file's directory, where external data lives.
    dir: &'a Path,
}

impl Checker<'_> {
    /// Checks a graph; `constants` are those of the graphs around it, which it can use.
    fn graph(&self, graph: &pb::GraphProto, depth: usize, mut constants: Constants) -> Result<(), String> {
        if depth > MAX_GRAPH_DEPTH {
            return Err(format!("graphs nested deeper than {MAX_GRAPH_DEPTH} levels"));
        }
        for tensor in &graph.initializer {
            self.tensor(tensor, "initializer")?;
            constants.add_tensor(&tensor.name, tensor, |t| self.external_bytes(t));
        }
        for sparse in &graph.sparse_initializer {
            self.sparse(sparse)?;
        }
        self.nodes(&graph.node, depth, constants)
    }

    fn nodes(&self, nodes: &[pb::NodeProto], depth: usize, mut constants: Constants) -> Result<(), String> {
        for node in nodes {
            for attribute in &node.attribute {
                let context = || format!("attribute '{}' of node '{}' ({})", attribute.name, node.name, node.op_type);
                for tensor in attribute.t.iter().chain(&attribute.tensors) {
                    self.tensor(tensor, &context()).map_err(|e| format!("{}: {e}", context()))?;
                }
                for sparse in attribute.sparse_tensor.iter().chain(&attribute.sparse_tensors) {
                    self.sparse(sparse).map_err(|e| format!("{}: {e}", context()))?;
                }
                for graph in attribute.g.iter().chain(&attribute.graphs) {
                    self.graph(graph, depth + 1, constants.clone())?;
                }
            }
            constants.node(node, |t| self.external_bytes(t))?;
        }
        Ok(())
    }

    fn sparse(&self, sparse: &pb::SparseTensorProto) -> Result<(), String> {
        elements(&sparse.dims).map_err(|e| format!("sparse tensor: {e}"))?;
        for tensor in sparse.values.iter().chain(&sparse.indices) {
            self.tensor(tensor, "sparse tensor")?;
        }
        Ok(())
    }

    fn tensor(&self, tensor: &pb::TensorProto, what: &str) -> Result<(), String> {
        let name = if tensor.name.is_empty() { what.to_string() } else { format!("tensor '{}'", tensor.name) };
        let fail = |message: String| format!("{name}: {message}");
        let count = elements(&tensor.dims).map_err(fail)?;
        let data_type = OnnxType::try_from(tensor.data_type).ok();
        let typed = tensor.float_data.len()
            + tensor.int32_data.len()
            + tensor.int64_data.len()
            + tensor.double_data.len()
            + tensor.uint64_data.len()
            + tensor.string_data.len();
        if data_type == Some(OnnxType::String) {
            if !tensor.raw_data.is_empty() || is_external(tensor) {
                return Err(fail("string tensors keep their data in string_data".into()));
            }
            if typed != count {
                return Err(fail(format!("dims {:?} need {count} strings, the file holds {typed}", tensor.dims)));
            }
            return Ok(());
        }
        let Some(size) = data_type.and_then(element_size) else {
            return Err(fail(format!("data type {} is not supported by the ONNX engine", tensor.data_type)));
        };
        let needed =
            count.checked_mul(size).ok_or_else(|| format!("{name}: dims {:?} claim more bytes than fit in memory", tensor.dims))?;
        let held = if !tensor.raw_data.is_empty() {
            tensor.raw_data.len()
        } else if is_external(tensor) {
            self.external_length(tensor).map_err(|e| format!("{name}: external data: {e}"))?
        } else {
            return if typed == count {
                Ok(())
            } else {
                Err(fail(format!("dims {:?} need {count} elements, the file holds {typed}", tensor.dims)))
            };
        };
        if held != needed {
            return Err(fail(format!(
                "dims {:?} of type {} need {needed} bytes, the data holds {held}",
                tensor.dims,
                type_name(data_type)
            )));
        }
        Ok(())
    }

    /// The bytes the external data of `tensor` covers, checked to lie within its file, and the
    /// file within the model's directory.
    fn external_length(&self, tensor: &pb::TensorProto) -> Result<usize, String> {
        self.external_range(tensor).map(|(_, _, length)| length)
    }

    /// The bytes of a small tensor kept in an external data file (at most 64 KiB; `None` for a
    /// larger one or one that cannot be read).
    fn external_bytes(&self, tensor: &pb::TensorProto) -> Option<Vec<u8>> {
        let (path, offset, length) = self.external_range(tensor).ok()?;
        if length > 64 << 10 {
            return None;
        }
        let mut file = fs::File::open(path).ok()?;
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut bytes = vec![0; length];
        file.read_exact(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Where the external data of `tensor` lies: its file, offset and length.
    fn external_range(&self, tensor: &pb::TensorProto) -> Result<(PathBuf, u64, usize), String> {
        let entry = |key: &str| tensor.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let location = entry("location").ok_or("no location")?;
        let path = self.inside_dir(location)?;
        let file_len = fs::metadata(&path).map_err(|e| format!("{location}: {e}"))?.len();
        let number = |key: &str| -> Result<Option<u64>, String> {
            entry(key).map(|v| v.trim().parse::<u64>().map_err(|_| format!("{key} '{v}' is not a byte count"))).transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let length = match number("length")? {
            Some(length) => length,
            None => {
                file_len.checked_sub(offset).ok_or_else(|| format!("offset {offset} is past the end of {location} ({file_len} bytes)"))?
            }
        };
        let end = offset.checked_add(length).ok_or("offset + length overflows")?;
        if end > file_len {
            return Err(format!("bytes {offset}..{end} lie past the end of {location} ({file_len} bytes)"));
        }
        let length = usize::try_from(length).map_err(|_| format!("length {length} does not fit in memory"))?;
        Ok((path, offset, length))
    }

    /// `location` as a path inside the model's directory: relative, without `..`, and not a
    /// symlink that leads out of it.
    fn inside_dir(&self, location: &str) -> Result<PathBuf, String> {
        let relative = Path::new(location);
        if location.contains('\0') || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("location '{location}' must be a relative path inside the model's directory"));
        }
        let dir = fs::canonicalize(self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let path = fs::canonicalize(self.dir.join(relative)).map_err(|e| format!("{location}: {e}"))?;
        if !path.starts_with(&dir) {
            return Err(format!("location '{location}' resolves outside the model's directory"));
        }
        Ok(path)
    }
}

fn is_external(tensor: &pb::TensorProto) -> bool {
    tensor.data_location == Some(pb::tensor_proto::DataLocation::External as i32)
}

/// The element count of `dims`: every dimension non-negative, the product without overflow.
fn elements(dims: &[i64]) -> Result<usize, String> {
    dims.iter().try_fold(1usize, |n, &d| {
        let d = usize::try_from(d).map_err(|_| format!("negative dimension {d} in dims {dims:?}"))?;
        n.checked_mul(d).ok_or_else(|| format!("dims {dims:?} claim more elements than fit in memory"))
    })
}

/// Bytes per element of the types tract reads (strings aside).
fn element_size(t: OnnxType) -> Option<usize> {
    Some(match t {
        OnnxType::Uint8 | OnnxType::Int8 | OnnxType::Bool => 1,
        OnnxType::Uint16 | OnnxType::Int16 | OnnxType::Float16 => 2,
        OnnxType::Float | OnnxType::Int32 | OnnxType::Uint32 => 4,
        OnnxType::Double | OnnxType::Int64 | OnnxType::Uint64 => 8,
        _ => return None,
    })
}

fn type_name(t: Option<OnnxType>) -> &'static str {
    t.map_or("?", |t| t.as_str_name())
}

#[cfg(test)]
mod tests;
