//! Text to token ids: a Hugging Face `tokenizer.json` with truncation at the model's sequence
//! length, and padding done here, only to the longest sequence of each batch.

use std::path::Path;

use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::HfError;
use quiver_core::{BackendError, Sequence, Tensor, TokenCount};

/// Longest text accepted per element, in bytes. Truncation to the sequence length happens only
/// after the whole text is tokenized, so the text itself needs a bound.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

/// A tokenizer set up for embedding: truncating, not padding.
#[derive(Debug)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    pad_id: u32,
    max_length: usize,
}

/// A batch of token ids, row-major `[rows, padded_length]`, padded to its longest sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token type (segment) ids.
    pub type_ids: Vec<u32>,
    /// 1 for a real token, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Sequences.
    pub rows: usize,
    /// Tokens per row after padding: the longest sequence's length.
    pub padded_length: usize,
}

impl TextEncoder {
    /// Loads `tokenizer.json`, replacing its own truncation and padding with truncation at
    /// `max_length` tokens (special tokens included) and no padding. `default_pad_id` is used
    /// when the file names no padding token.
    pub fn load(path: &Path, max_length: usize, default_pad_id: u32) -> Result<TextEncoder, HfError> {
        let mut tokenizer =
            Tokenizer::from_file(path).map_err(|e| HfError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
        let pad_id = tokenizer.get_padding().map_or(default_pad_id, |p| p.pad_id);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| HfError::Unsupported(format!("{}: truncation at {max_length} tokens: {e}", path.display())))?;
        Ok(TextEncoder { tokenizer, pad_id, max_length })
    }

    /// The sequence length texts are truncated to.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Tokenizes every element of a BYTES tensor (one text per element).
    fn encode(&self, texts: &Tensor) -> Result<Vec<Encoding>, BackendError> {
        let texts = utf8_elements(texts)?;
        self.tokenizer.encode_batch_fast(texts, true).map_err(|e| BackendError::InvalidInput(format!("the text cannot be tokenized: {e}")))
    }

    /// Tokenizes every element of a BYTES tensor into unpadded sequences, in element order.
    pub fn sequences(&self, texts: &Tensor) -> Result<Vec<Sequence>, BackendError> {
        Ok(self.encode(texts)?.iter().map(|e| Sequence { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec() }).collect())
    }

    /// Tokens of the texts in a BYTES tensor: the longest sequence and the total.
    pub fn count(&self, texts: &Tensor) -> Result<TokenCount, BackendError> {
        let encodings = self.encode(texts)?;
        Ok(TokenCount { longest: encodings.iter().map(Encoding::len).max().unwrap_or(0), total: encodings.iter().map(Encoding::len).sum() })
    }

    /// Tokenizes the texts of a BYTES tensor into one batch padded to its longest sequence.
    pub fn batch(&self, texts: &Tensor) -> Result<TokenBatch, BackendError> {
        Ok(self.pad(&self.sequences(texts)?))
    }

    /// Lays sequences tokenized earlier out as one batch padded to its longest sequence.
    pub fn pad<'a>(&self, sequences: impl IntoIterator<Item = &'a Sequence> + Clone) -> TokenBatch {
        pad(sequences, self.pad_id)
    }
}

/// The elements of a BYTES tensor as text; invalid UTF-8 and oversized texts are input errors.
fn utf8_elements(texts: &Tensor) -> Result<Vec<&str>, BackendError> {
    texts
        .bytes_elements()
        .enumerate()
        .map(|(index, element)| {
            if element.len() > MAX_TEXT_BYTES {
                return Err(BackendError::InvalidInput(format!(
                    "text element {index} is {} bytes, more than the {MAX_TEXT_BYTES} accepted",
                    element.len()
                )));
            }
            std::str::from_utf8(element).map_err(|e| BackendError::InvalidInput(format!("text element {index} is not valid UTF-8: {e}")))
        })
        .collect()
}

