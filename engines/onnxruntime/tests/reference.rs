//! The onnxruntime engine against the Python onnxruntime reference, on every shipped model and
//! every e2e drop-in model (the ai.onnx.ml ones included): tests/reference.py writes the cases.
//!
//! Needs ORT_DYLIB_PATH (the library) and QUIVER_TEST_PYTHON (a Python with onnxruntime,
//! scikit-learn, ...); tests/run.sh sets both. Without them the test says so and passes nothing.

use std::{path::Path, process::Command};

use bytes::Bytes;
use quiver_core::{Backend, DataType, LoadOptions, Tensor};
use quiver_engine_onnxruntime::OrtBackend;
use serde_json::Value;

fn tensor(dir: &Path, entry: &Value) -> Tensor {
    let shape: Vec<usize> = entry["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let datatype = DataType::from_v2(entry["datatype"].as_str().unwrap()).unwrap();
    if datatype == DataType::Bytes {
        let strings: Vec<&str> = entry["strings"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        return Tensor::from_bytes_elements(shape, strings.iter().map(|s| s.as_bytes())).unwrap();
    }
    let data = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
    Tensor::from_bytes(datatype, shape, Bytes::from(data)).unwrap()
}

fn floats(t: &Tensor) -> Vec<f64> {
    match t.datatype() {
        DataType::Fp32 => t.data().chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect(),
        DataType::Fp64 => t.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        other => panic!("not a float type: {other}"),
    }
}

fn assert_same(case: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.datatype(), expected.datatype(), "{case}: datatype");
    assert_eq!(actual.shape(), expected.shape(), "{case}: shape");
    match expected.datatype() {
        DataType::Fp32 | DataType::Fp64 => {
            for (i, (a, e)) in floats(actual).iter().zip(floats(expected)).enumerate() {
                let close = (a.is_nan() && e.is_nan()) || (a - e).abs() <= 1e-5 + 1e-4 * e.abs();
                assert!(close, "{case}: element {i}: {a} vs {e}");
            }
        }
        DataType::Bytes => {
            assert!(actual.bytes_elements().eq(expected.bytes_elements()), "{case}: strings differ");
        }
        _ => assert_eq!(actual.data(), expected.data(), "{case}: values"),
    }
}

#[test]
fn outputs_match_python_onnxruntime_on_every_shipped_and_e2e_model() {
    let (Some(_), Some(python)) = (std::env::var_os("ORT_DYLIB_PATH"), std::env::var_os("QUIVER_TEST_PYTHON")) else {
        eprintln!("SKIPPED: set ORT_DYLIB_PATH (onnxruntime's libonnxruntime.so) and QUIVER_TEST_PYTHON (tests/run.sh sets both)");
        return;
    };
    let backend = OrtBackend::new(None);
    backend.library().expect("ORT_DYLIB_PATH names a loadable ONNX Runtime library");
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference.py");
    let status = Command::new(python).arg(&script).arg(dir.path()).status().unwrap();
    assert!(status.success(), "{} failed", script.display());
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 17, "every shipped and e2e model has a case");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model = backend.load_with(Path::new(case["model"].as_str().unwrap()), &LoadOptions::default()).unwrap();
        let signature = model.signature().clone();
        // Inputs in the model's order, as the runtime hands them over.
        let inputs: Vec<Tensor> = signature
            .inputs
            .iter()
            .map(|i| {
                let entry = case["inputs"].as_array().unwrap().iter().find(|e| e["name"] == i.name.as_str()).unwrap();
                tensor(dir.path(), entry)
            })
            .collect();
        let outputs = model.execute(inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = case["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), expected.len(), "{name}: output count");
        for (info, actual) in signature.outputs.iter().zip(&outputs) {
            let entry = expected.iter().find(|e| e["name"] == info.name.as_str()).unwrap();
            assert_same(&format!("{name}/{}", info.name), actual, &tensor(dir.path(), entry));
        }
        assert_eq!(model.engine(), Some("onnxruntime"));
    }
}

#[test]
fn sessions_are_shared_or_per_instance_and_both_answer_concurrently() {
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        eprintln!("SKIPPED: set ORT_DYLIB_PATH (tests/run.sh does)");
        return;
    }
    let mlp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/models/mlp/1/model.onnx");
    for share in ["false", "true"] {
        let mut options = LoadOptions::default();
        options.parameters.insert("share_session_between_instances".into(), share.into());
        options.parameters.insert("intra_op_thread_count".into(), "1".into());
        let model = OrtBackend::new(None).load_with(&mlp, &options).unwrap();
        let input = Tensor::from_bytes(DataType::Fp32, vec![3, 16], vec![0u8; 3 * 16 * 4].into()).unwrap();
        let first = model.execute(vec![input.clone()]).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        assert_eq!(model.execute(vec![input.clone()]).unwrap()[0].data(), first[0].data());
                    }
                });
            }
        });
    }
}

#[test]
fn bad_parameters_name_the_parameter() {
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        eprintln!("SKIPPED: set ORT_DYLIB_PATH (tests/run.sh does)");
        return;
    }
    let mlp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/models/mlp/1/model.onnx");
    let backend = OrtBackend::new(None);
    let mut options = LoadOptions::default();
    options.parameters.insert("intra_op_thread_count".into(), "many".into());
    let err = backend.load_with(&mlp, &options).err().unwrap().to_string();
    assert!(err.contains("intra_op_thread_count") && err.contains("'many'"), "{err}");
    let mut options = LoadOptions::default();
    options.optimization.graph_level = Some(7);
    assert!(backend.load_with(&mlp, &options).err().unwrap().to_string().contains("optimization.graph.level is 7"));
    let mut options = LoadOptions::default();
    options.optimization.cpu_accelerators.push(quiver_core::Accelerator { name: "openvino".into(), ..Default::default() });
    assert!(backend.load_with(&mlp, &options).err().unwrap().to_string().contains("'openvino' is not available"));
    for level in [-1, 0, 1, 2] {
        let mut options = LoadOptions::default();
        options.optimization.graph_level = Some(level);
        backend.load_with(&mlp, &options).unwrap();
    }
}
