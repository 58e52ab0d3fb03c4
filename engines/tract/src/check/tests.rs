//! Hostile ONNX files, generated here: each must fail to load with a reason naming what is
//! wrong, without a panic and without an allocation sized from its claims.

use super::*;
use crate::OnnxModel;
use pb::{tensor_proto::DataLocation, tensor_shape_proto::dimension::Value as Dim, type_proto::Value as TypeValue};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("quiver-onnx-check-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn value_info(name: &str) -> pb::ValueInfoProto {
    let shape = pb::TensorShapeProto {
        dim: vec![
            pb::tensor_shape_proto::Dimension { value: Some(Dim::DimParam("N".into())), ..Default::default() },
            pb::tensor_shape_proto::Dimension { value: Some(Dim::DimValue(2)), ..Default::default() },
        ],
    };
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(TypeValue::TensorType(pb::type_proto::Tensor { elem_type: OnnxType::Float as i32, shape: Some(shape) })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn weight(values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: "w".into(),
        dims: vec![values.len() as i64],
        data_type: OnnxType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// `y = x + w`, with `w` as given.
fn model(w: pb::TensorProto) -> pb::ModelProto {
    let add = pb::NodeProto {
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        name: "add".into(),
        op_type: "Add".into(),
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(pb::GraphProto {
            node: vec![add],
            name: "g".into(),
            initializer: vec![w],
            input: vec![value_info("x")],
            output: vec![value_info("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.0.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn load_error(path: &Path) -> String {
    match OnnxModel::load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[test]
fn a_valid_model_loads_and_runs() {
    let dir = TempDir::new("valid");
    let path = write(&dir, "model.onnx", &model(weight(&[1.0, 2.0])).encode_to_vec());
    let loaded = OnnxModel::load(&path).unwrap();
    assert_eq!(loaded.signature.inputs[0].shape, vec![-1, 2]);
}

#[test]
fn truncated_random_and_garbage_files_fail_cleanly() {
    let dir = TempDir::new("corrupt");
    let good = model(weight(&[1.0, 2.0])).encode_to_vec();
    for cut in [0, 1, 2, 7, good.len() / 3, good.len() / 2, good.len() - 1] {
        let path = write(&dir, &format!("cut{cut}.onnx"), &good[..cut]);
        let e = load_error(&path);
        assert!(e.contains("failed to load model"), "cut at {cut}: {e}");
    }
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..32 {
        let bytes: Vec<u8> = (0..(64 + round * 37))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        load_error(&write(&dir, "random.onnx", &bytes));
        // A valid start, then garbage.
        let mut mixed = good[..good.len() / 2].to_vec();
        mixed.extend_from_slice(&bytes);
        load_error(&write(&dir, "mixed.onnx", &mixed));
    }
    assert!(load_error(&write(&dir, "empty.onnx", b"")).contains("no graph"));
    assert!(load_error(&write(&dir, "text.onnx", b"this is not a model")).contains("not an ONNX model"));
}

#[test]
fn tensors_that_claim_more_than_they_hold_are_refused_before_allocation() {
    let dir = TempDir::new("claims");
    let before = peak_rss();
    // 100 GB claimed, 8 bytes held.
    let mut huge = weight(&[1.0, 2.0]);
    huge.dims = vec![25_000, 1_000_000];
    let e = load_error(&write(&dir, "huge.onnx", &model(huge).encode_to_vec()));
    assert!(e.contains("tensor 'w'") && e.contains("need 100000000000 bytes, the data holds 8"), "{e}");
    // Typed data: 1 GB of floats claimed, two present.
    let mut typed = weight(&[]);
    typed.raw_data.clear();
    typed.float_data = vec![1.0, 2.0];
    typed.dims = vec![1 << 28];
    let e = load_error(&write(&dir, "typed.onnx", &model(typed).encode_to_vec()));
    assert!(e.contains("need 268435456 elements, the file holds 2"), "{e}");
    // Overflowing and negative dims.
    let mut overflow = weight(&[1.0]);
    overflow.dims = vec![i64::MAX, i64::MAX];
    assert!(load_error(&write(&dir, "overflow.onnx", &model(overflow).encode_to_vec())).contains("more elements than fit"));
    let mut negative = weight(&[1.0]);
    negative.dims = vec![-1];
    assert!(load_error(&write(&dir, "negative.onnx", &model(negative).encode_to_vec())).contains("negative dimension"));
    // The same claim in a Constant node's attribute.
    let mut constant = model(weight(&[1.0, 2.0]));
    let mut value = weight(&[1.0]);
    value.name = String::new();
    value.dims = vec![1 << 20, 1 << 20];
    constant.graph.as_mut().unwrap().node.push(pb::NodeProto {
        output: vec!["c".into()],
        name: "const".into(),
        op_type: "Constant".into(),
        attribute: vec![pb::AttributeProto { name: "value".into(), t: Some(value), r#type: 4, ..Default::default() }],
        ..Default::default()
    });
    let e = load_error(&write(&dir, "constant.onnx", &constant.encode_to_vec()));
    assert!(e.contains("attribute 'value' of node 'const'"), "{e}");
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 256 << 20, "peak RSS grew by {grown} bytes");
}

#[test]
fn external_data_must_stay_inside_the_model_directory_and_its_file() {
    let dir = TempDir::new("external");
    let outside = TempDir::new("external-outside");
    write(&outside, "secret.bin", &[0u8; 8]);
    write(&dir, "weights.bin", &[0u8; 16]);
    let external = |location: &str, offset: Option<&str>, length: Option<&str>| {
        let mut w = weight(&[]);
        w.dims = vec![2];
        w.data_location = Some(DataLocation::External as i32);
        let entry = |k: &str, v: &str| pb::StringStringEntryProto { key: k.into(), value: v.into() };
        w.external_data.push(entry("location", location));
        w.external_data.extend(offset.map(|o| entry("offset", o)));
        w.external_data.extend(length.map(|l| entry("length", l)));
        model(w).encode_to_vec()
    };
    // Inside and consistent: loads.
    OnnxModel::load(&write(&dir, "ok.onnx", &external("weights.bin", Some("8"), Some("8")))).unwrap();
    let secret = outside.0.join("secret.bin");
    std::os::unix::fs::symlink(&secret, dir.0.join("link.bin")).unwrap();
    let cases = [
        (external("../x/secret.bin", None, None), "relative path inside"),
        (external(secret.to_str().unwrap(), None, None), "relative path inside"),
        (external("link.bin", None, None), "resolves outside"),
        (external("missing.bin", None, None), "missing.bin"),
        (external("weights.bin", Some("0"), Some("100000000000")), "past the end"),
        (external("weights.bin", Some("99"), None), "past the end"),
        (external("weights.bin", Some("18446744073709551615"), Some("2")), "overflows"),
        (external("weights.bin", Some("0"), Some("16")), "need 8 bytes, the data holds 16"),
        (external("weights.bin", Some("-1"), None), "not a byte count"),
    ];
    for (i, (bytes, expected)) in cases.iter().enumerate() {
        let e = load_error(&write(&dir, &format!("case{i}.onnx"), bytes));
        assert!(e.contains(expected), "case {i}: {e}");
    }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        ..Default::default()
    }
}

fn int_constant(name: &str, values: &[i64]) -> pb::NodeProto {
    let mut n = node("Constant", name, &[], name);
    n.attribute.push(pb::AttributeProto { name: "value_ints".into(), ints: values.to_vec(), r#type: 7, ..Default::default() });
    n
}

fn scalar_constant(name: &str, value: i64) -> pb::NodeProto {
    let tensor = pb::TensorProto { data_type: OnnxType::Int64 as i32, int64_data: vec![value], ..Default::default() };
    let mut n = node("Constant", name, &[], name);
    n.attribute.push(pb::AttributeProto { name: "value".into(), t: Some(tensor), r#type: 4, ..Default::default() });
    n
}

fn int64_initializer(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: OnnxType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// The `y = x + w` model with `nodes` and `initializers` added to its graph.
fn with_nodes(nodes: Vec<pb::NodeProto>, initializers: Vec<pb::TensorProto>) -> Vec<u8> {
    let mut m = model(weight(&[1.0, 2.0]));
    let graph = m.graph.as_mut().unwrap();
    graph.node.extend(nodes);
    graph.initializer.extend(initializers);
    m.encode_to_vec()
}

#[test]
fn nodes_whose_constants_ask_for_gigabytes_are_refused_before_any_engine_sees_them() {
    let dir = TempDir::new("sizes");
    let before = peak_rss();
    // ConstantOfShape from an initializer: 10^12 floats.
    let e = load_error(&write(
        &dir,
        "cos.onnx",
        &with_nodes(vec![node("ConstantOfShape", "zeros", &["shape"], "z")], vec![int64_initializer("shape", &[1_000_000, 1_000_000])]),
    ));
    assert!(e.contains("node 'zeros' (ConstantOfShape)") && e.contains("4000000000000 bytes"), "{e}");
    // The shape passed through Concat, Cast and Identity of Constant nodes.
    let mut cast = node("Cast", "cast", &["cat"], "cast");
    cast.attribute.push(pb::AttributeProto { name: "to".into(), i: OnnxType::Int64 as i64, r#type: 2, ..Default::default() });
    let e = load_error(&write(
        &dir,
        "cos_followed.onnx",
        &with_nodes(
            vec![
                int_constant("a", &[100_000]),
                int_constant("b", &[100_000]),
                node("Concat", "cat", &["a", "b"], "cat"),
                cast,
                node("Identity", "id", &["cast"], "shape"),
                node("ConstantOfShape", "zeros", &["shape"], "z"),
            ],
            vec![],
        ),
    ));
    assert!(e.contains("node 'zeros' (ConstantOfShape)") && e.contains("[100000.0, 100000.0]"), "{e}");
    // Range from 0 to 10^12, and a Range with delta 0.
    let range = |delta: i64| {
        with_nodes(
            vec![
                scalar_constant("start", 0),
                scalar_constant("limit", 1_000_000_000_000),
                scalar_constant("delta", delta),
                node("Range", "r", &["start", "limit", "delta"], "r"),
            ],
            vec![],
        )
    };
    let e = load_error(&write(&dir, "range.onnx", &range(1)));
    assert!(e.contains("node 'r' (Range)") && e.contains("1000000000000 values"), "{e}");
    let e = load_error(&write(&dir, "range0.onnx", &range(0)));
    assert!(e.contains("delta is 0"), "{e}");
    // Expand of a small input to a huge shape, and Tile with huge repeats.
    let e = load_error(&write(
        &dir,
        "expand.onnx",
        &with_nodes(vec![node("Expand", "grow", &["x", "to"], "e")], vec![int64_initializer("to", &[1 << 20, 1 << 20])]),
    ));
    assert!(e.contains("node 'grow' (Expand)"), "{e}");
    let e = load_error(&write(
        &dir,
        "tile.onnx",
        &with_nodes(vec![node("Tile", "tile", &["w", "reps"], "t")], vec![int64_initializer("reps", &[1 << 40])]),
    ));
    assert!(e.contains("node 'tile' (Tile)") && e.contains("8796093022208 bytes"), "{e}");
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 256 << 20, "peak RSS grew by {grown} bytes");

    // The same nodes at ordinary sizes pass the check.
    let ordinary = with_nodes(
        vec![
            node("ConstantOfShape", "zeros", &["shape"], "z"),
            scalar_constant("start", 0),
            scalar_constant("limit", 1000),
            scalar_constant("delta", 1),
            node("Range", "r", &["start", "limit", "delta"], "r"),
            node("Tile", "tile", &["w", "reps"], "t"),
        ],
        vec![int64_initializer("shape", &[64, 1024]), int64_initializer("reps", &[4096])],
    );
    read_checked(&write(&dir, "ordinary.onnx", &ordinary)).unwrap();
}
