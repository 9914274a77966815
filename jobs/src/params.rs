//! Job parameters: their values, how a run's overrides combine with a job's
//! defaults, and the placeholders a SQL script uses.
//!
//! Values are never pasted into SQL text: callers bind them as named
//! placeholders (`$name`), so a value cannot change what a statement does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{name_list, Error};
use crate::script::{self, Region};

/// One parameter value: what JSON can hold except arrays and objects, which
/// have no SQL scalar to bind to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// JSON `null`; SQL `NULL`.
    Null,
    /// JSON `true`/`false`.
    Bool(bool),
    /// A JSON number without fraction or exponent that fits 64 bits.
    Int(i64),
    /// Any other JSON number.
    Float(f64),
    /// A JSON string.
    Text(String),
}

impl ParamValue {
    /// Converts one JSON value, naming the parameter if it has a type
    /// parameters cannot hold.
    pub fn from_json(name: &str, value: &serde_json::Value) -> Result<ParamValue, Error> {
        use serde_json::Value;
        let refuse = |found| Error::ParamType {
            name: name.to_owned(),
            found,
        };
        Ok(match value {
            Value::Null => ParamValue::Null,
            Value::Bool(b) => ParamValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    ParamValue::Int(i)
                } else if n.is_u64() {
                    return Err(refuse("an integer beyond the signed 64-bit range"));
                } else {
                    ParamValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => ParamValue::Text(s.clone()),
            Value::Array(_) => return Err(refuse("an array")),
            Value::Object(_) => return Err(refuse("an object")),
        })
    }

    /// The value as a literal of a parameters cell (`name = literal`),
    /// written so that both Python and [`crate::Notebook::defaults`] read it
    /// back as the same value. A non-finite float, which JSON cannot carry,
    /// is written as `None`, as JSON writes it as `null`.
    pub fn to_literal(&self) -> String {
        match self {
            ParamValue::Null => "None".to_owned(),
            ParamValue::Bool(true) => "True".to_owned(),
            ParamValue::Bool(false) => "False".to_owned(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) if f.is_finite() => format!("{f:?}"),
            ParamValue::Float(_) => "None".to_owned(),
            ParamValue::Text(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                out.push('\'');
                for c in s.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\'' => out.push_str("\\'"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c if c.is_control() => {
                            out.push_str(&format!("\\u{:04x}", c as u32));
                        }
                        c => out.push(c),
                    }
                }
                out.push('\'');
                out
            }
        }
    }
}

/// Written by hand rather than derived as `untagged`, so that an array or
/// object gets a message saying what is allowed instead of "did not match
/// any variant".
impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ParamVisitor)
    }
}

struct ParamVisitor;

const ALLOWED: &str = "parameter values are null, true/false, numbers or strings \
                       (pass a list as a string, e.g. \"a,b\")";

