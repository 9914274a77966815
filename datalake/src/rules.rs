//! The lake's write rules: table tiers and their suffixes, write modes,
//! partitioning, and the schema a write must match.
//!
//! Every check here runs before anything is written, so a refused write
//! changes nothing.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use delta_kernel::engine::arrow_conversion::{TryIntoArrow as _, TryIntoKernel as _};
use deltalake::kernel::StructType;
use tarn_common::{ErrorCode, TarnError};

/// Suffix of lake-tier custom tables.
pub const LAKE_SUFFIX: &str = "_SPRK";
/// Suffix of analytics-tier custom tables.
pub const ANALYTICS_SUFFIX: &str = "_SPRK_CL";

/// What kind of table a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// `<Name>_SPRK`: custom, any write mode, partitionable, deletable.
    Lake,
    /// `<Name>_SPRK_CL`: custom, append-only, not partitioned, not deletable.
    Analytics,
    /// Anything else: written by the platform, read-only to users.
    System,
}

impl Tier {
    /// The tier a table name denotes.
    pub fn of(name: &str) -> Tier {
        if name.ends_with(ANALYTICS_SUFFIX) && name.len() > ANALYTICS_SUFFIX.len() {
            Tier::Analytics
        } else if name.ends_with(LAKE_SUFFIX) && name.len() > LAKE_SUFFIX.len() {
            Tier::Lake
        } else {
            Tier::System
        }
    }
}

/// How a write treats the rows already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Add rows.
    Append,
    /// Replace every row.
    Overwrite,
}

impl WriteMode {
    /// Parses a mode as users spell it; `None` (no mode given where one is
    /// required) and unknown words are refused with 2601.
    pub fn parse(mode: Option<&str>) -> Result<WriteMode, TarnError> {
        match mode.map(|m| m.trim().to_ascii_lowercase()) {
            Some(m) if m == "append" => Ok(WriteMode::Append),
            Some(m) if m == "overwrite" => Ok(WriteMode::Overwrite),
            None => Err(TarnError::new(
                ErrorCode::InvalidWriteMode,
                "the write options have no 'mode'",
            )
            .with_fix("pass write_options={'mode': 'append'} or {'mode': 'overwrite'}")),
            Some(other) => Err(TarnError::new(
                ErrorCode::InvalidWriteMode,
                format!("write mode '{other}' is not known"),
            )
            .with_fix("use mode 'append' (add rows) or 'overwrite' (replace all rows)")),
        }
    }

    /// The name users see.
    pub fn name(self) -> &'static str {
        match self {
            WriteMode::Append => "append",
            WriteMode::Overwrite => "overwrite",
        }
    }
}

/// Refuses writes the target's tier does not allow: system tables, names
/// without a tier suffix, overwriting or partitioning the analytics tier.
pub fn check_write_target(
    workspace: &str,
    table: &str,
    exists: bool,
    mode: WriteMode,
    partition_by: &[String],
) -> Result<Tier, TarnError> {
    let tier = Tier::of(table);
    let full = format!("{workspace}.{table}");
    match tier {
        Tier::System if exists => {
            return Err(TarnError::new(
                ErrorCode::InvalidWrite,
                format!("'{full}' is a system table; system tables are read-only"),
            )
            .with_fix(format!(
                "write to a custom table instead, e.g. '{table}_SPRK' (lake tier) or '{table}_SPRK_CL' (analytics tier)"
            )))
        }
        Tier::System => {
            let base = table.trim_end_matches("_CL").trim_end_matches("_cl");
            return Err(if table.ends_with("_CL") || table.ends_with("_cl") {
                TarnError::new(
                    ErrorCode::MissingTableSuffix,
                    format!(
                        "'{full}' lacks the suffix _SPRK_CL that custom tables in the analytics tier need"
                    ),
                )
                .with_fix(format!("name it '{base}_SPRK_CL'"))
            } else {
                TarnError::new(
                    ErrorCode::MissingTableSuffix,
                    format!(
                        "'{full}' lacks the suffix _SPRK that custom tables in the lake need"
                    ),
                )
                .with_fix(format!(
                    "name it '{table}_SPRK' (lake tier), or '{table}_SPRK_CL' for the analytics tier"
                ))
            });
        }
        Tier::Analytics if mode == WriteMode::Overwrite => {
            return Err(TarnError::new(
                ErrorCode::InvalidWriteMode,
                format!("'{full}' is in the analytics tier, which is append-only"),
            )
            .with_fix("write with mode 'append', or overwrite a lake-tier table (<Name>_SPRK)"))
        }
        Tier::Analytics if !partition_by.is_empty() => {
            return Err(TarnError::new(
                ErrorCode::InvalidPartitioning,
                format!("'{full}' is in the analytics tier, whose tables are not partitioned"),
            )
            .with_fix("drop partitionBy, or write to a lake-tier table (<Name>_SPRK)"))
        }
        _ => {}
    }
    Ok(tier)
}

