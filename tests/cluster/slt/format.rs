//! One result format for both modes, in sqllogictest's conventions: `NULL`,
//! `(empty)` for an empty string, `true`/`false`, floats with three
//! decimals, everything else as Arrow displays it (timestamps
//! `2026-10-24T02:10:00`). Column types: `I` integers, `R` floats and
//! decimals, `B` booleans, `T` text and everything else.

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::DBOutput;

/// A result column's type letter in a `query` record's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// `T`
    Text,
    /// `I`
    Integer,
    /// `R`
    Float,
    /// `B`
    Boolean,
    /// Any other letter (never a result's).
    Other(char),
}

impl sqllogictest::ColumnType for ColumnType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'T' => Self::Text,
            'I' => Self::Integer,
            'R' => Self::Float,
            'B' => Self::Boolean,
            other => Self::Other(other),
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Text => 'T',
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Boolean => 'B',
            Self::Other(c) => *c,
        }
    }
}

/// What a statement answered, as the runner compares it. A write's one
/// `count` row (an unsigned, non-null `count` column, the DML result) is
/// its affected-row count, so `statement count N` checks it; a result with
/// no columns (`SET`) is a completed statement.
pub fn output(schema: &Schema, batches: &[RecordBatch]) -> Result<DBOutput<ColumnType>, String> {
    if schema.fields().is_empty() {
        return Ok(DBOutput::StatementComplete(0));
    }
    if let [f] = schema.fields().as_ref() {
        if f.name() == "count" && f.data_type() == &DataType::UInt64 && !f.is_nullable() {
            let rows: Vec<Vec<String>> = rows(batches)?;
            return match rows.as_slice() {
                [row] => row[0]
                    .parse()
                    .map(DBOutput::StatementComplete)
                    .map_err(|e| format!("a write's count {:?}: {e}", row[0])),
                _ => Err(format!(
                    "a write answered {} count rows, not one",
                    rows.len()
                )),
            };
        }
    }
    let types = schema
        .fields()
        .iter()
        .map(|f| column_type(f.data_type()))
        .collect();
    Ok(DBOutput::Rows {
        types,
        rows: rows(batches)?,
    })
}

fn column_type(t: &DataType) -> ColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ColumnType::Integer,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ColumnType::Float,
        DataType::Boolean => ColumnType::Boolean,
        DataType::Dictionary(_, v) => column_type(v),
        _ => ColumnType::Text,
    }
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, String> {
    let mut out = Vec::new();
    for b in batches {
        let cells: Vec<Vec<String>> = b.columns().iter().map(column).collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            out.push(cells.iter().map(|c| c[i].clone()).collect());
        }
    }
    Ok(out)
}

/// Every value of one column, formatted.
fn column(col: &ArrayRef) -> Result<Vec<String>, String> {
    let col = match col.data_type() {
        DataType::Dictionary(_, v) => {
            arrow::compute::cast(col, v).map_err(|e| format!("cannot unpack a dictionary: {e}"))?
        }
        _ => std::sync::Arc::clone(col),
    };
    let float = matches!(
        col.data_type(),
        DataType::Float16 | DataType::Float32 | DataType::Float64
    );
    let text = matches!(
        col.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let floats = if float {
        let f = arrow::compute::cast(&col, &DataType::Float64)
            .map_err(|e| format!("cannot read floats: {e}"))?;
        Some(
            f.as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .ok_or("a Float64 cast gave another type")?
                .clone(),
        )
    } else {
        None
    };
    let options = FormatOptions::default().with_null("NULL");
    let formatter = ArrayFormatter::try_new(col.as_ref(), &options).map_err(|e| format!("{e}"))?;
    (0..col.len())
        .map(|i| {
            if col.is_null(i) {
                return Ok("NULL".to_string());
            }
            if let Some(f) = &floats {
                return Ok(float_text(f.value(i)));
            }
            let s = formatter
                .value(i)
                .try_to_string()
                .map_err(|e| format!("{e}"))?;
            Ok(if text && s.is_empty() {
                "(empty)".to_string()
            } else {
                s
            })
        })
        .collect()
}

/// A float with three decimals; no negative zero.
fn float_text(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let s = format!("{v:.3}");
    if s == "-0.000" {
        "0.000".into()
    } else {
        s
    }
}

#[test]
fn values_follow_the_conventions() {
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        arrow::datatypes::Field::new("s", DataType::Utf8, true),
        arrow::datatypes::Field::new("f", DataType::Float64, true),
        arrow::datatypes::Field::new("b", DataType::Boolean, true),
        arrow::datatypes::Field::new("i", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(arrow::array::StringArray::from(vec![Some(""), None])),
            Arc::new(arrow::array::Float64Array::from(vec![
                Some(-0.0001),
                Some(2.0 / 3.0),
            ])),
            Arc::new(arrow::array::BooleanArray::from(vec![
                Some(true),
                Some(false),
            ])),
            Arc::new(arrow::array::Int64Array::from(vec![None, Some(7)])),
        ],
    )
    .unwrap();
    let DBOutput::Rows { types, rows } = output(&schema, &[batch]).unwrap() else {
        panic!("rows expected");
    };
    assert_eq!(
        types,
        vec![
            ColumnType::Text,
            ColumnType::Float,
            ColumnType::Boolean,
            ColumnType::Integer
        ]
    );
    assert_eq!(
        rows,
        vec![
            vec!["(empty)", "0.000", "true", "NULL"],
            vec!["NULL", "0.667", "false", "7"]
        ]
    );
}
