//! The BERT encoder (Hugging Face `BertModel`) for inference, on candle.
//!
//! The same architecture and checkpoint names as `transformers`' `modeling_bert.py` (and
//! candle-transformers' port of it), arranged for serving: the query, key and value
//! projections are one matmul, and on the CPU attention and GELU run as the fused kernels of
//! [`super::cpu_ops`]. On a GPU every step is a candle op (cuBLAS matmuls and candle's
//! kernels). Dropout and the pooler are left out: embeddings need neither.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::cpu_ops::{Attention, DenseT, GeluErf};

/// The activation of the intermediate layer (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HiddenAct {
    /// The exact GELU, `x·Φ(x)`.
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU's tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    /// `max(x, 0)`.
    #[serde(rename = "relu")]
    Relu,
}

fn default_act() -> HiddenAct {
    HiddenAct::Gelu
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

/// The fields of a BERT `config.json` the encoder needs (the rest are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Size of the vocabulary.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads (dividing `hidden_size`).
    pub num_attention_heads: usize,
    /// Width of the intermediate (feed-forward) layer.
    pub intermediate_size: usize,
    /// The intermediate layer's activation.
    #[serde(default = "default_act")]
    pub hidden_act: HiddenAct,
    /// Number of positions the model has embeddings for.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Epsilon of the layer norms.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `absolute` position embeddings are supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// `bert`, or a family member's name (its weights may be prefixed with it).
    #[serde(default)]
    pub model_type: Option<String>,
}