/// Refuses deleting anything but a lake-tier table.
pub fn check_delete_target(workspace: &str, table: &str) -> Result<(), TarnError> {
    let full = format!("{workspace}.{table}");
    match Tier::of(table) {
        Tier::Lake => Ok(()),
        Tier::Analytics => Err(TarnError::new(
            ErrorCode::InvalidWrite,
            format!("'{full}' is in the analytics tier; only lake-tier tables (<Name>_SPRK) can be deleted"),
        )
        .with_fix("delete lake-tier tables only; analytics-tier tables are kept")),
        Tier::System => Err(TarnError::new(
            ErrorCode::InvalidWrite,
            format!("'{full}' is a system table; system tables cannot be deleted"),
        )
        .with_fix("delete lake-tier custom tables (<Name>_SPRK) only")),
    }
}

/// Rewrites Arrow types that Delta stores differently into the type the
/// table will hold (views and large types into plain ones, any timestamp
/// into microseconds, dictionaries into their values, unsigned integers
/// into signed ones).
fn canonical_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            DataType::Binary
        }
        DataType::Timestamp(_, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.as_ref().map(|_| Arc::from("UTC")))
        }
        DataType::Date64 => DataType::Date32,
        // Delta has no unsigned integers: each is stored as the signed type
        // that holds all its values, and a UInt64 as BIGINT, where a value
        // beyond its range fails the write with 2809 (never wraps).
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Dictionary(_, v) => canonical_type(v),
        DataType::LargeList(f) | DataType::ListView(f) | DataType::LargeListView(f) => {
            DataType::List(Arc::new(canonical_field(f)))
        }
        DataType::FixedSizeList(f, _) => DataType::List(Arc::new(canonical_field(f))),
        DataType::List(f) => DataType::List(Arc::new(canonical_field(f))),
        DataType::Struct(fs) => {
            DataType::Struct(fs.iter().map(|f| Arc::new(canonical_field(f))).collect())
        }
        other => other.clone(),
    }
}

fn canonical_field(f: &Field) -> Field {
    Field::new(f.name(), canonical_type(f.data_type()), f.is_nullable())
}

