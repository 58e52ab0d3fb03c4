//! Checks Quiver's `ai.onnx.ml` operators (`quiver_engine_tract::ml`) against onnxruntime.
//!
//! Every `tests/fixtures/ml/<name>.json` (written by `tests/fixtures/ml/generate.py`) names an
//! ONNX model, inputs, and the outputs onnxruntime computed for them. Each model is loaded with
//! tract-onnx plus `ml::register`, its inputs are declared with a symbolic batch dimension `N`
//! (`[N, ...]`), it is optimized with `into_optimized()`, then run on the whole batch and on each
//! row alone (batch of 1), and the outputs are compared with onnxruntime's: exact for labels and
//! strings, within 1e-5 relative / 1e-4 absolute for floats.
//!
//! Set `ML_FIXTURE=<substring>` to run only the fixtures whose name contains it, and
//! `ML_TRACT_BUILTIN=1` to check tract-onnx's own operators instead of Quiver's.

use std::path::{Path, PathBuf};

use quiver_engine_tract::ml;
use serde_json::Value;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::{ensure, TractErrorContext};

const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-4;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ml")
}

/// tract-onnx with Quiver's ML operators; with `ML_TRACT_BUILTIN` set, tract-onnx alone (to
/// compare tract's own implementations with onnxruntime).
fn loader() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    if std::env::var("ML_TRACT_BUILTIN").is_err() {
        ml::register(&mut onnx);
    }
    onnx
}

fn datum_type(name: &str) -> DatumType {
    match name {
        "float32" => DatumType::F32,
        "float64" => DatumType::F64,
        "int64" => DatumType::I64,
        "int32" => DatumType::I32,
        "bool" => DatumType::Bool,
        "string" => DatumType::String,
        other => panic!("unknown fixture dtype {other}"),
    }
}

fn float_of(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("bad float {other}"),
        },
        other => panic!("bad float {other}"),
    }
}

fn array<T: Datum>(shape: &[usize], data: Vec<T>) -> Tensor {
    tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(shape), data).unwrap().into_tensor()
}

/// A JSON `{"name", "dtype", "shape", "data"}` entry as a tensor.
fn tensor_of(entry: &Value) -> (String, Tensor) {
    let name = entry["name"].as_str().unwrap().to_string();
    let shape: Vec<usize> = entry["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data = entry["data"].as_array().unwrap();
    let t = match datum_type(entry["dtype"].as_str().unwrap()) {
        DatumType::F32 => array(&shape, data.iter().map(|v| float_of(v) as f32).collect()),
        DatumType::F64 => array(&shape, data.iter().map(float_of).collect::<Vec<f64>>()),
        DatumType::I64 => array(&shape, data.iter().map(|v| v.as_i64().unwrap()).collect()),
        DatumType::I32 => array(&shape, data.iter().map(|v| v.as_i64().unwrap() as i32).collect()),
        DatumType::Bool => array(&shape, data.iter().map(|v| v.as_bool().unwrap()).collect()),
        DatumType::String => array(&shape, data.iter().map(|v| v.as_str().unwrap().to_string()).collect()),
        _ => unreachable!(),
    };
    (name, t)
}

fn close(got: f64, want: f64) -> bool {
    (got.is_nan() && want.is_nan()) || got == want || (got - want).abs() <= ATOL + RTOL * want.abs()
}

/// The elements of `t` as `T` (cast when its type differs), row-major.
fn elements<T: Datum + Clone>(t: &Tensor) -> Vec<T> {
    let cast = t.cast_to::<T>().unwrap();
    cast.try_as_plain_ram().unwrap().as_slice::<T>().unwrap().to_vec()
}

fn compare(what: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("{what}: shape {:?}, expected {:?}", got.shape(), want.shape()));
    }
    if got.datum_type() != want.datum_type() {
        return Err(format!("{what}: type {:?}, expected {:?}", got.datum_type(), want.datum_type()));
    }
    let mismatch = |i: usize, g: String, w: String| Err(format!("{what}: element {i} is {g}, expected {w}\n got  {got:?}\n want {want:?}"));
    match want.datum_type() {
        DatumType::F32 | DatumType::F64 => {
            let (g, w) = (elements::<f64>(got), elements::<f64>(want));
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                if !close(*a, *b) {
                    return mismatch(i, a.to_string(), b.to_string());
                }
            }
        }
        DatumType::String => {
            let (g, w) = (elements::<String>(got), elements::<String>(want));
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                if a != b {
                    return mismatch(i, a.clone(), b.clone());
                }
            }
        }
        _ => {
            let (g, w) = (elements::<i64>(got), elements::<i64>(want));
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                if a != b {
                    return mismatch(i, a.to_string(), b.to_string());
                }
            }
        }
    }
    Ok(())
}