impl<'de> Visitor<'de> for ParamVisitor {
    type Value = ParamValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, a boolean, a number or a string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<ParamValue, E> {
        Ok(ParamValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<ParamValue, E> {
        Ok(ParamValue::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ParamValue, E> {
        Ok(ParamValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ParamValue, E> {
        Ok(ParamValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ParamValue, E> {
        i64::try_from(v).map(ParamValue::Int).map_err(|_| {
            E::custom(format_args!(
                "parameter value {v} is beyond the signed 64-bit range; {ALLOWED}"
            ))
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ParamValue, E> {
        Ok(ParamValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ParamValue, E> {
        Ok(ParamValue::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<ParamValue, E> {
        Ok(ParamValue::Text(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<ParamValue, A::Error> {
        Err(de::Error::custom(format_args!(
            "a parameter value is an array; {ALLOWED}"
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<ParamValue, A::Error> {
        Err(de::Error::custom(format_args!(
            "a parameter value is an object; {ALLOWED}"
        )))
    }
}

/// Whether `name` is `[A-Za-z_][A-Za-z0-9_]*`, the form a parameter name
/// takes so that it works as a `$name` placeholder and a Python variable.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The values for one run: `defaults` with `overrides` applied.
///
/// An override must name a declared parameter: a misspelt name would
/// otherwise be ignored silently and the run would use the default.
pub fn merge(
    defaults: &BTreeMap<String, ParamValue>,
    overrides: &BTreeMap<String, ParamValue>,
) -> Result<BTreeMap<String, ParamValue>, Error> {
    let mut values = defaults.clone();
    for (name, value) in overrides {
        match values.get_mut(name) {
            Some(slot) => *slot = value.clone(),
            None => {
                return Err(Error::Undeclared {
                    name: name.clone(),
                    declared: name_list(defaults.keys()),
                })
            }
        }
    }
    Ok(values)
}

/// The names of the `$name` placeholders in `sql`, outside string literals,
/// quoted identifiers and comments. Positional placeholders (`$1`) are not
/// listed: jobs bind by name.
pub fn placeholders(sql: &str) -> BTreeSet<String> {
    let b = sql.as_bytes();
    let mut names = BTreeSet::new();
    for span in script::spans(sql) {
        if span.region != Region::Code {
            continue;
        }
        let mut i = span.start;
        while i < span.end {
            let starts_name = b[i] == b'$'
                && (i == 0 || !script::is_ident_byte(b[i - 1]))
                && b.get(i + 1)
                    .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_');
            if !starts_name {
                i += 1;
                continue;
            }
            let from = i + 1;
            let mut to = from;
            while to < span.end && (b[to].is_ascii_alphanumeric() || b[to] == b'_') {
                to += 1;
            }
            names.insert(sql[from..to].to_owned());
            i = to;
        }
    }
    names
}

/// Checks that every placeholder `sql` uses has a value in `values`,
/// naming the first one that does not.
pub fn check_placeholders(sql: &str, values: &BTreeMap<String, ParamValue>) -> Result<(), Error> {
    match placeholders(sql)
        .into_iter()
        .find(|name| !values.contains_key(name))
    {
        Some(name) => Err(Error::Unbound {
            name,
            declared: name_list(values.keys()),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use serde_json::json;

    fn map(pairs: &[(&str, ParamValue)]) -> BTreeMap<String, ParamValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn json_scalars_round_trip() {
        let v = json!({"n": null, "b": true, "i": -3, "f": 1.5, "s": "x"});
        let parsed: BTreeMap<String, ParamValue> = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(parsed["n"], ParamValue::Null);
        assert_eq!(parsed["b"], ParamValue::Bool(true));
        assert_eq!(parsed["i"], ParamValue::Int(-3));
        assert_eq!(parsed["f"], ParamValue::Float(1.5));
        assert_eq!(parsed["s"], ParamValue::Text("x".into()));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), v);
    }

    #[test]
    fn arrays_and_objects_are_refused_clearly() {
        let err = serde_json::from_value::<ParamValue>(json!([1, 2])).unwrap_err();
        assert!(err.to_string().contains("is an array"), "{err}");
        let err = serde_json::from_value::<ParamValue>(json!({"a": 1})).unwrap_err();
        assert!(err.to_string().contains("pass a list as a string"), "{err}");
        let err = serde_json::from_value::<ParamValue>(json!(u64::MAX)).unwrap_err();
        assert!(err.to_string().contains("64-bit"), "{err}");

        let err = ParamValue::from_json("days", &json!(["mon"])).unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidParameter);
        assert!(err.to_string().contains("\"days\" is an array"), "{err}");
    }

    #[test]
    fn merge_overrides_declared_parameters() {
        let defaults = map(&[("a", ParamValue::Int(1)), ("b", ParamValue::Null)]);
        let merged = merge(&defaults, &map(&[("b", ParamValue::Text("x".into()))])).unwrap();
        assert_eq!(
            merged,
            map(&[
                ("a", ParamValue::Int(1)),
                ("b", ParamValue::Text("x".into()))
            ])
        );
    }

    #[test]
    fn merge_refuses_undeclared_names() {
        let defaults = map(&[("a", ParamValue::Int(1)), ("b", ParamValue::Null)]);
        let err = merge(&defaults, &map(&[("min_fails", ParamValue::Int(3))])).unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidParameter);
        assert!(
            err.to_string()
                .starts_with("parameter \"min_fails\" is not declared; declared: a, b"),
            "{err}"
        );
        let err = merge(&BTreeMap::new(), &map(&[("x", ParamValue::Null)])).unwrap_err();
        assert!(err.to_string().contains("declared: none"), "{err}");
    }

    #[test]
    fn placeholders_skip_strings_identifiers_and_comments() {
        let sql = "SELECT * FROM t WHERE day = $day AND n > $min_fails -- $not_this\n\
                   AND s = '$nor_this' AND \"$col\" = 1 /* $no */ AND a$b = $1 AND x = $_x";
        let got: Vec<_> = placeholders(sql).into_iter().collect();
        assert_eq!(got, vec!["_x", "day", "min_fails"]);
        assert!(placeholders("SELECT 1").is_empty());
        assert_eq!(
            placeholders("SELECT $a,$a").into_iter().collect::<Vec<_>>(),
            vec!["a"]
        );
    }

    #[test]
    fn check_placeholders_names_the_missing_one() {
        let values = map(&[("day", ParamValue::Text("2026-01-01".into()))]);
        check_placeholders("SELECT $day", &values).unwrap();
        let err = check_placeholders("SELECT $day, $limit", &values).unwrap_err();
        assert_eq!(
            err,
            Error::Unbound {
                name: "limit".into(),
                declared: "day".into()
            }
        );
        assert!(err.to_string().contains("$limit"), "{err}");
    }

    #[test]
    fn identifiers() {
        for ok in ["a", "_", "min_fails", "A1"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a b", "ä", "$a"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn literals_are_python_literals() {
        assert_eq!(ParamValue::Null.to_literal(), "None");
        assert_eq!(ParamValue::Bool(false).to_literal(), "False");
        assert_eq!(ParamValue::Int(-7).to_literal(), "-7");
        assert_eq!(ParamValue::Float(2.0).to_literal(), "2.0");
        assert_eq!(ParamValue::Float(f64::NAN).to_literal(), "None");
        assert_eq!(
            ParamValue::Text("it's\\\n\u{1}".into()).to_literal(),
            r"'it\'s\\\n\u0001'"
        );
    }
}
