//! Fused CPU kernels for the BERT encoder, as candle custom ops.
//!
//! candle runs attention on the CPU as a sequence of small batched matmuls (one gemm call per
//! head, each run alone), a mask add, a softmax with scalar `expf`, and transposing copies;
//! and GELU with a scalar `erff` per element. Profiles of all-MiniLM-L6-v2 put more than a third
//! of the time there. These kernels do the same arithmetic in fewer passes:
//!
//! - [`Attention`]: from the fused QKV projection `[b, s, 3h]`, per (sequence, head) in
//!   parallel: scores = QKᵀ/√d by gemm on strided views (no copies), a masked softmax with a
//!   vectorisable `exp`, then P·V written straight into `[b, s, h]`;
//! - [`GeluErf`]: the exact (erf) GELU with a vectorisable erf, in parallel chunks;
//! - [`DenseT`]: a linear layer from a weight stored transposed, computed as `(W·xᵀ)ᵀ` with
//!   the bias as the gemm's starting value. The output features are the gemm's long side, so
//!   its AVX-512 tiles stay full when a batch has few tokens (with the tokens as the long side,
//!   a one-sentence batch of 20 tokens used a third of each 64-row tile and ran slower than
//!   AVX2).
//!
//! They exist for F32 on the CPU only; on other devices the encoder uses candle's own ops.
//! Their results match those within float rounding (see the tests).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

/// `exp(x)` for f32, written so loops over slices vectorise (Cephes' `expf` polynomial after
/// reduction by ln 2; relative error within a few f32 ulps). Arguments are clamped to the finite range.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a rounding
    // instruction (SSE2 has none).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n through the exponent bits; n lies in [-126, 127] after the clamp.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    y * scale
}

/// `erf(x)` for f32, vectorisable (Abramowitz & Stegun 7.1.26; absolute error below 1e-6 in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// The exact GELU, `x·Φ(x) = x/2·(1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Elements per parallel chunk of an elementwise op: large enough to amortise the dispatch.
const CHUNK: usize = 16 * 1024;

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what}: expected an f32 tensor");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what}: expected a contiguous tensor");
    };
    Ok(&data[start..end])
}

