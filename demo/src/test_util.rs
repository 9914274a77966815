//! Helpers the unit tests share: small options and the columns of the in-memory tables.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;

use crate::tables::TableData;
use crate::DemoOptions;

/// Options small enough for a quick test: a tenth of the organisation over ten days.
pub(crate) fn small() -> DemoOptions {
    DemoOptions {
        scale: 0.1,
        days: 10,
        ..DemoOptions::default()
    }
}

/// All values of a column of the in-memory batches, as strings.
pub(crate) fn column(table: &TableData, name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in &table.batches {
        let col = b.column_by_name(name).expect("column exists");
        let col = arrow::compute::cast(col, &DataType::Utf8).expect("castable to Utf8");
        let s = col.as_string::<i32>();
        out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_string())));
    }
    out
}

/// The built table called `name`.
pub(crate) fn table<'a>(tables: &'a [TableData], name: &str) -> &'a TableData {
    tables.iter().find(|t| t.name == name).expect("table built")
}