/// The Delta schema data with `schema` would be stored as, or 2404 naming
/// the column that cannot be stored.
pub fn delta_schema(schema: &Schema) -> Result<StructType, TarnError> {
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if f.name().is_empty() {
            return Err(TarnError::new(
                ErrorCode::UnsupportedColumn,
                "a column has an empty name",
            ));
        }
        if f.name().chars().any(|c| " ,;{}()\n\t=".contains(c)) {
            return Err(TarnError::new(
                ErrorCode::UnsupportedColumn,
                format!(
                    "column name {:?} has a character Delta tables do not allow (space , ; {{ }} ( ) = tab newline)",
                    f.name()
                ),
            ));
        }
        if !seen.insert(f.name().to_ascii_lowercase()) {
            return Err(TarnError::new(
                ErrorCode::UnsupportedColumn,
                format!("column {:?} appears twice (names ignore case)", f.name()),
            ));
        }
    }
    let canonical = Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| canonical_field(f))
            .collect::<Vec<_>>(),
    );
    for f in canonical.fields() {
        let one = Schema::new(vec![f.as_ref().clone()]);
        let r: Result<StructType, _> = (&one).try_into_kernel();
        if let Err(e) = r {
            return Err(TarnError::new(
                ErrorCode::UnsupportedColumn,
                format!(
                    "column '{}' has type {} which a Delta table cannot store: {e}",
                    f.name(),
                    f.data_type()
                ),
            ));
        }
    }
    (&canonical).try_into_kernel().map_err(|e| {
        TarnError::new(
            ErrorCode::UnsupportedColumn,
            format!("the columns cannot be stored in a Delta table: {e}"),
        )
    })
}

/// The Arrow schema of a Delta schema: what readers and writers use.
pub fn arrow_schema(delta: &StructType) -> Result<Schema, TarnError> {
    delta.try_into_arrow().map_err(|e| {
        TarnError::new(
            ErrorCode::UnsupportedColumn,
            format!("the table's schema has no Arrow form: {e}"),
        )
    })
}

/// Checks that data with schema `data` may be written into a table with
/// schema `table` (both as Delta stores them): the same columns (by name,
/// case-sensitive), the same types, and no nullable data for a NOT NULL
/// column. The first difference is refused with its code.
pub fn check_schema(full: &str, data: &StructType, table: &StructType) -> Result<(), TarnError> {
    let missing: Vec<&str> = table
        .fields()
        .filter(|f| data.field(f.name()).is_none())
        .map(|f| f.name().as_str())
        .collect();
    if !missing.is_empty() {
        return Err(TarnError::new(
            ErrorCode::SchemaMismatch,
            format!(
                "the data lacks column(s) {} of table '{full}'",
                quote_list(&missing)
            ),
        )
        .with_fix(format!(
            "add {} to the data (the table has: {})",
            quote_list(&missing),
            quote_list(
                &table
                    .fields()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
            )
        )));
    }
    let extra: Vec<&str> = data
        .fields()
        .filter(|f| table.field(f.name()).is_none())
        .map(|f| f.name().as_str())
        .collect();
    if !extra.is_empty() {
        return Err(TarnError::new(
            ErrorCode::SchemaMismatch,
            format!(
                "the data has column(s) {} that table '{full}' does not",
                quote_list(&extra)
            ),
        )
        .with_fix(format!(
            "drop {} from the data, or write to a new table",
            quote_list(&extra)
        )));
    }
    for f in table.fields() {
        let Some(d) = data.field(f.name()) else {
            continue;
        };
        if d.data_type() != f.data_type() {
            return Err(TarnError::new(
                ErrorCode::ColumnTypeMismatch,
                format!(
                    "column '{}' of table '{full}' is {}, the data's is {}",
                    f.name(),
                    f.data_type(),
                    d.data_type()
                ),
            )
            .with_fix(format!(
                "cast '{}' to {} before writing",
                f.name(),
                f.data_type()
            )));
        }
        if d.is_nullable() && !f.is_nullable() {
            return Err(TarnError::new(
                ErrorCode::NullabilityMismatch,
                format!(
                    "column '{}' of table '{full}' is NOT NULL, but the data's column is nullable",
                    f.name()
                ),
            )
            .with_fix(format!(
                "fill or drop NULLs in '{}' and mark it non-nullable in the data's schema",
                f.name()
            )));
        }
    }
    Ok(())
}

