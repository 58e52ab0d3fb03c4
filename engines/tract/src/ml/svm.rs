//! `SVMRegressor` and `SVMClassifier` (libsvm / liblinear models), following onnxruntime.

use super::common::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Kernel function of a support vector machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelType {
    /// `<x, v>`
    Linear,
    /// `(gamma <x, v> + coef0) ^ degree`
    Poly,
    /// `exp(-gamma |x - v|²)`
    Rbf,
    /// `tanh(gamma <x, v> + coef0)`
    Sigmoid,
}

/// A kernel with its `kernel_params` (`[gamma, coef0, degree]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kernel {
    /// The kernel function.
    pub kind: KernelType,
    /// `gamma`.
    pub gamma: f32,
    /// `coef0`.
    pub coef0: f32,
    /// `degree` (POLY).
    pub degree: f32,
}

impl Kernel {
    fn parse(node: &NodeProto) -> TractResult<Kernel> {
        let kind: Option<String> = node.get_attr_opt("kernel_type")?;
        let kind = match kind.as_deref() {
            None | Some("LINEAR") => KernelType::Linear,
            Some("POLY") => KernelType::Poly,
            Some("RBF") => KernelType::Rbf,
            Some("SIGMOID") => KernelType::Sigmoid,
            Some(other) => bail!("{}: invalid kernel_type '{other}' (expected LINEAR, POLY, RBF or SIGMOID)", describe(node)),
        };
        let params: Vec<f32> = node.get_attr_opt_vec("kernel_params")?.unwrap_or_default();
        let (gamma, coef0, degree) = match *params {
            [] => (0.0, 0.0, 0.0),
            [gamma, coef0, degree] => (gamma, coef0, degree),
            _ => bail!("{}: 'kernel_params' must hold [gamma, coef0, degree], got {} values", describe(node), params.len()),
        };
        Ok(Kernel { kind, gamma, coef0, degree })
    }

    /// `K(x, v)`; `bias` is added to the dot product of the LINEAR kernel.
    fn apply(&self, x: &[f32], v: &[f32], bias: f32) -> f32 {
        match self.kind {
            KernelType::Rbf => {
                let sum: f32 = x.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum();
                (-self.gamma * sum).exp()
            }
            KernelType::Linear => dot(x, v) + bias,
            KernelType::Poly => {
                let val = self.gamma * dot(x, v) + self.coef0;
                if self.degree == 2.0 {
                    val * val
                } else if self.degree == 3.0 {
                    val * val * val
                } else {
                    val.powf(self.degree)
                }
            }
            KernelType::Sigmoid => (self.gamma * dot(x, v) + self.coef0).tanh(),
        }
    }
}

fn dot(x: &[f32], v: &[f32]) -> f32 {
    x.iter().zip(v).map(|(a, b)| a * b).sum()
}