/// Loads the model with every input declared `[N, ...]` (or with its exact shape when the
/// fixture has no batch axis) and optimizes it.
fn load(path: &Path, inputs: &[(String, Tensor)], batch_axis: bool) -> TractResult<Arc<TypedRunnableModel>> {
    let mut model = loader().model_for_path(path)?;
    let n = model.symbols.sym("N");
    let outlets = model.input_outlets()?.to_vec();
    ensure!(outlets.len() == inputs.len(), "model has {} inputs, fixture {}", outlets.len(), inputs.len());
    for (ix, outlet) in outlets.iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        let (_, t) = inputs.iter().find(|(n, _)| *n == name).with_context(|| format!("no fixture input named {name}"))?;
        let mut shape: TVec<TDim> = t.shape().iter().map(|d| d.to_dim()).collect();
        if batch_axis {
            shape[0] = n.to_dim();
        }
        model.set_input_fact(ix, InferenceFact::dt_shape(t.datum_type(), shape))?;
    }
    model.into_optimized()?.into_runnable()
}

/// Runs `plan` on `inputs` (ordered like the model's inputs).
fn run(plan: &Arc<TypedRunnableModel>, inputs: &[(String, Tensor)]) -> TractResult<TVec<Tensor>> {
    let model = plan.model();
    let ordered: TVec<TValue> = model
        .input_outlets()?
        .iter()
        .map(|o| {
            let name = &model.node(o.node).name;
            inputs.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone().into_tvalue()).unwrap()
        })
        .collect();
    // tract-onnx types the int64 outputs of ONNX `Cast` nodes as TDim: compare them as int64
    plan.run(ordered)?
        .into_iter()
        .map(|v| {
            let t = v.into_tensor();
            if t.datum_type() == DatumType::TDim {
                Ok(t.cast_to::<i64>()?.into_owned())
            } else {
                Ok(t)
            }
        })
        .collect()
}

fn check_outputs(what: &str, got: &[Tensor], want: &[(String, Tensor)]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} outputs, expected {}", got.len(), want.len()));
    }
    for (g, (name, w)) in got.iter().zip(want) {
        compare(&format!("{what} output '{name}'"), g, w)?;
    }
    Ok(())
}

fn row(t: &Tensor, i: usize) -> Tensor {
    t.slice(0, i, i + 1).unwrap()
}

