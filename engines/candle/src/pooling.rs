//! From token states to one vector per sentence: sentence-transformers' pooling modes and its
//! `Normalize` module, on candle tensors. Padding positions (attention mask 0) never contribute.

use candle_core::{DType, Tensor, D};

use super::HfError;

/// A pooling mode of sentence-transformers' `Pooling` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's state (`[CLS]`), as bge-style models use.
    Cls,
    /// The mean of the real tokens' states, as all-MiniLM and e5 use.
    Mean,
    /// The element-wise maximum over the real tokens.
    Max,
    /// The sum of the real tokens' states divided by the square root of their count.
    MeanSqrtLen,
}

/// The value padding takes before a max (sentence-transformers uses the same).
const MAX_POOL_PADDING: f64 = -1e9;

/// Smallest divisor for the mean and the norm, as torch's `clamp(min=1e-9)` and
/// `F.normalize(eps=1e-12)` in sentence-transformers.
const MEAN_EPSILON: f64 = 1e-9;
const NORM_EPSILON: f64 = 1e-12;

impl Pooling {
    /// Parses a pooling name as the model config's `pooling` parameter spells it.
    pub fn from_name(name: &str) -> Result<Pooling, HfError> {
        match name {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            "max" => Ok(Pooling::Max),
            "mean_sqrt_len" => Ok(Pooling::MeanSqrtLen),
            other => Err(HfError::Unsupported(format!("pooling '{other}' is not one of cls, mean, max, mean_sqrt_len"))),
        }
    }

    /// Pools `states` `[rows, tokens, hidden]` under `mask` `[rows, tokens]` (1 for a real
    /// token, 0 for padding, any dtype) into `[rows, hidden]`.
    pub fn pool(self, states: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let mask = mask.to_dtype(states.dtype())?.unsqueeze(D::Minus1)?;
        match self {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let sum = states.broadcast_mul(&mask)?.sum(1)?;
                let count = mask.sum(1)?.clamp(MEAN_EPSILON, f64::MAX)?;
                let divisor = if self == Pooling::Mean { count } else { count.sqrt()? };
                sum.broadcast_div(&divisor)
            }
            Pooling::Max => {
                // Padding becomes a large negative number so it never wins the maximum.
                let padding = ((mask.ones_like()? - &mask)? * MAX_POOL_PADDING)?;
                states.broadcast_mul(&mask)?.broadcast_add(&padding)?.max(1)
            }
        }
    }
}

/// Scales each row of `[rows, hidden]` to unit L2 norm.
pub fn l2_normalize(rows: &Tensor) -> candle_core::Result<Tensor> {
    let norm = rows.to_dtype(DType::F32)?.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(NORM_EPSILON, f64::MAX)?;
    rows.broadcast_div(&norm.to_dtype(rows.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two sentences of 3 token slots, hidden size 2; the second has one padding slot whose
    /// state is huge, so any leak of padding shows.
    fn states_and_mask() -> (Tensor, Tensor) {
        let states = Tensor::new(&[[[1f32, 2.], [3., 4.], [5., 6.]], [[-1., 0.], [3., -2.], [1000., 1000.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &Device::Cpu).unwrap();
        (states, mask)
    }

    fn rows(t: Tensor) -> Vec<Vec<f32>> {
        t.to_vec2().unwrap()
    }

    #[test]
    fn modes_ignore_padding() {
        let (states, mask) = states_and_mask();
        assert_eq!(rows(Pooling::Cls.pool(&states, &mask).unwrap()), vec![vec![1., 2.], vec![-1., 0.]]);
        assert_eq!(rows(Pooling::Mean.pool(&states, &mask).unwrap()), vec![vec![3., 4.], vec![1., -1.]]);
        assert_eq!(rows(Pooling::Max.pool(&states, &mask).unwrap()), vec![vec![5., 6.], vec![3., 0.]]);
        let sqrt = rows(Pooling::MeanSqrtLen.pool(&states, &mask).unwrap());
        let expect = [[9. / 3f32.sqrt(), 12. / 3f32.sqrt()], [2. / 2f32.sqrt(), -2. / 2f32.sqrt()]];
        for (got, want) in sqrt.iter().flatten().zip(expect.iter().flatten()) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    fn a_fully_masked_row_pools_to_zero_not_nan() {
        let states = Tensor::new(&[[[1f32, 2.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[0u32]], &Device::Cpu).unwrap();
        assert_eq!(rows(Pooling::Mean.pool(&states, &mask).unwrap()), vec![vec![0., 0.]]);
        assert_eq!(rows(l2_normalize(&Tensor::new(&[[0f32, 0.]], &Device::Cpu).unwrap()).unwrap()), vec![vec![0., 0.]]);
    }

    #[test]
    fn normalization_gives_unit_rows() {
        let v = Tensor::new(&[[3f32, 4.], [0., -2.]], &Device::Cpu).unwrap();
        assert_eq!(rows(l2_normalize(&v).unwrap()), vec![vec![0.6, 0.8], vec![0., -1.]]);
    }

    #[test]
    fn names() {
        assert_eq!(Pooling::from_name("mean_sqrt_len").unwrap(), Pooling::MeanSqrtLen);
        assert!(Pooling::from_name("MEAN").is_err());
    }
}
