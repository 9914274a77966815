//! A result as a notebook shows it: plain text, HTML and a data resource
//! of the rows shown, capped in rows and bytes, each with a note on how
//! many rows there are and where the whole result can be fetched.

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{json, Map, Value};

use super::KernelOptions;

/// Rows of the plain-text view of a result (the HTML and table views
/// carry every row shown).
const PLAIN_ROWS: usize = 20;
/// Longest cell text shown; longer values end with `…`.
const MAX_CELL_CHARS: usize = 300;

/// `1234567` → `1,234,567`.
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The mime bundle of a result: plain text (the first rows), HTML and a
/// data resource (every row shown), each with the note on how many rows
/// there are; and metadata with the counts.
pub fn render(
    schema: &arrow::datatypes::Schema,
    shown: &[RecordBatch],
    total: usize,
    opts: &KernelOptions,
) -> (Value, Value) {
    let fmt = FormatOptions::default().with_null("");
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0usize;
    let mut cut_by_bytes = false;
    'outer: for batch in shown {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &fmt).ok())
            .collect();
        for r in 0..batch.num_rows() {
            let row: Vec<String> = formatters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| clip(f.value(r).to_string()))
                        .unwrap_or_default()
                })
                .collect();
            // HTML and JSON each carry the row once more: count it twice.
            bytes += 2 * (row.iter().map(|c| c.len() + 12).sum::<usize>() + 12);
            if bytes > opts.max_output_bytes {
                cut_by_bytes = true;
                break 'outer;
            }
            rows.push(row);
        }
    }
    let n = rows.len();
    let note = if n < total {
        // Fewer rows than the row cap: bytes cut them, here or while the
        // result was collected.
        let why = if cut_by_bytes || n < opts.max_result_rows {
            format!(
                " (a cell shows at most {} rows and {} MiB)",
                group(opts.max_result_rows),
                opts.max_output_bytes / (1024 * 1024)
            )
        } else {
            String::new()
        };
        format!(
            "showing {} of {} rows{why}. The whole result: run the same SQL over Flight SQL at {} (for example ADBC's cursor.execute), which is not capped.",
            group(n),
            group(total),
            opts.flight_url
        )
    } else if total == 1 {
        "1 row".to_string()
    } else {
        format!("{} rows", group(total))
    };

    // Plain text: an aligned table of the first rows.
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for row in rows.iter().take(PLAIN_ROWS) {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count()).min(40);
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(*w).collect();
                format!("{c:<w$}", w = *w)
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut plain = line(&names);
    plain.push('\n');
    plain.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    for row in rows.iter().take(PLAIN_ROWS) {
        plain.push('\n');
        plain.push_str(&line(row));
    }
    if n > PLAIN_ROWS {
        plain.push_str(&format!(
            "\n… ({} more rows in the table view)",
            group(n - PLAIN_ROWS)
        ));
    }
    plain.push_str(&format!("\n{note}"));

    let mut html = String::with_capacity(bytes / 2 + 256);
    html.push_str("<table class=\"tarn-result\"><thead><tr>");
    for n in &names {
        html.push_str(&format!("<th>{}</th>", escape(n)));
    }
    html.push_str("</tr></thead><tbody>");
    for row in &rows {
        html.push_str("<tr>");
        for c in row {
            html.push_str("<td>");
            html.push_str(&escape(c));
            html.push_str("</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str(&format!(
        "</tbody></table><p><em>{}</em></p>",
        escape(&note)
    ));

    let fields: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": table_type(f.data_type())}))
        .collect();
    let kinds: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| table_type(f.data_type()))
        .collect();
    let data: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut m = Map::new();
            for ((name, c), kind) in names.iter().zip(row).zip(&kinds) {
                let v = match *kind {
                    _ if c.is_empty() => Value::Null,
                    "integer" | "number" | "boolean" => {
                        serde_json::from_str(c).unwrap_or_else(|_| Value::String(c.clone()))
                    }
                    _ => Value::String(c.clone()),
                };
                m.insert(name.clone(), v);
            }
            Value::Object(m)
        })
        .collect();
    let bundle = json!({
        "text/plain": plain,
        "text/html": html,
        "application/vnd.dataresource+json": {
            "schema": {"fields": fields},
            "data": data,
            "tarn": {"rows_shown": n, "rows_total": total, "note": note},
        },
    });
    let metadata = json!({"tarn": {"rows_shown": n, "rows_total": total, "truncated": n < total}});
    (bundle, metadata)
}

fn clip(s: String) -> String {
    if s.chars().count() <= MAX_CELL_CHARS {
        return s;
    }
    let mut out: String = s.chars().take(MAX_CELL_CHARS - 1).collect();
    out.push('…');
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Table Schema type names for the data resource view.
fn table_type(t: &arrow::datatypes::DataType) -> &'static str {
    use arrow::datatypes::DataType as D;
    match t {
        D::Boolean => "boolean",
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            "integer"
        }
        D::Float16 | D::Float32 | D::Float64 | D::Decimal128(..) | D::Decimal256(..) => "number",
        D::Timestamp(..) | D::Date32 | D::Date64 => "datetime",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn counts_are_grouped() {
        assert_eq!(group(10000), "10,000");
        assert_eq!(group(999), "999");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn the_note_carries_the_true_row_count() {
        use arrow::array::Int64Array;
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..10))],
        )
        .unwrap();
        let opts = KernelOptions {
            websocket_lifetime: Duration::from_secs(1),
            max_message_bytes: 1,
            max_result_rows: 10,
            max_output_bytes: 1 << 20,
            max_queued_cells: 1,
            flight_url: "grpc://h:1".into(),
            idle_timeout: Duration::from_secs(1),
        };
        let (bundle, meta) = render(&schema, &[batch], 12_345, &opts);
        let plain = bundle["text/plain"].as_str().unwrap();
        assert!(plain.contains("showing 10 of 12,345 rows"), "{plain}");
        assert!(plain.contains("grpc://h:1"));
        assert_eq!(meta["tarn"]["rows_total"], 12_345);
        assert_eq!(
            bundle["application/vnd.dataresource+json"]["data"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
    }
}