/// Checks one fixture; `Err` describes the failure.
fn check_fixture(json_path: &Path) -> Result<(), String> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    let model_path = fixtures_dir().join(doc["model"].as_str().unwrap());
    let inputs: Vec<(String, Tensor)> = doc["inputs"].as_array().unwrap().iter().map(tensor_of).collect();
    let outputs: Vec<(String, Tensor)> = doc["outputs"].as_array().unwrap().iter().map(tensor_of).collect();
    let batch_axis = doc["batch_axis"].as_bool().unwrap();
    let expect_error = &doc["expect_error"];

    let plan = match load(&model_path, &inputs, batch_axis) {
        Ok(plan) => plan,
        Err(e) => {
            let msg = format!("{e:#}");
            if expect_error["stage"] == "load" {
                let needle = expect_error["contains"].as_str().unwrap();
                return if msg.contains(needle) { Ok(()) } else { Err(format!("load failed without mentioning '{needle}': {msg}")) };
            }
            return Err(format!("load failed: {msg}"));
        }
    };
    if expect_error["stage"] == "load" {
        return Err("load succeeded but an error was expected".into());
    }
    if expect_error["stage"] == "run" {
        let needle = expect_error["contains"].as_str().unwrap();
        return match run(&plan, &inputs) {
            Ok(_) => Err("run succeeded but an error was expected".into()),
            Err(e) if format!("{e:#}").contains(needle) => Ok(()),
            Err(e) => Err(format!("run failed without mentioning '{needle}': {e:#}")),
        };
    }

    let got = run(&plan, &inputs).map_err(|e| format!("run (full batch) failed: {e:#}"))?;
    check_outputs("full batch", &got, &outputs)?;
    if batch_axis {
        let rows = inputs[0].1.shape()[0];
        for i in 0..rows {
            let one: Vec<(String, Tensor)> = inputs.iter().map(|(n, t)| (n.clone(), row(t, i))).collect();
            let want: Vec<(String, Tensor)> = outputs.iter().map(|(n, t)| (n.clone(), row(t, i))).collect();
            let got = run(&plan, &one).map_err(|e| format!("run (row {i}) failed: {e:#}"))?;
            check_outputs(&format!("row {i}"), &got, &want)?;
        }
    }
    Ok(())
}

fn fixtures() -> Vec<PathBuf> {
    let filter = std::env::var("ML_FIXTURE").ok();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| filter.as_deref().is_none_or(|f| p.file_stem().unwrap().to_string_lossy().contains(f)))
        .collect();
    paths.sort();
    paths
}

fn check_group(prefixes: &[&str]) {
    let paths: Vec<PathBuf> = fixtures()
        .into_iter()
        .filter(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
            prefixes.iter().any(|pre| stem.starts_with(pre))
        })
        .collect();
    if std::env::var("ML_FIXTURE").is_err() {
        assert!(!paths.is_empty(), "no fixture for {prefixes:?}");
    }
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            check_fixture(p).err().map(|e| format!("--- {name}: {e}"))
        })
        .collect();
    println!("{} fixtures checked, {} failed", paths.len(), failures.len());
    assert!(failures.is_empty(), "{} fixture(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn preprocessing_ops() {
    check_group(&["scaler_", "normalizer_", "imputer_", "binarizer", "afe_", "fv_", "ohe_", "le_", "cm_"]);
}

#[test]
fn linear_ops() {
    check_group(&["lc_", "lr_"]);
}

#[test]
fn tree_ensemble_ops() {
    check_group(&["ter_", "tec_"]);
}

#[test]
fn svm_ops() {
    check_group(&["svr_", "svc_"]);
}

#[test]
fn zipmap_is_rejected() {
    check_group(&["zipmap_"]);
}

#[test]
fn sklearn_converted_models() {
    check_group(&["skl_"]);
}

#[test]
fn lightgbm_converted_models() {
    check_group(&["lgbm_"]);
}

#[test]
fn xgboost_converted_models() {
    check_group(&["xgb_"]);
}

#[test]
fn every_fixture_belongs_to_a_group() {
    let groups = [
        "scaler_",
        "normalizer_",
        "imputer_",
        "binarizer",
        "afe_",
        "fv_",
        "ohe_",
        "le_",
        "cm_",
        "lc_",
        "lr_",
        "ter_",
        "tec_",
        "svr_",
        "svc_",
        "zipmap_",
        "skl_",
        "lgbm_",
        "xgb_",
    ];
    for p in fixtures() {
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        assert!(groups.iter().any(|g| stem.starts_with(g)), "fixture {stem} is in no test group");
    }
}
