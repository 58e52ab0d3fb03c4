//! A BERT-family sentence embedding model on candle: tokenize, encode, pool, normalize.

use std::{fs, path::Path};

use bytes::Bytes;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::{
    bert::{BertModel, Config as BertConfig},
    device::device_for,
    pooling::l2_normalize,
    settings::{read_settings, EmbeddingSettings},
    text::{TextEncoder, TokenBatch},
    HfError,
};
use quiver_core::{BackendError, DataType, Encoded, LoadOptions, Model, ModelSignature, Tensor, TensorInfo};

/// The `model_type`s whose checkpoints `BertModel` reads (bge, e5, all-MiniLM are `bert`).
const BERT_FAMILY: &[&str] = &["bert"];

/// Name of the text input.
pub const TEXT_INPUT: &str = "text";
/// Name of the embedding output.
pub const EMBEDDING_OUTPUT: &str = "embedding";

/// A loaded sentence embedding model.
pub struct EmbeddingModel {
    bert: BertModel,
    encoder: TextEncoder,
    settings: EmbeddingSettings,
    device: Device,
    hidden_size: usize,
    signature: ModelSignature,
}

impl std::fmt::Debug for EmbeddingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingModel")
            .field("settings", &self.settings)
            .field("device", &self.device)
            .field("hidden_size", &self.hidden_size)
            .finish_non_exhaustive()
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, HfError> {
    fs::read(path).map_err(|e| HfError::Io { path: path.to_path_buf(), message: e.to_string() })
}

/// Reads `config.json` as a BERT config, refusing other architectures.
fn read_bert_config(path: &Path) -> Result<BertConfig, HfError> {
    let bytes = read_file(path)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| HfError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
    if let Some(model_type) = value.get("model_type").and_then(serde_json::Value::as_str) {
        if !BERT_FAMILY.contains(&model_type) {
            return Err(HfError::Unsupported(format!(
                "model_type '{model_type}' is not supported (the candle backend serves the BERT family: {BERT_FAMILY:?})"
            )));
        }
    }
    let config: BertConfig = serde_json::from_value(value)
        .map_err(|e| HfError::Invalid { path: path.to_path_buf(), message: format!("not a BERT config: {e}") })?;
    if config.hidden_size == 0 || config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
        return Err(HfError::Invalid {
            path: path.to_path_buf(),
            message: format!("hidden_size {} is not a multiple of num_attention_heads {}", config.hidden_size, config.num_attention_heads),
        });
    }
    Ok(config)
}

fn execution_error(e: candle_core::Error) -> BackendError {
    BackendError::Execution(e.to_string())
}