/// Lays sequences out row-major, each padded with `pad_id` (mask 0) to the longest. Every token
/// of an unpadded sequence is real (mask 1): truncation and the special-token template never
/// add masked tokens, only padding does.
fn pad<'a>(sequences: impl IntoIterator<Item = &'a Sequence> + Clone, pad_id: u32) -> TokenBatch {
    let (rows, padded_length) = sequences.clone().into_iter().fold((0, 0), |(rows, longest), s| (rows + 1, longest.max(s.ids.len())));
    let cells = rows * padded_length;
    let mut batch = TokenBatch {
        ids: Vec::with_capacity(cells),
        type_ids: Vec::with_capacity(cells),
        attention_mask: Vec::with_capacity(cells),
        rows,
        padded_length,
    };
    for sequence in sequences {
        let length = sequence.ids.len();
        let padding = padded_length - length;
        batch.ids.extend(sequence.ids.iter().copied().chain(std::iter::repeat_n(pad_id, padding)));
        batch.type_ids.extend(sequence.type_ids.iter().copied().chain(std::iter::repeat_n(0, padding)));
        batch.attention_mask.extend(std::iter::repeat_n(1, length).chain(std::iter::repeat_n(0, padding)));
    }
    batch
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A BERT-style tokenizer.json with a six-word vocabulary: the same normalizer,
    /// pre-tokenizer, WordPiece model and [CLS]/[SEP] template as all-MiniLM-L6-v2's, and the
    /// fixed padding and truncation its file carries (which `load` must replace).
    pub(crate) const TOKENIZER_JSON: &str = r###"{
      "version": "1.0",
      "truncation": {"max_length": 128, "strategy": "LongestFirst", "stride": 0},
      "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
                  "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
      "added_tokens": [],
      "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                     "strip_accents": null, "lowercase": true},
      "pre_tokenizer": {"type": "BertPreTokenizer"},
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
        "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                           "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
      "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
      "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100,
                "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "##s": 6, ",": 7}}
    }"###;

    fn encoder(max_length: usize) -> TextEncoder {
        let path = std::env::temp_dir().join(format!("quiver-tokenizer-test-{}-{max_length}.json", std::process::id()));
        std::fs::write(&path, TOKENIZER_JSON).unwrap();
        let encoder = TextEncoder::load(&path, max_length, 0).unwrap();
        std::fs::remove_file(&path).unwrap();
        encoder
    }

    fn texts(items: &[&[u8]]) -> Tensor {
        Tensor::from_bytes_elements(vec![items.len()], items.iter().copied()).unwrap()
    }

    #[test]
    fn pads_only_to_the_longest_sequence() {
        let batch = encoder(16).batch(&texts(&[b"Hello, worlds", b"hello", b""])).unwrap();
        assert_eq!((batch.rows, batch.padded_length), (3, 6));
        assert_eq!(batch.ids, vec![2, 4, 7, 5, 6, 3, 2, 4, 3, 0, 0, 0, 2, 3, 0, 0, 0, 0]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0]);
        assert_eq!(batch.type_ids, vec![0; 18]);
    }

    #[test]
    fn truncates_to_max_length_with_special_tokens() {
        let encoder = encoder(4);
        let batch = encoder.batch(&texts(&[b"hello world hello world unknownword"])).unwrap();
        assert_eq!(batch.ids, vec![2, 4, 5, 3]);
        let count = encoder.count(&texts(&[b"hello world hello", b"hello"])).unwrap();
        assert_eq!(count, TokenCount { longest: 4, total: 7 });
    }

    #[test]
    fn bad_text_is_an_input_error() {
        let err = encoder(8).count(&texts(&[b"fine", b"\xff\xfe"])).unwrap_err();
        assert!(matches!(&err, BackendError::InvalidInput(m) if m.contains("element 1 is not valid UTF-8")), "{err}");
        let huge = vec![b'a'; MAX_TEXT_BYTES + 1];
        assert!(matches!(encoder(8).batch(&texts(&[&huge])), Err(BackendError::InvalidInput(_))));
    }

    #[test]
    fn missing_or_broken_tokenizer_files_are_load_errors() {
        let missing = std::env::temp_dir().join("quiver-no-such-tokenizer.json");
        assert!(matches!(TextEncoder::load(&missing, 8, 0), Err(HfError::Invalid { .. })));
        let broken = std::env::temp_dir().join(format!("quiver-broken-tokenizer-{}.json", std::process::id()));
        std::fs::write(&broken, r#"{"model": {"type": "NoSuchModel"}}"#).unwrap();
        let err = TextEncoder::load(&broken, 8, 0).unwrap_err();
        std::fs::remove_file(&broken).unwrap();
        assert!(err.to_string().contains("quiver-broken-tokenizer"), "{err}");
    }
}
