//! `LabelEncoder` (all opsets) and `CategoryMapper`: element-wise dictionary lookups.
//!
//! `CategoryMapper` replaces tract's own implementation, which rejects nodes carrying both
//! `default_int64` and `default_string` (onnxruntime accepts them and picks the direction from the
//! input type).

use super::common::*;
use std::collections::HashMap;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// A lookup key: integers, floats (by bit pattern, with `-0.0` folded onto `0.0` and NaNs onto
/// one NaN) and strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Float(u64),
    Str(String),
}

fn float_key(v: f64, nan_matches: bool) -> Option<Key> {
    if v.is_nan() {
        nan_matches.then_some(Key::Float(f64::NAN.to_bits()))
    } else if v == 0.0 {
        Some(Key::Float(0f64.to_bits()))
    } else {
        Some(Key::Float(v.to_bits()))
    }
}

/// The keys of a tensor, in order (`None` for keys that can never match, i.e. NaN when NaN does
/// not match NaN).
fn keys_of(t: &Tensor, nan_matches: bool) -> TractResult<Vec<Option<Key>>> {
    let dt = t.datum_type();
    Ok(match dt {
        DatumType::String => t.try_as_plain_ram()?.as_slice::<String>()?.iter().map(|s| Some(Key::Str(s.clone()))).collect(),
        DatumType::F32 | DatumType::F64 | DatumType::F16 => {
            let t = t.cast_to::<f64>()?;
            t.try_as_plain_ram()?.as_slice::<f64>()?.iter().map(|&v| float_key(v, nan_matches)).collect()
        }
        dt if dt.is_integer() => {
            let t = t.cast_to::<i64>()?;
            t.try_as_plain_ram()?.as_slice::<i64>()?.iter().map(|&v| Some(Key::Int(v))).collect()
        }
        dt => bail!("unsupported key type {dt:?}"),
    })
}

/// One direction of a mapping: keys of one type to values of one type, with a default.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    key_type: DatumType,
    index: HashMap<Key, usize>,
    values: Arc<Tensor>,
    default: Arc<Tensor>,
    nan_matches: bool,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for Table {}

impl Table {
    /// Builds a table. `keys` and `values` are 1-D tensors of the same length, `default` holds
    /// one value of the values' type. With duplicated keys, `last_wins` picks the last value
    /// (else the first).
    pub fn new(keys: &Tensor, values: Tensor, default: Tensor, last_wins: bool, nan_matches: bool) -> TractResult<Table> {
        ensure!(
            keys.len() == values.len(),
            "keys and values must have the same length, got {} keys and {} values",
            keys.len(),
            values.len()
        );
        ensure!(default.len() == 1, "the default value must be a single element, got {} elements", default.len());
        let default = if default.datum_type() == values.datum_type() {
            default
        } else if default.datum_type().is_number() && values.datum_type().is_number() {
            default.cast_to_dt(values.datum_type())?.into_owned()
        } else {
            bail!("the default value type ({:?}) does not match the values type ({:?})", default.datum_type(), values.datum_type())
        };
        let mut index = HashMap::new();
        for (ix, key) in keys_of(keys, nan_matches)?.into_iter().enumerate() {
            if let Some(key) = key {
                if last_wins {
                    index.insert(key, ix);
                } else {
                    index.entry(key).or_insert(ix);
                }
            }
        }
        let values = values.into_shape(&[keys.len()])?.into_arc_tensor();
        let default = default.into_shape(&[])?.into_arc_tensor();
        Ok(Table { key_type: keys.datum_type(), index, values, default, nan_matches })
    }

    fn output(&self, input: &Tensor) -> TractResult<Tensor> {
        let positions: Vec<Option<usize>> =
            keys_of(input, self.nan_matches)?.into_iter().map(|k| k.and_then(|k| self.index.get(&k).copied())).collect();
        dispatch_datum!(gather(self.values.datum_type())(self, &positions, input.shape()))
    }
}

fn gather<T: Datum>(table: &Table, positions: &[Option<usize>], shape: &[usize]) -> TractResult<Tensor> {
    let values = table.values.try_as_plain_ram()?.as_slice::<T>()?;
    let default = table.default.try_as_plain_ram()?.to_scalar::<T>()?;
    let out: Vec<T> = positions.iter().map(|p| p.map(|ix| values[ix].clone()).unwrap_or_else(|| default.clone())).collect();
    tensor_from_vec(shape, out)
}

/// `LabelEncoder` and `CategoryMapper`: maps each input element through the [`Table`] whose key
/// type is the input type. The output has the input shape and the values' type.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// Operator name (for dumps and errors).
    pub op_name: &'static str,
    /// The available directions (one per accepted input type).
    pub tables: Vec<Table>,
}