/// Reads the input as `f32` rows, checking the number of features.
fn input_rows(op: &str, input: &Tensor, features: usize) -> TractResult<(usize, Vec<f32>)> {
    ensure_numeric_input(op, input.datum_type())?;
    let (rows, f) = rows_and_features(op, input.shape())?;
    ensure!(f == features, "{op}: input has {f} features, the model expects {features}");
    let x = input_as_f32(input)?;
    Ok((rows, x.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
}

fn check_features_fact(op: &str, fact: &TypedFact, features: usize) -> TractResult<TDim> {
    ensure_numeric_input(op, fact.datum_type)?;
    let (rows, f) = rows_and_features_dims(op, fact)?;
    if let Ok(f) = f.to_usize() {
        ensure!(f == features, "{op}: input has {f} features, the model expects {features}");
    }
    Ok(rows)
}

/// The `ai.onnx.ml` `SVMRegressor` operator (output `[N, 1]`).
///
/// With support vectors (`n_supports > 0`): `y = Σ_j coefficients[j] K(x, sv_j) + rho[0]`;
/// without (liblinear): `y = <x, coefficients> + rho[0]`. `one_class` maps `y` to ±1.
#[derive(Debug, Clone, PartialEq)]
pub struct SvmRegressor {
    /// Kernel (LINEAR in liblinear mode).
    pub kernel: Kernel,
    /// `[n_supports × features]`, row-major (empty in liblinear mode).
    pub support_vectors: Vec<f32>,
    /// Dual coefficients (one per support vector) or linear weights (one per feature).
    pub coefficients: Vec<f32>,
    /// `rho[0]`.
    pub rho: f32,
    /// Outputs `1` for positive scores and `-1` otherwise.
    pub one_class: bool,
    /// Number of features.
    pub features: usize,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for SvmRegressor {}

/// Builds an [`SvmRegressor`] from its ONNX node.
pub fn build_regressor(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let mut kernel = Kernel::parse(node)?;
    let n_supports: usize = node.get_attr_opt("n_supports")?.unwrap_or(0);
    let support_vectors: Vec<f32> = node.get_attr_opt_vec("support_vectors")?.unwrap_or_default();
    let coefficients: Vec<f32> = node.get_attr_opt_vec("coefficients")?.unwrap_or_default();
    let rho: Vec<f32> = node.get_attr_opt_vec("rho")?.unwrap_or_default();
    ensure!(!coefficients.is_empty(), "{}: attribute 'coefficients' is missing", describe(node));
    ensure!(!rho.is_empty(), "{}: attribute 'rho' is missing", describe(node));
    let one_class = node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0;
    let features = if n_supports > 0 {
        ensure!(
            !support_vectors.is_empty() && support_vectors.len().is_multiple_of(n_supports),
            "{}: {} support vector values do not make {n_supports} vectors",
            describe(node),
            support_vectors.len()
        );
        ensure!(
            coefficients.len() == n_supports,
            "{}: {} coefficients for {n_supports} support vectors",
            describe(node),
            coefficients.len()
        );
        support_vectors.len() / n_supports
    } else {
        kernel.kind = KernelType::Linear;
        coefficients.len()
    };
    let op = SvmRegressor { kernel, support_vectors, coefficients, rho: rho[0], one_class, features };
    Ok((wrap(op), vec![]))
}

impl Op for SvmRegressor {
    fn name(&self) -> StaticName {
        "SVMRegressor".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "kernel {:?}, {} support vectors, {} features",
            self.kernel.kind,
            self.support_vectors.len() / self.features.max(1),
            self.features
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for SvmRegressor {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (rows, x) = input_rows("SVMRegressor", &input, self.features)?;
        let f = self.features;
        let mut y = Vec::with_capacity(rows);
        for r in 0..rows {
            let xr = &x[r * f..(r + 1) * f];
            let v = if self.support_vectors.is_empty() {
                self.kernel.apply(xr, &self.coefficients, self.rho)
            } else {
                let sum: f32 =
                    self.support_vectors.chunks(f).zip(&self.coefficients).map(|(sv, c)| c * self.kernel.apply(xr, sv, 0.0)).sum();
                sum + self.rho
            };
            y.push(if self.one_class {
                if v > 0.0 {
                    1.0
                } else {
                    -1.0
                }
            } else {
                v
            });
        }
        Ok(tvec!(tensor_from_vec(&[rows, 1], y)?.into_tvalue()))
    }
}

impl TypedOp for SvmRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = check_features_fact("SVMRegressor", inputs[0], self.features)?;
        Ok(tvec!(f32::fact([rows, 1.to_dim()])))
    }

    as_op!();
}

impl MlOp for SvmRegressor {
    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        _inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[1], 1.to_dim())
    }
}