impl EmbeddingModel {
    /// Loads the model whose weights are `weights` (a `.safetensors` file); `config.json`,
    /// `tokenizer.json` and the sentence-transformers files sit beside it.
    pub fn load(weights: &Path, options: &LoadOptions) -> Result<EmbeddingModel, HfError> {
        let dir = weights.parent().unwrap_or(Path::new("."));
        let config = read_bert_config(&dir.join("config.json"))?;
        let settings = read_settings(dir, config.max_position_embeddings, &options.parameters)?;
        let pad_id = u32::try_from(config.pad_token_id).unwrap_or(0);
        let encoder = TextEncoder::load(&dir.join("tokenizer.json"), settings.max_length, pad_id)?;
        let device = device_for(&options.placement)?;
        // Read into memory rather than mapped: a mapping would let a file rewritten under a
        // running server change its weights (or fault).
        let data = crate::weights::read_checked(weights)?;
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, &device)
            .map_err(|e| HfError::Invalid { path: weights.to_path_buf(), message: e.to_string() })?;
        let bert = BertModel::load(vb, &config).map_err(|e| HfError::Weights(e.to_string()))?;
        let hidden_size = config.hidden_size;
        let signature = ModelSignature {
            inputs: vec![TensorInfo { name: TEXT_INPUT.into(), datatype: DataType::Bytes, shape: vec![-1] }],
            outputs: vec![TensorInfo {
                name: EMBEDDING_OUTPUT.into(),
                datatype: DataType::Fp32,
                shape: vec![-1, i64::try_from(hidden_size).unwrap_or(i64::MAX)],
            }],
        };
        tracing::info!(?settings, ?device, hidden_size, "loaded a BERT embedding model");
        Ok(EmbeddingModel { bert, encoder, settings, device, hidden_size, signature })
    }

    /// Pooling, normalization and sequence length in force.
    pub fn settings(&self) -> &EmbeddingSettings {
        &self.settings
    }

    /// Embeds a padded batch: `[rows, hidden]` FP32 values, row-major.
    fn embed(&self, batch: TokenBatch) -> Result<Vec<f32>, BackendError> {
        if batch.rows == 0 {
            return Ok(Vec::new());
        }
        let shape = (batch.rows, batch.padded_length);
        let ids = candle_core::Tensor::from_vec(batch.ids, shape, &self.device).map_err(execution_error)?;
        let type_ids = candle_core::Tensor::from_vec(batch.type_ids, shape, &self.device).map_err(execution_error)?;
        let mask = candle_core::Tensor::from_vec(batch.attention_mask, shape, &self.device).map_err(execution_error)?;
        let states = self.bert.forward(&ids, &type_ids, &mask).map_err(execution_error)?;
        let pooled = self.settings.pooling.pool(&states, &mask).map_err(execution_error)?;
        let pooled = if self.settings.normalize { l2_normalize(&pooled).map_err(execution_error)? } else { pooled };
        pooled.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(execution_error)
    }

    /// Embeds a batch of `rows` texts into the FP32 output tensor `[rows, hidden]`.
    fn embedding_output(&self, batch: TokenBatch, rows: usize) -> Result<Vec<Tensor>, BackendError> {
        let values = self.embed(batch)?;
        if values.len() != rows * self.hidden_size {
            return Err(BackendError::Execution(format!(
                "the model produced {} values for {rows} texts of hidden size {}",
                values.len(),
                self.hidden_size
            )));
        }
        let mut data = Vec::with_capacity(values.len() * 4);
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let output = Tensor::from_bytes(DataType::Fp32, vec![rows, self.hidden_size], Bytes::from(data))
            .map_err(|e| BackendError::Execution(e.to_string()))?;
        Ok(vec![output])
    }
}

/// The single BYTES input of a request, or an input error.
fn text_input(inputs: &[Tensor]) -> Result<&Tensor, BackendError> {
    match inputs {
        [t] if t.datatype() == DataType::Bytes => Ok(t),
        [t] => Err(BackendError::InvalidInput(format!("input '{TEXT_INPUT}' must be BYTES, got {}", t.datatype()))),
        _ => Err(BackendError::InvalidInput(format!("expected one input '{TEXT_INPUT}', got {}", inputs.len()))),
    }
}