// Float attributes compare bitwise-unequal only through NaN, which merely prevents merging
// identical nodes.
impl Eq for Lookup {}

impl Lookup {
    fn table(&self, dt: DatumType) -> TractResult<&Table> {
        let dt = effective_type(dt);
        self.tables.iter().find(|t| t.key_type == dt).with_context(|| {
            format!(
                "{}: input type {dt:?} is not supported by this node (expected {})",
                self.op_name,
                self.tables.iter().map(|t| format!("{:?}", t.key_type)).collect::<Vec<_>>().join(" or ")
            )
        })
    }
}

impl Op for Lookup {
    fn name(&self) -> StaticName {
        self.op_name.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self.tables.iter().map(|t| format!("{:?} -> {:?} ({} entries)", t.key_type, t.values.datum_type(), t.values.len())).collect())
    }

    op_as_typed_op!();
}

impl EvalOp for Lookup {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let table = self.table(input.datum_type())?;
        let out = table.output(&*as_plain_int(&input)?)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Lookup {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let table = self.table(inputs[0].datum_type)?;
        Ok(tvec!(table.values.datum_type().fact(inputs[0].shape.to_tvec())))
    }

    as_op!();
}

impl MlOp for Lookup {
    fn static_rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if let [table] = &*self.tables {
            s.equals(&outputs[0].datum_type, table.values.datum_type())?;
        }
        s.equals(&outputs[0].shape, &inputs[0].shape)
    }
}

fn strings(v: Vec<String>) -> TractResult<Tensor> {
    let n = v.len();
    tensor_from_vec(&[n], v)
}

/// Reads one of several alternative attributes (lists or a tensor), exactly one being required.
fn one_of(
    ctx: &ParsingContext,
    node: &NodeProto,
    what: &str,
    strings_attr: &str,
    ints_attr: &str,
    floats_attr: &str,
    tensor_attr_name: &str,
) -> TractResult<Tensor> {
    let mut found: Vec<Tensor> = vec![];
    if let Some(v) = node.get_attr_opt_vec::<String>(strings_attr)? {
        found.push(strings(v)?);
    }
    if let Some(v) = node.get_attr_opt_vec::<i64>(ints_attr)? {
        found.push(tensor1(&v));
    }
    if let Some(v) = node.get_attr_opt_vec::<f32>(floats_attr)? {
        found.push(tensor1(&v));
    }
    if let Some(t) = tensor_attr(ctx, node, tensor_attr_name)? {
        let n = t.len();
        found.push(t.into_shape(&[n])?);
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "{}: the {what} are missing (one of '{strings_attr}', '{ints_attr}', '{floats_attr}', '{tensor_attr_name}')",
            describe(node)
        ),
        _ => bail!(
            "{}: several {what} attributes are set (only one of '{strings_attr}', '{ints_attr}', '{floats_attr}', '{tensor_attr_name}' may be)",
            describe(node)
        ),
    }
}

/// The default value for values of type `dt` (opset 2+ rules).
fn default_for(ctx: &ParsingContext, node: &NodeProto, dt: DatumType) -> TractResult<Tensor> {
    if let Some(t) = tensor_attr(ctx, node, "default_tensor")? {
        return Ok(t);
    }
    Ok(match dt {
        DatumType::String => tensor0(node.get_attr_opt::<String>("default_string")?.unwrap_or_else(|| "_Unused".into())),
        DatumType::F32 | DatumType::F64 | DatumType::F16 => {
            tensor0(node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0)).cast_to_dt(dt)?.into_owned()
        }
        dt if dt.is_integer() => tensor0(node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1)).cast_to_dt(dt)?.into_owned(),
        dt => bail!("{}: unsupported value type {dt:?}", describe(node)),
    })
}

