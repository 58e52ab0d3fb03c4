//! Operators of the ONNX `ai.onnx.ml` domain (traditional machine learning: scikit-learn,
//! XGBoost and LightGBM models converted by skl2onnx / onnxmltools), as tract operators.
//!
//! [`register`] adds them to a tract-onnx [`Onnx`] loader. Each operator mirrors onnxruntime's
//! CPU implementation, including its quirks, since converted models are validated against it.
//! tract-onnx's own `CategoryMapper`, `LinearClassifier`, `LinearRegressor`, `Normalizer` and
//! `TreeEnsembleClassifier` are replaced: they disagree with onnxruntime on some modes (see
//! each module). `ZipMap` (which outputs maps, a type tract has no tensor for) is rejected at load
//! time with a message asking for models converted with zipmap disabled.

use tract_onnx::Onnx;

pub mod array_feature_extractor;
pub mod binarizer;
pub mod common;
pub mod feature_vectorizer;
pub mod imputer;
pub mod label_encoder;
pub mod linear;
pub mod normalizer;
pub mod one_hot_encoder;
pub mod scaler;
pub mod svm;
pub mod tree_ensemble;
pub mod zipmap;

/// Registers the `ai.onnx.ml` operators in `onnx`'s op registry (keyed by op type), replacing
/// tract-onnx's implementations of the same names.
pub fn register(onnx: &mut Onnx) {
    let reg = &mut onnx.op_register;
    reg.insert("ArrayFeatureExtractor", array_feature_extractor::build);
    reg.insert("Binarizer", binarizer::build);
    reg.insert("CategoryMapper", label_encoder::build_category_mapper);
    reg.insert("FeatureVectorizer", feature_vectorizer::build);
    reg.insert("Imputer", imputer::build);
    reg.insert("LabelEncoder", label_encoder::build_label_encoder);
    reg.insert("LinearClassifier", linear::build_classifier);
    reg.insert("LinearRegressor", linear::build_regressor);
    reg.insert("Normalizer", normalizer::build);
    reg.insert("OneHotEncoder", one_hot_encoder::build);
    reg.insert("Scaler", scaler::build);
    reg.insert("SVMClassifier", svm::build_classifier);
    reg.insert("SVMRegressor", svm::build_regressor);
    reg.insert("TreeEnsembleClassifier", tree_ensemble::build_classifier);
    reg.insert("TreeEnsembleRegressor", tree_ensemble::build_regressor);
    reg.insert("ZipMap", zipmap::build);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_operator() {
        let mut onnx = tract_onnx::onnx();
        let tract_builder = onnx.op_register.0["TreeEnsembleClassifier"];
        register(&mut onnx);
        for op in [
            "ArrayFeatureExtractor",
            "Binarizer",
            "CategoryMapper",
            "FeatureVectorizer",
            "Imputer",
            "LabelEncoder",
            "LinearClassifier",
            "LinearRegressor",
            "Normalizer",
            "OneHotEncoder",
            "Scaler",
            "SVMClassifier",
            "SVMRegressor",
            "TreeEnsembleClassifier",
            "TreeEnsembleRegressor",
            "ZipMap",
        ] {
            assert!(onnx.op_register.0.contains_key(op), "{op} is not registered");
        }
        // tract's own classifier is replaced
        assert!(onnx.op_register.0["TreeEnsembleClassifier"] as usize != tract_builder as usize);
    }
}
