//! Tarn's own scalar functions that KQL plans call: reading KQL's
//! `dynamic` values, which the lake holds as JSON text (`AdditionalFields`,
//! `LocationDetails`, `InitiatedBy`…).
//!
//! Plans that call them travel to the coordinator and the executors by
//! name; the lake's plan codecs find them here ([`udf`]), so every node
//! decodes them without registering anything.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

/// `d.key`, `d["key"]`, `d[0]` over JSON text: the value's text (a
/// string's characters, anything else as JSON), null when absent.
pub const JSON_GET: &str = "kql_json_get";
/// A JSON array's elements as a list of texts (for `mv-expand`,
/// `array_length`); a JSON value that is no array is a list of itself.
pub const JSON_ARRAY: &str = "kql_json_array";
/// `bag_keys(d)`: a JSON object's keys.
pub const BAG_KEYS: &str = "kql_bag_keys";

static FUNCTIONS: LazyLock<Vec<Arc<ScalarUDF>>> = LazyLock::new(|| {
    vec![
        Arc::new(ScalarUDF::new_from_impl(Json::new(JSON_GET))),
        Arc::new(ScalarUDF::new_from_impl(Json::new(JSON_ARRAY))),
        Arc::new(ScalarUDF::new_from_impl(Json::new(BAG_KEYS))),
    ]
});

/// The function of this crate named `name`, if it is one.
pub fn udf(name: &str) -> Option<Arc<ScalarUDF>> {
    FUNCTIONS.iter().find(|f| f.name() == name).cloned()
}

/// Every function of this crate.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    FUNCTIONS.clone()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Json {
    name: &'static str,
    signature: Signature,
}

impl Json {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

impl ScalarUDFImpl for Json {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(if self.name == JSON_GET {
            DataType::Utf8
        } else {
            list_type()
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let want = if self.name == JSON_GET { 2 } else { 1 };
        if args.args.len() != want {
            return exec_err!("{} takes {want} arguments", self.name);
        }
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let source = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let source = source.as_string::<i32>();
        let out: ArrayRef = if self.name == JSON_GET {
            let key = &arrays[1];
            let keys_str = arrow::compute::cast(key, &DataType::Utf8)?;
            let keys_str = keys_str.as_string::<i32>();
            let keys_int: Option<&Int64Array> = key.as_any().downcast_ref::<Int64Array>();
            let mut b = StringBuilder::with_capacity(rows, rows * 8);
            for i in 0..rows {
                if source.is_null(i) || key.is_null(i) {
                    b.append_null();
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(source.value(i)) else {
                    b.append_null();
                    continue;
                };
                let found = match (keys_int, &v) {
                    (Some(ints), Value::Array(items)) => {
                        let k = ints.value(i);
                        let idx = if k < 0 { items.len() as i64 + k } else { k };
                        usize::try_from(idx).ok().and_then(|j| items.get(j))
                    }
                    (None, Value::Array(items)) => keys_str
                        .value(i)
                        .parse::<usize>()
                        .ok()
                        .and_then(|j| items.get(j)),
                    (_, Value::Object(m)) => m.get(keys_str.value(i)),
                    _ => None,
                };
                b.append_option(found.and_then(text));
            }
            Arc::new(b.finish())
        } else {
            let mut b = ListBuilder::new(StringBuilder::new());
            for i in 0..rows {
                if source.is_null(i) {
                    b.append_null();
                    continue;
                }
                match serde_json::from_str::<Value>(source.value(i)) {
                    Ok(Value::Array(items)) if self.name == JSON_ARRAY => {
                        for item in &items {
                            b.values().append_option(text(item));
                        }
                        b.append(true);
                    }
                    Ok(Value::Object(m)) if self.name == BAG_KEYS => {
                        for k in m.keys() {
                            b.values().append_value(k);
                        }
                        b.append(true);
                    }
                    Ok(Value::Null) | Err(_) => b.append_null(),
                    Ok(other) if self.name == JSON_ARRAY => {
                        b.values().append_option(text(&other));
                        b.append(true);
                    }
                    Ok(_) => b.append_null(),
                }
            }
            Arc::new(b.finish())
        };
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    fn run(name: &str, args: Vec<ColumnarValue>, rows: usize) -> ArrayRef {
        let f = udf(name).unwrap();
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields,
                number_rows: rows,
                return_field: Arc::new(Field::new("r", f.return_type(&[]).unwrap(), true)),
                config_options: Default::default(),
            })
            .unwrap();
        out.to_array(rows).unwrap()
    }

    #[test]
    fn properties_and_elements_of_json_text() {
        let docs: ArrayRef = Arc::new(StringArray::from(vec![
            Some(r#"{"city": "Oslo", "geo": {"lat": 59.9}}"#),
            Some(r#"["a", 2]"#),
            None,
            Some("not json"),
        ]));
        let got = run(
            JSON_GET,
            vec![
                ColumnarValue::Array(Arc::clone(&docs)),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some("city".into()))),
            ],
            4,
        );
        let got = got.as_string::<i32>();
        assert_eq!(got.value(0), "Oslo");
        assert!(got.is_null(1) && got.is_null(2) && got.is_null(3));
        let got = run(
            JSON_GET,
            vec![
                ColumnarValue::Array(docs),
                ColumnarValue::Scalar(ScalarValue::Int64(Some(-1))),
            ],
            4,
        );
        assert_eq!(got.as_string::<i32>().value(1), "2");
    }
}