/// Builds a `LabelEncoder` from its ONNX node (opset 1 `classes_strings` form, or opset 2+
/// `keys_*`/`values_*`, or opset 4 `keys_tensor`/`values_tensor`/`default_tensor`).
pub fn build_label_encoder(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let wrap_err = |e: TractError| e.context(format!("{}: invalid mapping", describe(node)));
    if let Some(classes) = node.get_attr_opt_vec::<String>("classes_strings")? {
        // opset 1: string -> index, index -> string
        let n = classes.len() as i64;
        let indices = tensor1(&(0..n).collect::<Vec<i64>>());
        let default_int = node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1);
        let default_string = node.get_attr_opt::<String>("default_string")?.unwrap_or_else(|| "_Unused".into());
        let classes = strings(classes)?;
        let to_int = Table::new(&classes, indices.clone(), tensor0(default_int), true, false).map_err(wrap_err)?;
        let to_string = Table::new(&indices, classes, tensor0(default_string), true, false).map_err(wrap_err)?;
        return Ok((wrap(Lookup { op_name: "LabelEncoder", tables: vec![to_int, to_string] }), vec![]));
    }
    let keys = one_of(ctx, node, "keys", "keys_strings", "keys_int64s", "keys_floats", "keys_tensor")?;
    let values = one_of(ctx, node, "values", "values_strings", "values_int64s", "values_floats", "values_tensor")?;
    let default = default_for(ctx, node, values.datum_type())?;
    let nan_matches = ml_opset(ctx) >= 4;
    let table = Table::new(&keys, values, default, false, nan_matches).map_err(wrap_err)?;
    Ok((wrap(Lookup { op_name: "LabelEncoder", tables: vec![table] }), vec![]))
}

/// Builds a `CategoryMapper` from its ONNX node: string inputs map `cats_strings[i]` to
/// `cats_int64s[i]` (default `default_int64`, -1), int64 inputs the other way (default
/// `default_string`, "_Unused").
pub fn build_category_mapper(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ints: Vec<i64> = node.get_attr_opt_vec("cats_int64s")?.unwrap_or_default();
    let cats: Vec<String> = node.get_attr_opt_vec("cats_strings")?.unwrap_or_default();
    ensure!(ints.len() == cats.len(), "{}: 'cats_int64s' has {} entries but 'cats_strings' has {}", describe(node), ints.len(), cats.len());
    let default_int = node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1);
    let default_string = node.get_attr_opt::<String>("default_string")?.unwrap_or_else(|| "_Unused".into());
    let ints = tensor1(&ints);
    let cats = strings(cats)?;
    let to_int = Table::new(&cats, ints.clone(), tensor0(default_int), true, false)?;
    let to_string = Table::new(&ints, cats, tensor0(default_string), true, false)?;
    Ok((wrap(Lookup { op_name: "CategoryMapper", tables: vec![to_int, to_string] }), vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &Lookup, input: Tensor) -> TractResult<Tensor> {
        Ok(op.eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue()))?[0].clone().into_tensor())
    }

    fn s(v: &[&str]) -> Tensor {
        strings(v.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn string_to_int_with_default() {
        let table = Table::new(&s(&["a", "b"]), tensor1(&[1i64, 2]), tensor0(-1i64), false, false).unwrap();
        let op = Lookup { op_name: "LabelEncoder", tables: vec![table] };
        assert_eq!(run(&op, s(&["b", "z", "a"])).unwrap(), tensor1(&[2i64, -1, 1]));
        assert!(run(&op, tensor1(&[1i64])).is_err());
    }

    #[test]
    fn float_keys_fold_zero_and_nan() {
        let keys = tensor1(&[0.0f32, f32::NAN]);
        let table = Table::new(&keys, tensor1(&[1i64, 2]), tensor0(0i64), false, true).unwrap();
        let op = Lookup { op_name: "LabelEncoder", tables: vec![table] };
        assert_eq!(run(&op, tensor1(&[-0.0f32, f32::NAN, 3.0])).unwrap(), tensor1(&[1i64, 2, 0]));
        let table = Table::new(&keys, tensor1(&[1i64, 2]), tensor0(0i64), false, false).unwrap();
        let op = Lookup { op_name: "LabelEncoder", tables: vec![table] };
        assert_eq!(run(&op, tensor1(&[f32::NAN])).unwrap(), tensor1(&[0i64]));
    }

    #[test]
    fn duplicates_first_or_last() {
        let keys = tensor1(&[1i64, 1]);
        let first = Table::new(&keys, tensor1(&[10i64, 20]), tensor0(0i64), false, false).unwrap();
        let last = Table::new(&keys, tensor1(&[10i64, 20]), tensor0(0i64), true, false).unwrap();
        let op = Lookup { op_name: "LabelEncoder", tables: vec![first, last] };
        assert_eq!(run(&op, tensor1(&[1i64])).unwrap(), tensor1(&[10i64]));
    }

    #[test]
    fn mismatched_lengths_are_rejected() {
        assert!(Table::new(&tensor1(&[1i64]), tensor1(&[1i64, 2]), tensor0(0i64), false, false).is_err());
        assert!(Table::new(&tensor1(&[1i64]), tensor1(&[1i64]), s(&["x"]), false, false).is_err());
    }
}