impl Model for EmbeddingModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn prepares(&self) -> bool {
        true
    }

    fn prepare(&self, inputs: &[Tensor]) -> Result<Option<Encoded>, BackendError> {
        Ok(Some(Encoded { sequences: self.encoder.sequences(text_input(inputs)?)? }))
    }

    fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let texts = text_input(&inputs)?;
        // Every element is one sentence, whatever the batch's shape ([n] or [n, 1]).
        let rows = texts.element_count();
        let batch = self.encoder.batch(texts)?;
        self.embedding_output(batch, rows)
    }

    /// Pads the sequences tokenized by `prepare` (one per text, requests in batch order)
    /// instead of tokenizing the texts again.
    fn execute_prepared(&self, inputs: Vec<Tensor>, prepared: &[Encoded]) -> Result<Vec<Tensor>, BackendError> {
        let rows = text_input(&inputs)?.element_count();
        let sequences = prepared.iter().flat_map(|e| &e.sequences);
        let carried = sequences.clone().count();
        if carried != rows || sequences.clone().any(|s| s.type_ids.len() != s.ids.len()) {
            return Err(BackendError::Execution(format!("the batch has {rows} texts but {carried} well-formed tokenized sequences")));
        }
        self.embedding_output(self.encoder.pad(sequences), rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pooling::Pooling;
    use candle_nn::VarMap;
    use std::collections::BTreeMap;

    /// A randomly initialised two-layer BERT with hidden size 8 and the toy tokenizer.
    struct TinyBert {
        dir: std::path::PathBuf,
    }

    impl TinyBert {
        fn new(tag: &str, modules: bool) -> TinyBert {
            let dir = std::env::temp_dir().join(format!("quiver-tiny-bert-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("1_Pooling")).unwrap();
            let config = serde_json::json!({
                "vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 16, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                "max_position_embeddings": 16, "type_vocab_size": 2, "initializer_range": 0.02,
                "layer_norm_eps": 1e-12, "pad_token_id": 0, "model_type": "bert"
            });
            fs::write(dir.join("config.json"), config.to_string()).unwrap();
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let bert_config: BertConfig = serde_json::from_value(config).unwrap();
            BertModel::load_at(vb, &bert_config).unwrap();
            varmap.save(dir.join("model.safetensors")).unwrap();
            fs::write(dir.join("tokenizer.json"), crate::text::tests::TOKENIZER_JSON).unwrap();
            if modules {
                fs::write(
                    dir.join("modules.json"),
                    r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
                        {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                        {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#,
                )
                .unwrap();
                fs::write(dir.join("1_Pooling/config.json"), r#"{"pooling_mode_mean_tokens": true}"#).unwrap();
            }
            TinyBert { dir }
        }

        fn load(&self, parameters: &[(&str, &str)]) -> Result<EmbeddingModel, HfError> {
            let parameters: BTreeMap<String, String> = parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            EmbeddingModel::load(&self.dir.join("model.safetensors"), &LoadOptions { parameters, ..Default::default() })
        }
    }

    impl Drop for TinyBert {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn texts(items: &[&str]) -> Tensor {
        Tensor::from_bytes_elements(vec![items.len()], items.iter().map(|s| s.as_bytes())).unwrap()
    }

    fn rows(t: &Tensor, hidden: usize) -> Vec<Vec<f32>> {
        let values: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        values.chunks(hidden).map(<[f32]>::to_vec).collect()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    #[test]
    fn embeds_with_the_sentence_transformers_head() {
        let tiny = TinyBert::new("head", true);
        let model = tiny.load(&[]).unwrap();
        assert_eq!(model.settings(), &EmbeddingSettings { pooling: Pooling::Mean, normalize: true, max_length: 16 });
        assert_eq!(model.signature().inputs[0].shape, vec![-1]);
        assert_eq!(model.signature().outputs[0].shape, vec![-1, 8]);
        let out = model.execute(vec![texts(&["hello world", "hello"])]).unwrap();
        assert_eq!(out[0].shape(), &[2, 8]);
        for row in rows(&out[0], 8) {
            let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "normalized rows have unit norm, got {norm}");
        }
        let unnormalized = tiny.load(&[("normalize", "false")]).unwrap().execute(vec![texts(&["hello world"])]).unwrap();
        let norm: f32 = rows(&unnormalized[0], 8)[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() > 1e-3);
    }

    #[test]
    fn padding_does_not_change_an_embedding() {
        let tiny = TinyBert::new("padding", false);
        for pooling in ["mean", "cls", "max", "mean_sqrt_len"] {
            let model = tiny.load(&[("pooling", pooling)]).unwrap();
            let sentences = ["hello, worlds hello world", "hello", "", "world world"];
            let batched = rows(&model.execute(vec![texts(&sentences)]).unwrap()[0], 8);
            for (i, sentence) in sentences.iter().enumerate() {
                let alone = rows(&model.execute(vec![texts(&[sentence])]).unwrap()[0], 8);
                let c = cosine(&batched[i], &alone[0]);
                assert!(c > 0.99999, "{pooling}: sentence {i} has cosine {c} between batched and alone");
            }
        }
    }

    #[test]
    fn token_counts_and_input_errors() {
        let tiny = TinyBert::new("count", true);
        let model = tiny.load(&[("max_sequence_length", "4")]).unwrap();
        let count = model.prepare(&[texts(&["hello world hello world", "hello"])]).unwrap().map(|e| e.count());
        assert_eq!(count, Some(quiver_core::TokenCount { longest: 4, total: 7 }));
        let bad = Tensor::from_bytes_elements(vec![1], [&b"\xc3\x28"[..]]).unwrap();
        assert!(matches!(model.prepare(std::slice::from_ref(&bad)), Err(BackendError::InvalidInput(_))));
        assert!(matches!(model.execute(vec![bad]), Err(BackendError::InvalidInput(_))));
        let floats = Tensor::from_bytes(DataType::Fp32, vec![1], Bytes::from_static(&[0; 4])).unwrap();
        assert!(matches!(model.execute(vec![floats]), Err(BackendError::InvalidInput(_))));
        assert_eq!(model.execute(vec![texts(&[])]).unwrap()[0].shape(), &[0, 8]);
    }

    #[test]
    fn prepared_sequences_embed_bit_for_bit_as_raw_texts() {
        let tiny = TinyBert::new("prepared", true);
        let model = tiny.load(&[]).unwrap();
        assert!(model.prepares());
        // Two requests of a batch, prepared apart, stacked as the scheduler stacks them.
        let first = ["hello, worlds hello world", "hello"];
        let second = ["", "world world hello"];
        let prepared: Vec<Encoded> =
            [&first[..], &second[..]].iter().map(|request| model.prepare(&[texts(request)]).unwrap().unwrap()).collect();
        let all = [&first[..], &second[..]].concat();
        let raw = model.execute(vec![texts(&all)]).unwrap();
        let carried = model.execute_prepared(vec![texts(&all)], &prepared).unwrap();
        assert_eq!(raw[0].shape(), carried[0].shape());
        assert_eq!(raw[0].data(), carried[0].data(), "the same bits with and without the carried tokens");
        // Carried sequences that do not match the texts are an error, never a wrong answer.
        assert!(matches!(model.execute_prepared(vec![texts(&all)], &prepared[..1]), Err(BackendError::Execution(_))));
        assert_eq!(model.execute_prepared(vec![texts(&[])], &[]).unwrap()[0].shape(), &[0, 8]);
    }

    #[test]
    fn load_errors_name_the_problem() {
        let tiny = TinyBert::new("errors", true);
        fs::write(tiny.dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
        assert!(tiny.load(&[]).unwrap_err().to_string().contains("model_type 'llama'"));
        fs::write(tiny.dir.join("config.json"), r#"{"model_type": "bert", "hidden_size": 8}"#).unwrap();
        assert!(matches!(tiny.load(&[]), Err(HfError::Invalid { .. })));
        let tiny = TinyBert::new("weights", true);
        fs::write(tiny.dir.join("model.safetensors"), b"not safetensors").unwrap();
        assert!(matches!(tiny.load(&[]), Err(HfError::Invalid { .. })));
        // A header that claims 100 GB of weights fails on the header, not on an allocation.
        let mut claim = br#"{"w": {"dtype": "F32", "shape": [25000000000], "data_offsets": [0, 100000000000]}}"#.to_vec();
        claim.splice(0..0, (claim.len() as u64).to_le_bytes());
        fs::write(tiny.dir.join("model.safetensors"), claim).unwrap();
        assert!(tiny.load(&[]).unwrap_err().to_string().contains("tensor 'w'"));
        fs::write(tiny.dir.join("config.json"), "{ not json").unwrap();
        assert!(matches!(tiny.load(&[]), Err(HfError::Invalid { .. })));
        let tiny = TinyBert::new("badtokenizer", true);
        fs::write(tiny.dir.join("tokenizer.json"), r#"{"model": {"type": "WordPiece", "vocab": 7}}"#).unwrap();
        assert!(tiny.load(&[]).unwrap_err().to_string().contains("tokenizer.json"));
        let tiny = TinyBert::new("tokenizer", true);
        fs::remove_file(tiny.dir.join("tokenizer.json")).unwrap();
        assert!(tiny.load(&[]).unwrap_err().to_string().contains("tokenizer.json"));
    }
}