/// The exact (erf) GELU on a contiguous F32 CPU tensor.
#[derive(Debug, Clone, Copy)]
pub struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "quiver-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(out, src)| {
            for (o, &x) in out.iter_mut().zip(src) {
                *o = gelu_erf(x);
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// A linear layer `x·Wᵀ + b` from the weight stored transposed.
///
/// Inputs: `x` `[.., in]`, `weight_t` `[in, out]` (Wᵀ, contiguous) and `bias` `[out]`.
/// Output: `[.., out]`.
#[derive(Debug, Clone, Copy)]
pub struct DenseT;

impl CustomOp3 for DenseT {
    fn name(&self) -> &'static str {
        "quiver-dense"
    }

    fn cpu_fwd(
        &self,
        x_s: &CpuStorage,
        x_l: &Layout,
        w_s: &CpuStorage,
        w_l: &Layout,
        b_s: &CpuStorage,
        b_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, weight_t, bias) =
            (contiguous_f32(x_s, x_l, self.name())?, contiguous_f32(w_s, w_l, self.name())?, contiguous_f32(b_s, b_l, self.name())?);
        let (inputs, outputs) = w_l.shape().dims2()?;
        let mut dims = x_l.shape().dims().to_vec();
        if dims.last() != Some(&inputs) || bias.len() != outputs {
            candle_core::bail!("{}: x {:?}, weight_t {:?} and bias {:?} do not fit", self.name(), x_l.shape(), w_l.shape(), b_l.shape());
        }
        let tokens = x.len() / inputs.max(1);
        let mut y = Vec::with_capacity(tokens * outputs);
        for _ in 0..tokens {
            y.extend_from_slice(bias);
        }
        // SAFETY: y is tokens×out, weight_t in×out and x tokens×in, all contiguous; the strides
        // below address exactly those elements.
        unsafe {
            // yᵀ (out×tokens, columns `out` apart) = 1·yᵀ (the bias) + Wᵀᵀ (out×in) × xᵀ (in×tokens).
            gemm::gemm(
                outputs,
                tokens,
                inputs,
                y.as_mut_ptr(),
                outputs as isize,
                1,
                true,
                weight_t.as_ptr(),
                outputs as isize,
                1,
                x.as_ptr(),
                inputs as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
        if let Some(last) = dims.last_mut() {
            *last = outputs;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

/// Softmax of `row` in place over the positions whose `keep` is 1 (the others get 0).
#[inline]
fn masked_softmax(row: &mut [f32], keep: &[f32]) {
    let mut max = f32::NEG_INFINITY;
    for (&x, &k) in row.iter().zip(keep) {
        max = max.max(if k != 0.0 { x } else { f32::NEG_INFINITY });
    }
    let mut sum = 0.0f32;
    for (x, &k) in row.iter_mut().zip(keep) {
        // exp clamps, so a dropped position is a finite value times 0, never NaN.
        let e = exp(*x - max) * k;
        *x = e;
        sum += e;
    }
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// A raw pointer that parallel tasks write through, each to its own disjoint elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes a disjoint set of elements (its own head's columns).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// Multi-head self-attention from a fused QKV projection.
///
/// Inputs: `qkv` `[b, s, 3·hidden]` (per token: all heads' queries, then keys, then values)
/// and `keep` `[b, s]` (1.0 for a token, 0.0 for padding). Output: `[b, s, hidden]`, each
/// head's context in its own `head_size` columns, as BERT concatenates them.
#[derive(Debug, Clone, Copy)]
pub struct Attention {
    /// Number of heads.
    pub heads: usize,
    /// Width of each head (`hidden / heads`).
    pub head_size: usize,
}

impl CustomOp2 for Attention {
    fn name(&self) -> &'static str {
        "quiver-attention"
    }

    fn cpu_fwd(&self, qkv_s: &CpuStorage, qkv_l: &Layout, keep_s: &CpuStorage, keep_l: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(qkv_s, qkv_l, self.name())?;
        let keep = contiguous_f32(keep_s, keep_l, self.name())?;
        let (b, s, three_h) = qkv_l.shape().dims3()?;
        let hidden = self.heads * self.head_size;
        if three_h != 3 * hidden || keep_l.shape().dims2()? != (b, s) {
            candle_core::bail!(
                "{}: qkv {:?} and mask {:?} do not fit {} heads of {}",
                self.name(),
                qkv_l.shape(),
                keep_l.shape(),
                self.heads,
                self.head_size
            );
        }
        let (heads, d) = (self.heads, self.head_size);
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; b * s * hidden];
        let out_ptr = SharedOut(out.as_mut_ptr());
        let row = three_h as isize;
        (0..b * heads).into_par_iter().for_each_init(
            || vec![0f32; s * s],
            |scores, task| {
                let (seq, head) = (task / heads, task % heads);
                let base = seq * s * three_h + head * d;
                let (q, k, v) = (&qkv[base..], &qkv[base + hidden..], &qkv[base + 2 * hidden..]);
                let keep = &keep[seq * s..(seq + 1) * s];
                // SAFETY: the views stay within `qkv` (rows s·3h apart from `base`, d columns
                // from a column below 3h) and `scores` (s×s); gemm reads and writes nothing else.
                unsafe {
                    // scores (s×s) = scale · Q (s×d, rows 3h apart) × Kᵀ (d×s).
                    gemm::gemm(
                        s,
                        s,
                        d,
                        scores.as_mut_ptr(),
                        1,
                        s as isize,
                        false,
                        q.as_ptr(),
                        1,
                        row,
                        k.as_ptr(),
                        row,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for r in scores.chunks_exact_mut(s) {
                    masked_softmax(r, keep);
                }
                let out = out_ptr;
                // SAFETY: this task writes rows `seq·s ..` of `out`, columns head·d .. head·d+d,
                // which no other task writes; V's view stays within `qkv` as above.
                unsafe {
                    // context (s×d, rows `hidden` apart) = P (s×s) × V (s×d, rows 3h apart).
                    gemm::gemm(
                        s,
                        d,
                        s,
                        out.0.add(seq * s * hidden + head * d),
                        1,
                        hidden as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        s as isize,
                        v.as_ptr(),
                        1,
                        row,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, s, hidden))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Taylor series in f64 (exact to ~1e-9 for |x| ≤ 4; erf is 1 - 1.5e-8 beyond).
    fn erf_reference(x: f64) -> f64 {
        if x.abs() > 4.0 {
            return x.signum();
        }
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_is_accurate_over_the_finite_range() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            // The reference at the f32 argument: rounding x alone moves exp by up to 8e-6 at 87.
            let x = (-87.0 + 175.0 * i as f64 / 200_000.0) as f32 as f64;
            let want = x.exp();
            let got = exp(x as f32) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.3));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_and_gelu_are_accurate() {
        let mut worst = 0f64;
        for i in 0..=100_000 {
            let x = (-8.0 + 16.0 * i as f64 / 100_000.0) as f32 as f64;
            worst = worst.max((erf(x as f32) as f64 - erf_reference(x)).abs());
            let gelu_want = 0.5 * x * (1.0 + erf_reference(x / std::f64::consts::SQRT_2));
            assert!((gelu_erf(x as f32) as f64 - gelu_want).abs() < 2e-6 * (1.0 + x.abs()), "gelu({x})");
        }
        // A&S's 1.5e-7 bound plus f32 arithmetic.
        assert!(worst < 1e-6, "worst absolute error {worst}");
        assert!(erf(0.0).abs() < 1e-6 && erf(-3.0) < -0.9999);
    }

    #[test]
    fn masked_softmax_ignores_dropped_positions() {
        let mut row = [1.0, 2.0, 1e30, 3.0];
        masked_softmax(&mut row, &[1.0, 1.0, 0.0, 1.0]);
        let z: f64 = [1f64, 2.0, 3.0].iter().map(|v| v.exp()).sum();
        for (got, want) in row.iter().zip([1f64.exp() / z, 2f64.exp() / z, 0.0, 3f64.exp() / z]) {
            assert!((*got as f64 - want).abs() < 1e-6, "{row:?}");
        }
    }
}