/// Pairwise coupling of binary probabilities into class probabilities (libsvm's
/// `multiclass_probability`, in single precision as onnxruntime does). `r[i * k + j]` is the
/// probability of class `i` against class `j`.
fn multiclass_probability(k: usize, r: &[f32], p: &mut [f32]) {
    let mut q = vec![0f32; k * k];
    let mut qp = vec![0f32; k];
    let eps = 0.005f32 / k as f32;
    for i in 0..k {
        p[i] = 1.0 / k as f32;
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let max_error = qp.iter().fold(0f32, |m, &v| m.max((v - pqp).abs()));
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}

/// Platt scaling of a decision value (libsvm's `sigmoid_predict`).
fn sigmoid_probability(score: f32, a: f32, b: f32) -> f32 {
    1.0 - logistic(score * a + b)
}

/// The `ai.onnx.ml` `SVMClassifier` operator (outputs: labels `[N]`, scores `[N, S]`).
///
/// With support vectors (libsvm) the scores are the one-vs-one decision values (two columns
/// `[-s, s]`, or `[1 - s, s]` with a post-transform, for two classes), or the class probabilities
/// when `prob_a`/`prob_b` are given, and the label is chosen by one-vs-one votes. Without support
/// vectors (liblinear) the scores are `<x, coefficients_c> + rho[0]` per class.
#[derive(Debug, Clone, PartialEq)]
pub struct SvmClassifier {
    /// Kernel (LINEAR in liblinear mode).
    pub kernel: Kernel,
    /// Number of support vectors of each class (empty in liblinear mode).
    pub vectors_per_class: Vec<usize>,
    /// `[#vectors × features]`, row-major.
    pub support_vectors: Vec<f32>,
    /// libsvm: `[(classes - 1) × #vectors]` dual coefficients; liblinear: `[classes × features]`.
    pub coefficients: Vec<f32>,
    /// One intercept per pair of classes (liblinear: only `rho[0]` is used).
    pub rho: Vec<f32>,
    /// Platt scaling slopes, one per pair of classes (empty: no probabilities).
    pub prob_a: Vec<f32>,
    /// Platt scaling offsets.
    pub prob_b: Vec<f32>,
    /// Class labels.
    pub labels: ClassLabels,
    /// Score transform.
    pub post_transform: PostTransform,
    /// Number of features.
    pub features: usize,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for SvmClassifier {}

/// Builds an [`SvmClassifier`] from its ONNX node.
pub fn build_classifier(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let mut kernel = Kernel::parse(node)?;
    let vectors_per_class: Vec<usize> = node.get_attr_opt_vec("vectors_per_class")?.unwrap_or_default();
    let support_vectors: Vec<f32> = node.get_attr_opt_vec("support_vectors")?.unwrap_or_default();
    let coefficients: Vec<f32> = node.get_attr_opt_vec("coefficients")?.unwrap_or_default();
    let rho: Vec<f32> = node.get_attr_opt_vec("rho")?.unwrap_or_default();
    let prob_a: Vec<f32> = node.get_attr_opt_vec("prob_a")?.unwrap_or_default();
    let prob_b: Vec<f32> = node.get_attr_opt_vec("prob_b")?.unwrap_or_default();
    let labels = ClassLabels::parse(node, "classlabels_ints")?;
    let post_transform = PostTransform::parse(node)?;
    let name = describe(node);
    ensure!(!coefficients.is_empty(), "{name}: attribute 'coefficients' is missing");
    ensure!(!rho.is_empty(), "{name}: attribute 'rho' is missing");
    ensure!(prob_a.len() == prob_b.len(), "{name}: 'prob_a' has {} values but 'prob_b' has {}", prob_a.len(), prob_b.len());
    let classes = labels.len();
    let vector_count: usize = vectors_per_class.iter().sum();
    let pairs = classes * (classes - 1) / 2;
    let features = if vector_count > 0 {
        ensure!(classes >= 2, "{name}: at least two classes are needed");
        ensure!(
            vectors_per_class.len() == classes,
            "{name}: 'vectors_per_class' has {} entries for {classes} classes",
            vectors_per_class.len()
        );
        ensure!(
            support_vectors.len().is_multiple_of(vector_count) && !support_vectors.is_empty(),
            "{name}: {} support vector values do not make {vector_count} vectors",
            support_vectors.len()
        );
        ensure!(
            coefficients.len() >= (classes - 1) * vector_count,
            "{name}: {} coefficients, expected {} ((classes - 1) × vectors)",
            coefficients.len(),
            (classes - 1) * vector_count
        );
        ensure!(rho.len() >= pairs, "{name}: {} rho values for {pairs} class pairs", rho.len());
        if !prob_a.is_empty() {
            ensure!(prob_a.len() >= pairs, "{name}: {} prob_a values for {pairs} class pairs", prob_a.len());
        } else if classes == 2 && post_transform == PostTransform::Probit {
            bail!("{name}: PROBIT post_transform is not supported for a binary classifier without probabilities");
        }
        support_vectors.len() / vector_count
    } else {
        kernel.kind = KernelType::Linear;
        ensure!(
            coefficients.len().is_multiple_of(classes),
            "{name}: {} coefficients is not a multiple of {classes} classes",
            coefficients.len()
        );
        coefficients.len() / classes
    };
    let op =
        SvmClassifier { kernel, vectors_per_class, support_vectors, coefficients, rho, prob_a, prob_b, labels, post_transform, features };
    Ok((wrap(op), vec![]))
}

impl SvmClassifier {
    fn classes(&self) -> usize {
        self.labels.len()
    }

    fn svc_mode(&self) -> bool {
        !self.support_vectors.is_empty()
    }

    fn have_proba(&self) -> bool {
        !self.prob_a.is_empty()
    }

    /// Width of the score output.
    fn score_width(&self) -> usize {
        let classes = self.classes();
        if self.svc_mode() && !self.have_proba() {
            if classes > 2 {
                classes * (classes - 1) / 2
            } else {
                2
            }
        } else {
            classes
        }
    }

    fn weights_are_all_positive(&self) -> bool {
        self.coefficients.iter().all(|&c| c >= 0.0)
    }

    /// Label and scores of one row.
    fn row(&self, x: &[f32], starts: &[usize], scores: &mut [f32]) -> LabelChoice {
        let classes = self.classes();
        let pairs = classes * (classes - 1) / 2;
        let mut votes: Vec<usize> = vec![];
        let mut raw = vec![];
        if self.svc_mode() {
            let f = self.features;
            let vector_count = self.support_vectors.len() / f;
            let kernels: Vec<f32> = self.support_vectors.chunks(f).map(|sv| self.kernel.apply(x, sv, 0.0)).collect();
            votes = vec![0; classes];
            let mut pair = 0;
            for i in 0..classes - 1 {
                let (si, ni) = (starts[i], self.vectors_per_class[i]);
                for j in i + 1..classes {
                    let (sj, nj) = (starts[j], self.vectors_per_class[j]);
                    let mut sum = 0f64;
                    let ci = &self.coefficients[(j - 1) * vector_count + si..][..ni];
                    sum += ci.iter().zip(&kernels[si..si + ni]).map(|(c, k)| (c * k) as f64).sum::<f64>();
                    let cj = &self.coefficients[i * vector_count + sj..][..nj];
                    sum += cj.iter().zip(&kernels[sj..sj + nj]).map(|(c, k)| (c * k) as f64).sum::<f64>();
                    sum += self.rho[pair] as f64;
                    pair += 1;
                    raw.push(sum as f32);
                    votes[if sum > 0.0 { i } else { j }] += 1;
                }
            }
        } else {
            raw = self.coefficients.chunks(self.features).map(|w| self.kernel.apply(x, w, self.rho[0])).collect();
        }
        if self.svc_mode() && self.have_proba() {
            let mut probsp2 = vec![0f32; classes * classes];
            let mut index = 0;
            for i in 0..classes - 1 {
                for j in i + 1..classes {
                    let v = sigmoid_probability(raw[index], self.prob_a[index], self.prob_b[index]).clamp(1e-7, 1.0 - 1e-7);
                    probsp2[i * classes + j] = v;
                    probsp2[j * classes + i] = 1.0 - v;
                    index += 1;
                }
            }
            multiclass_probability(classes, &probsp2, &mut scores[..classes]);
        } else {
            scores[..raw.len()].copy_from_slice(&raw);
        }
        let (max_class, max_weight) = if !votes.is_empty() {
            // first class with the most votes
            let best = votes.iter().enumerate().fold(0, |b, (i, &v)| if v > votes[b] { i } else { b });
            (best, 0.0)
        } else {
            let best = argmax(&scores[..classes]);
            (best, scores[best])
        };
        let label = if pairs == 1 && !self.have_proba() {
            let all_positive = self.weights_are_all_positive();
            if (all_positive && max_weight >= 0.5) || (max_weight > 0.0 && !all_positive) {
                LabelChoice::Index(1)
            } else {
                LabelChoice::Index(max_class)
            }
        } else {
            LabelChoice::Index(max_class)
        };
        // post transform
        let count = if self.svc_mode() && !self.have_proba() { pairs } else { classes };
        if count > 1 {
            self.post_transform.apply_row(&mut scores[..count]);
        } else if count == 1 {
            let s = scores[0];
            if self.post_transform == PostTransform::Probit {
                scores[0] = probit(s);
            } else if self.svc_mode() && !self.have_proba() && classes == 2 {
                if self.post_transform == PostTransform::None {
                    scores[0] = -s;
                    scores[1] = s;
                } else {
                    let p = if self.post_transform == PostTransform::Logistic { logistic(s) } else { s };
                    scores[0] = 1.0 - p;
                    scores[1] = p;
                }
            }
        }
        label
    }
}

impl Op for SvmClassifier {
    fn name(&self) -> StaticName {
        "SVMClassifier".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "kernel {:?}, {} classes, {} support vectors, probabilities: {}",
            self.kernel.kind,
            self.classes(),
            self.vectors_per_class.iter().sum::<usize>(),
            self.have_proba()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for SvmClassifier {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (rows, x) = input_rows("SVMClassifier", &input, self.features)?;
        let mut starts = Vec::with_capacity(self.vectors_per_class.len());
        let mut acc = 0;
        for n in &self.vectors_per_class {
            starts.push(acc);
            acc += n;
        }
        let width = self.score_width();
        let mut scores = vec![0f32; rows * width];
        let f = self.features;
        let labels: Vec<LabelChoice> =
            (0..rows).map(|r| self.row(&x[r * f..(r + 1) * f], &starts, &mut scores[r * width..(r + 1) * width])).collect();
        Ok(tvec!(self.labels.output(&labels)?.into_tvalue(), tensor_from_vec(&[rows, width], scores)?.into_tvalue()))
    }
}

impl TypedOp for SvmClassifier {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = check_features_fact("SVMClassifier", inputs[0], self.features)?;
        Ok(tvec!(self.labels.datum_type().fact([rows.clone()]), f32::fact([rows, self.score_width().to_dim()])))
    }

    as_op!();
}

impl MlOp for SvmClassifier {
    fn output_count(&self) -> usize {
        2
    }

    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        _inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        classifier_rules(s, outputs, self.labels.datum_type())?;
        s.equals(&outputs[1].shape[1], self.score_width().to_dim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels() {
        let x = [1f32, 2.0];
        let v = [0.5f32, -1.0];
        let k = |kind, degree| Kernel { kind, gamma: 0.5, coef0: 1.0, degree };
        assert_eq!(k(KernelType::Linear, 0.0).apply(&x, &v, 0.25), -1.25);
        assert_eq!(k(KernelType::Poly, 2.0).apply(&x, &v, 0.0), 0.25 * 0.25);
        assert!((k(KernelType::Rbf, 0.0).apply(&x, &v, 0.0) - (-0.5f32 * 9.25).exp()).abs() < 1e-7);
        assert!((k(KernelType::Sigmoid, 0.0).apply(&x, &v, 0.0) - 0.25f32.tanh()).abs() < 1e-7);
    }

    #[test]
    fn coupling_of_two_classes_is_the_pair_probability() {
        let r = [0.0f32, 0.8, 0.2, 0.0];
        let mut p = [0f32; 2];
        multiclass_probability(2, &r, &mut p);
        assert!((p[0] - 0.8).abs() < 1e-3 && (p[1] - 0.2).abs() < 1e-3);
    }

    #[test]
    fn one_class_regressor() {
        let op = SvmRegressor {
            kernel: Kernel { kind: KernelType::Linear, gamma: 0.0, coef0: 0.0, degree: 0.0 },
            support_vectors: vec![],
            coefficients: vec![1.0, -1.0],
            rho: 0.5,
            one_class: true,
            features: 2,
        };
        let out = op.eval(&EvalContext::out_of_plan(), tvec!(tensor2(&[[0f32, 1.0], [1.0, 0.0]]).into_tvalue()));
        assert_eq!(out.unwrap()[0].clone().into_tensor(), tensor2(&[[-1f32], [1.0]]));
    }
}