/// Checks partition columns against the data and the existing table.
pub fn check_partitioning(
    full: &str,
    partition_by: &[String],
    data: &StructType,
    existing: Option<&[String]>,
) -> Result<(), TarnError> {
    for p in partition_by {
        if data.field(p).is_none() {
            return Err(TarnError::new(
                ErrorCode::InvalidPartitioning,
                format!("partition column '{p}' is not a column of the data"),
            )
            .with_fix("partition by columns the data has"));
        }
    }
    if let Some(existing) = existing {
        if !partition_by.is_empty() && partition_by != existing {
            return Err(TarnError::new(
                ErrorCode::InvalidPartitioning,
                format!(
                    "table '{full}' is partitioned by [{}], not [{}]",
                    existing.join(", "),
                    partition_by.join(", ")
                ),
            )
            .with_fix("leave partitionBy out when writing to an existing table, or give its own partition columns"));
        }
    }
    if partition_by.len() == data.fields().count() && !partition_by.is_empty() {
        return Err(TarnError::new(
            ErrorCode::InvalidPartitioning,
            "every column is a partition column; a table needs at least one data column",
        ));
    }
    Ok(())
}

fn quote_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_decide_the_tier() {
        assert_eq!(Tier::of("Alerts_SPRK"), Tier::Lake);
        assert_eq!(Tier::of("Alerts_SPRK_CL"), Tier::Analytics);
        assert_eq!(Tier::of("SigninLogs"), Tier::System);
        assert_eq!(Tier::of("_SPRK"), Tier::System);
        let e = check_write_target("demo", "Alerts", false, WriteMode::Append, &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::MissingTableSuffix);
        assert!(e.message.contains("_SPRK"));
        let e = check_write_target("demo", "Alerts_CL", false, WriteMode::Append, &[]).unwrap_err();
        assert!(e.message.contains("_SPRK_CL"), "{}", e.message);
        let e = check_write_target("demo", "SigninLogs", true, WriteMode::Append, &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidWrite);
        let e =
            check_write_target("demo", "A_SPRK_CL", true, WriteMode::Overwrite, &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidWriteMode);
        let e = check_write_target("demo", "A_SPRK_CL", false, WriteMode::Append, &["x".into()])
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPartitioning);
        assert!(
            check_write_target("demo", "A_SPRK", true, WriteMode::Overwrite, &["x".into()]).is_ok()
        );
        assert_eq!(
            WriteMode::parse(None).unwrap_err().code,
            ErrorCode::InvalidWriteMode
        );
        assert_eq!(
            WriteMode::parse(Some("upsert")).unwrap_err().code,
            ErrorCode::InvalidWriteMode
        );
        assert_eq!(
            WriteMode::parse(Some("Overwrite")).unwrap(),
            WriteMode::Overwrite
        );
    }

    #[test]
    fn schemas_must_match_by_name_type_and_nullability() {
        let table = delta_schema(&Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]))
        .unwrap();
        // Large and view strings are stored as strings: no mismatch.
        let ok = delta_schema(&Schema::new(vec![
            Field::new("b", DataType::LargeUtf8, true),
            Field::new("a", DataType::Int64, false),
        ]))
        .unwrap();
        check_schema("t", &ok, &table).unwrap();
        let missing =
            delta_schema(&Schema::new(vec![Field::new("a", DataType::Int64, false)])).unwrap();
        assert_eq!(
            check_schema("t", &missing, &table).unwrap_err().code,
            ErrorCode::SchemaMismatch
        );
        let typed = delta_schema(&Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, true),
        ]))
        .unwrap();
        assert_eq!(
            check_schema("t", &typed, &table).unwrap_err().code,
            ErrorCode::ColumnTypeMismatch
        );
        let nullable = delta_schema(&Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]))
        .unwrap();
        assert_eq!(
            check_schema("t", &nullable, &table).unwrap_err().code,
            ErrorCode::NullabilityMismatch
        );
        let bad =
            delta_schema(&Schema::new(vec![Field::new("a b", DataType::Int64, true)])).unwrap_err();
        assert_eq!(bad.code, ErrorCode::UnsupportedColumn);
    }
}