/// A linear layer `x·Wᵀ + b`, as `torch.nn.Linear` stores it. (The initialisations are
/// torch's, for weights made rather than read, as in tests.)
fn linear(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Linear> {
    let bound = 1.0 / (inputs as f64).sqrt();
    let weight = vb.get_with_hints((outputs, inputs), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
    let bias = vb.get_with_hints(outputs, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?;
    Ok(Linear::new(weight, Some(bias)))
}

/// A linear layer: on the CPU in F32 the weight is kept transposed for [`DenseT`]; elsewhere
/// it is candle's `Linear`.
enum Dense {
    Cpu { weight_t: Tensor, bias: Tensor },
    Other(Linear),
}

impl Dense {
    fn new(linear: Linear) -> Result<Dense> {
        let weight = linear.weight();
        match linear.bias() {
            Some(bias) if weight.device().is_cpu() && weight.dtype() == DType::F32 => {
                Ok(Dense::Cpu { weight_t: weight.t()?.contiguous()?, bias: bias.clone() })
            }
            _ => Ok(Dense::Other(linear)),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Cpu { weight_t, bias } => x.contiguous()?.apply_op3_no_bwd(weight_t, bias, &DenseT),
            Dense::Other(linear) => linear.forward(x),
        }
    }
}

struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, config: &Config) -> Result<Embeddings> {
        Ok(Embeddings {
            words: embedding(config.vocab_size, config.hidden_size, vb.pp("word_embeddings"))?,
            positions: embedding(config.max_position_embeddings, config.hidden_size, vb.pp("position_embeddings"))?,
            token_types: embedding(config.type_vocab_size, config.hidden_size, vb.pp("token_type_embeddings"))?,
            norm: layer_norm(config.hidden_size, config.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, ids: &Tensor, type_ids: &Tensor) -> Result<Tensor> {
        let (_, seq_len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, seq_len as u32, ids.device())?;
        let x = (self.words.forward(ids)? + self.token_types.forward(type_ids)?)?;
        let x = x.broadcast_add(&self.positions.forward(&positions)?)?;
        self.norm.forward(&x)
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    act: HiddenAct,
    output: Dense,
    output_norm: LayerNorm,
    heads: usize,
    head_size: usize,
}

impl Layer {
    fn load(vb: VarBuilder, config: &Config) -> Result<Layer> {
        let h = config.hidden_size;
        let attention = vb.pp("attention");
        let this = attention.pp("self");
        let (q, k, v) = (linear(&this.pp("query"), h, h)?, linear(&this.pp("key"), h, h)?, linear(&this.pp("value"), h, h)?);
        let bias = |l: &Linear| l.bias().cloned().ok_or_else(|| candle_core::Error::Msg("a projection without bias".into()));
        let qkv =
            Linear::new(Tensor::cat(&[q.weight(), k.weight(), v.weight()], 0)?, Some(Tensor::cat(&[bias(&q)?, bias(&k)?, bias(&v)?], 0)?));
        Ok(Layer {
            qkv: Dense::new(qkv)?,
            attention_out: Dense::new(linear(&attention.pp("output").pp("dense"), h, h)?)?,
            attention_norm: layer_norm(h, config.layer_norm_eps, attention.pp("output").pp("LayerNorm"))?,
            intermediate: Dense::new(linear(&vb.pp("intermediate").pp("dense"), h, config.intermediate_size)?)?,
            act: config.hidden_act,
            output: Dense::new(linear(&vb.pp("output").pp("dense"), config.intermediate_size, h)?)?,
            output_norm: layer_norm(h, config.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: config.num_attention_heads,
            head_size: h / config.num_attention_heads,
        })
    }

    /// Self-attention over `x` `[b, s, h]`; `keep` `[b, s]` is 1.0 for tokens, 0.0 for padding.
    fn attention(&self, x: &Tensor, keep: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return qkv.apply_op2_no_bwd(keep, &Attention { heads: self.heads, head_size: self.head_size });
        }
        attention_reference(&qkv, keep, self.heads, self.head_size)
    }

    fn activation(&self, x: &Tensor) -> Result<Tensor> {
        match self.act {
            HiddenAct::Gelu if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() => x.apply_op1_no_bwd(&GeluErf),
            HiddenAct::Gelu => x.gelu_erf(),
            HiddenAct::GeluTanh => x.gelu(),
            HiddenAct::Relu => x.relu(),
        }
    }

    fn forward(&self, x: &Tensor, keep: &Tensor) -> Result<Tensor> {
        let context = self.attention(x, keep)?;
        let x = self.attention_norm.forward(&(self.attention_out.forward(&context)? + x)?)?;
        let inner = self.activation(&self.intermediate.forward(&x)?)?;
        self.output_norm.forward(&(self.output.forward(&inner)? + x)?)
    }
}

/// Attention from the fused QKV projection with candle's ops: the definition [`Attention`]
/// computes on the CPU, and the path every other device takes.
fn attention_reference(qkv: &Tensor, keep: &Tensor, heads: usize, head_size: usize) -> Result<Tensor> {
    let (b, s, _) = qkv.dims3()?;
    // [b, s, 3, heads, d] → [3, b, heads, s, d]
    let qkv = qkv.reshape((b, s, 3, heads, head_size))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let scores = (q.matmul(&k.t()?)? / (head_size as f64).sqrt())?;
    // 0 for tokens, the lowest float for padding, as transformers' extended attention mask.
    let bias = ((keep.ones_like()? - keep)? * f64::from(f32::MIN))?.reshape((b, 1, 1, s))?;
    let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias)?)?;
    probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, heads * head_size))
}

/// A loaded BERT encoder.
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertModel {
    /// Loads the encoder's weights: `embeddings.*` and `encoder.layer.N.*`, bare or under a
    /// `bert.` or `<model_type>.` prefix, as checkpoints name them.
    pub fn load(vb: VarBuilder, config: &Config) -> Result<BertModel> {
        let probe = "embeddings.word_embeddings.weight";
        let mut prefixes = vec![String::new(), "bert".to_string()];
        prefixes.extend(config.model_type.iter().cloned());
        let vb = match prefixes.iter().find(|p| vb.contains_tensor(&if p.is_empty() { probe.to_string() } else { format!("{p}.{probe}") }))
        {
            Some(p) if p.is_empty() => vb,
            Some(p) => vb.pp(p),
            None => candle_core::bail!("no tensor '{probe}' (bare or under {:?})", &prefixes[1..]),
        };
        BertModel::load_at(vb, config)
    }

    /// Loads the encoder from `vb` as it is (no prefix search); also makes the weights of a
    /// fresh `VarMap`, which holds no tensor to probe.
    pub(crate) fn load_at(vb: VarBuilder, config: &Config) -> Result<BertModel> {
        if config.position_embedding_type != "absolute" {
            candle_core::bail!("position_embedding_type '{}' is not supported (only 'absolute')", config.position_embedding_type);
        }
        let layers =
            (0..config.num_hidden_layers).map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config)).collect::<Result<Vec<_>>>()?;
        Ok(BertModel { embeddings: Embeddings::load(vb.pp("embeddings"), config)?, layers })
    }

    /// The last hidden states `[b, s, hidden]` for token ids, token type ids and attention
    /// mask (all `[b, s]` u32; mask 1 for tokens, 0 for padding).
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let keep = mask.to_dtype(DType::F32)?;
        let mut x = self.embeddings.forward(ids, type_ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, &keep)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_cpu_attention_matches_candle_ops() {
        let (b, s, heads, d) = (3, 7, 4, 8);
        let qkv = Tensor::randn(0f32, 1.0, (b, s, 3 * heads * d), &Device::Cpu).unwrap();
        // Sequences of 7, 4 and 1 tokens.
        let keep: Vec<f32> = [7, 4, 1].iter().flat_map(|&n| (0..s).map(move |i| if i < n { 1.0 } else { 0.0 })).collect();
        let keep = Tensor::from_vec(keep, (b, s), &Device::Cpu).unwrap();
        let fused = qkv.apply_op2_no_bwd(&keep, &Attention { heads, head_size: d }).unwrap();
        let reference = attention_reference(&qkv, &keep, heads, d).unwrap();
        let diff = (fused - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "max difference {diff}");
    }

    #[test]
    fn transposed_dense_matches_candle_linear() {
        for tokens in [1, 5, 70] {
            let weight = Tensor::randn(0f32, 1.0, (24, 40), &Device::Cpu).unwrap();
            let bias = Tensor::randn(0f32, 1.0, 24, &Device::Cpu).unwrap();
            let linear = Linear::new(weight, Some(bias));
            let x = Tensor::randn(0f32, 1.0, (2, tokens, 40), &Device::Cpu).unwrap();
            let want = linear.forward(&x).unwrap();
            let got = Dense::new(linear).unwrap().forward(&x).unwrap();
            assert_eq!(got.dims(), &[2, tokens, 24]);
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "{tokens} tokens: max difference {diff}");
        }
    }

    #[test]
    fn fused_gelu_matches_candle() {
        let x = Tensor::randn(0f32, 3.0, (5, 1000), &Device::Cpu).unwrap();
        let fused = x.apply_op1_no_bwd(&GeluErf).unwrap();
        let diff = (fused - x.gelu_erf().unwrap()).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "max difference {diff}");
    }

    #[test]
    fn config_reads_hidden_acts_and_defaults() {
        let json = |act: &str| {
            serde_json::json!({"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 16, "max_position_embeddings": 16, "hidden_act": act})
        };
        let config: Config = serde_json::from_value(json("gelu")).unwrap();
        assert_eq!((config.hidden_act, config.type_vocab_size, config.layer_norm_eps), (HiddenAct::Gelu, 2, 1e-12));
        for act in ["gelu_new", "gelu_pytorch_tanh"] {
            assert_eq!(serde_json::from_value::<Config>(json(act)).unwrap().hidden_act, HiddenAct::GeluTanh);
        }
        assert!(serde_json::from_value::<Config>(json("swish")).is_err());
    }
}
