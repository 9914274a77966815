//! Writes: `INSERT [OVERWRITE]`, `CREATE [OR REPLACE] TABLE … AS`,
//! `DROP TABLE`, and bulk ingest.
//!
//! Every write is checked here against the caller's roles and the lake's
//! rules (tier suffixes, system tables, modes, partitioning, schema)
//! before anything is written, then planned as a DataFusion `INSERT` into
//! a write-target [`LakeTable`]: the executors write the files, and the
//! gateway makes the one Delta commit once every task succeeded
//! ([`Effect::Commit`]).

use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use datafusion::common::{Column, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    cast, DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp,
};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectName, ObjectType, Statement as S, TableObject};
use tarn_common::roles::{Grants, Role};
use tarn_common::{ErrorCode, TarnError, CATALOG};
use tarn_lake::rules::{self, WriteMode};
use tarn_lake::table::LakeTableSpec;
use tarn_lake::write::WriteSpec;
use tarn_lake::{Lake, LakeTable};

use crate::error::from_datafusion;

/// What must happen after a planned statement ran.
#[derive(Debug, Clone)]
pub enum Effect {
    /// A query: nothing.
    Nothing,
    /// A write: commit (or, if it failed, undo) the files its tasks wrote.
    Commit(Arc<LakeTableSpec>),
    /// `DROP TABLE`: delete the table when the statement runs.
    Drop {
        /// Workspace.
        workspace: String,
        /// Table.
        table: String,
    },
    /// `CREATE TABLE IF NOT EXISTS` of a table that exists: nothing, zero rows.
    Skip,
}

/// A write statement, recognised before any name is resolved.
#[derive(Debug)]
pub enum WriteStatement {
    /// `INSERT INTO t …` / `INSERT OVERWRITE [TABLE] t …`.
    Insert {
        /// Target.
        name: Vec<String>,
        /// Whether it replaces the table's rows.
        overwrite: bool,
    },
    /// `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] t [PARTITION BY (…)] AS …`.
    CreateAs {
        /// Target.
        name: Vec<String>,
        /// The query.
        query: Box<ast::Query>,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// `OR REPLACE`.
        or_replace: bool,
        /// Partition columns.
        partition_by: Vec<String>,
    },
    /// `DROP TABLE [IF EXISTS] t`.
    Drop {
        /// Target.
        name: Vec<String>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| i.value.clone())
        .collect()
}

/// Recognises writes; `Ok(None)` for anything else. Statements that would
/// name files (`COPY … TO`, `CREATE EXTERNAL TABLE … LOCATION`, `CREATE
/// TABLE … LOCATION`) are refused here for everyone but operators, and are
/// not supported for operators either yet.
pub fn classify(
    statement: &DFStatement,
    grants: &Grants,
) -> Result<Option<WriteStatement>, TarnError> {
    let outside = |what: &str| {
        if grants.operator {
            TarnError::new(
                ErrorCode::Unsupported,
                format!("{what} is not supported yet, even for operators"),
            )
        } else {
            TarnError::new(
                ErrorCode::PathOutsideLake,
                format!("{what} names files or locations, which only operators may do"),
            )
            .with_fix("read and write lake tables by name (CREATE TABLE <Name>_SPRK AS SELECT …, INSERT INTO …)")
        }
    };
    let s = match statement {
        DFStatement::CopyTo(_) => return Err(outside("COPY … TO")),
        DFStatement::CreateExternalTable(_) => return Err(outside("CREATE EXTERNAL TABLE")),
        DFStatement::Statement(s) => s.as_ref(),
        _ => return Ok(None),
    };
    Ok(match s {
        S::Insert(i) => {
            let name = match &i.table {
                TableObject::TableName(n) => parts(n),
                _ => {
                    return Err(outside("INSERT INTO a table function"));
                }
            };
            if i.source.is_none() {
                return Err(TarnError::new(
                    ErrorCode::InvalidQuery,
                    "INSERT needs VALUES or a SELECT",
                ));
            }
            Some(WriteStatement::Insert {
                name,
                overwrite: i.overwrite,
            })
        }
        S::CreateTable(c) => {
            // The parser keeps `LOCATION '…'` in the Hive formats for most
            // dialects, and in `location` for some.
            let hive_location = c
                .hive_formats
                .as_ref()
                .is_some_and(|h| h.location.is_some());
            if c.external || c.location.is_some() || hive_location {
                return Err(outside("CREATE TABLE … LOCATION"));
            }
            let Some(query) = c.query.clone() else {
                return Err(TarnError::new(
                    ErrorCode::Unsupported,
                    "CREATE TABLE needs AS SELECT …: a lake table is created by writing its first rows",
                )
                .with_fix("write CREATE TABLE <Name>_SPRK AS SELECT …"));
            };
            let partition_by = match c.partition_by.as_deref() {
                None => Vec::new(),
                Some(e) => partition_columns(e)?,
            };
            Some(WriteStatement::CreateAs {
                name: parts(&c.name),
                query,
                if_not_exists: c.if_not_exists,
                or_replace: c.or_replace,
                partition_by,
            })
        }
        S::Drop {
            object_type: ObjectType::Table,
            if_exists,
            names,
            ..
        } => {
            if names.len() != 1 {
                return Err(TarnError::new(
                    ErrorCode::InvalidArgument,
                    "DROP TABLE takes one table at a time",
                ));
            }
            Some(WriteStatement::Drop {
                name: parts(&names[0]),
                if_exists: *if_exists,
            })
        }
        _ => None,
    })
}

fn partition_columns(e: &ast::Expr) -> Result<Vec<String>, TarnError> {
    match e {
        ast::Expr::Identifier(i) => Ok(vec![i.value.clone()]),
        ast::Expr::Nested(inner) => partition_columns(inner),
        ast::Expr::Tuple(items) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(partition_columns(i)?);
            }
            Ok(out)
        }
        other => Err(TarnError::new(
            ErrorCode::InvalidPartitioning,
            format!("PARTITION BY takes column names, not {other}"),
        )),
    }
}

/// A table or workspace name that is a path (`/etc/passwd`, `../x`,
/// `file:…`) names a file, never a lake table: refused as such (2206), for
/// reads and writes alike, before anything is looked up.
pub fn refuse_path(part: &str) -> Result<(), TarnError> {
    if part.contains('/') || part.contains('\\') || part.contains(':') || part.contains("..") {
        return Err(TarnError::new(
            ErrorCode::PathOutsideLake,
            format!("'{part}' is a path, not a table name; Tarn reads and writes lake tables by name only"),
        ));
    }
    Ok(())
}

/// Splits `[catalog.]​[workspace.]table` against the default workspace.
pub fn target(name: &[String], default_ws: &str) -> Result<(String, String), TarnError> {
    for p in name {
        refuse_path(p)?;
    }
    if let Some(p) = name
        .iter()
        .find(|p| tarn_lake::catalog::validate_name(p).is_err())
    {
        return Err(TarnError::new(
            ErrorCode::InvalidArgument,
            format!("'{p}' is not a valid table name"),
        )
        .with_fix("table names use letters, digits, '_' and '-'"));
    }
    match name {
        [t] => Ok((default_ws.to_string(), t.clone())),
        [w, t] => Ok((w.clone(), t.clone())),
        [c, w, t] if c == CATALOG => Ok((w.clone(), t.clone())),
        [c, _, _] => Err(TarnError::new(
            ErrorCode::WorkspaceNotFound,
            format!("catalog '{c}' does not exist; Tarn's only catalog is '{CATALOG}'"),
        )),
        _ => Err(TarnError::new(
            ErrorCode::InvalidArgument,
            format!("'{}' is not a table name", name.join(".")),
        )),
    }
}

/// The existing table (if any) after role checks on its workspace.
async fn resolve(
    lake: &Arc<Lake>,
    grants: &Grants,
    ws: &str,
    table: &str,
    needed: Role,
    action: &str,
) -> Result<Option<Arc<LakeTable>>, TarnError> {
    grants.require(ws, needed, action)?;
    let workspace = lake.workspace(ws).await.map_err(|e| e.to_tarn())?;
    workspace.refresh().await.map_err(|e| e.to_tarn())?;
    match workspace.table(table).await {
        Ok(t) => Ok(Some(t)),
        Err(tarn_lake::Error::TableNotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_tarn()),
    }
}

fn new_txn() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Refuses a write whose folders (table, log, manifests, or a link already
/// inside the table) resolve outside the lake — before anything is written.
fn stays_in_lake(lake: &Lake, ws: &str, table: &str, txn: &str) -> Result<(), TarnError> {
    lake.check_write_target(ws, table, txn).map_err(|e| {
        tracing::warn!(workspace = %ws, %table, error = %e, "write refused: it would leave the lake");
        e.to_tarn()
    })
}

/// A plan writing `input` into `target` (whose spec carries the write):
/// the input's columns are matched to the table's by name, in table order,
/// cast to the stored types.
fn write_plan(
    input: LogicalPlan,
    target: LakeTable,
    overwrite: bool,
) -> Result<LogicalPlan, TarnError> {
    let spec = target.spec();
    let schema = spec
        .write
        .as_ref()
        .map(|w| w.schema.clone())
        .unwrap_or_else(Schema::empty);
    let mut exprs = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let (q, src) = input
            .schema()
            .iter()
            .find(|(_, s)| s.name() == f.name())
            .ok_or_else(|| {
                TarnError::new(
                    ErrorCode::SchemaMismatch,
                    format!("the data lacks column '{}'", f.name()),
                )
            })?;
        let col = Expr::Column(Column::new(q.cloned(), src.name()));
        exprs.push(cast(col, f.data_type().clone()).alias(f.name()));
    }
    let input = LogicalPlanBuilder::from(input)
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(|e| from_datafusion(&e))?;
    let name = TableReference::full(CATALOG, spec.workspace.clone(), spec.name.clone());
    let op = WriteOp::Insert(if overwrite {
        InsertOp::Overwrite
    } else {
        InsertOp::Append
    });
    Ok(LogicalPlan::Dml(DmlStatement::new(
        name,
        provider_as_source(Arc::new(target)),
        op,
        Arc::new(input),
    )))
}

/// The spec of a table that does not exist yet.
fn new_table_spec(
    lake: &Lake,
    ws: &str,
    table: &str,
    write: WriteSpec,
) -> Result<LakeTable, TarnError> {
    let url = lake.table_url(ws, table).map_err(|e| e.to_tarn())?;
    let (file_fields, partition_fields): (Vec<Field>, Vec<Field>) = write
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .partition(|f| !write.partition_by.contains(f.name()));
    Ok(LakeTable::new(LakeTableSpec {
        workspace: ws.to_string(),
        name: table.to_string(),
        url: url.to_string(),
        version: -1,
        file_schema: Schema::new(file_fields),
        partition_fields,
        files: Vec::new(),
        write: Some(write),
    }))
}

/// The schema a new table gets from data with schema `data`: Delta's
/// types, partition columns last (as Delta readers return them).
fn new_table_schema(data: &Schema, partition_by: &[String]) -> Result<Schema, TarnError> {
    let delta = rules::delta_schema(data)?;
    let arrow = rules::arrow_schema(&delta)?;
    let mut fields: Vec<Field> = arrow
        .fields()
        .iter()
        .filter(|f| !partition_by.contains(f.name()))
        .map(|f| f.as_ref().clone())
        .collect();
    for p in partition_by {
        if let Ok(f) = arrow.field_with_name(p) {
            fields.push(f.clone().with_nullable(true));
        }
    }
    Ok(Schema::new(fields))
}

/// What a DataFrame write (ingest, `save_as_table`) asks for.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// Append or overwrite.
    pub mode: WriteMode,
    /// Partition columns (lake tier only).
    pub partition_by: Vec<String>,
    /// Whether a missing table may be created.
    pub create: bool,
    /// Whether an existing table may be written (false: "create" only).
    pub existing: bool,
}

/// Plans writing `data` (a plan over the rows to write, e.g. staged
/// files) into `ws.table` with the strict by-name schema check.
pub async fn plan_dataframe_write(
    lake: &Arc<Lake>,
    grants: &Grants,
    ws: &str,
    table: &str,
    data: LogicalPlan,
    req: &WriteRequest,
) -> Result<(LogicalPlan, Effect), TarnError> {
    let existing = resolve(
        lake,
        grants,
        ws,
        table,
        Role::Contributor,
        "writing a table",
    )
    .await?;
    rules::check_write_target(ws, table, existing.is_some(), req.mode, &req.partition_by)?;
    let full = format!("{ws}.{table}");
    let data_schema = data.schema().as_arrow().clone();
    let data_delta = rules::delta_schema(&data_schema)?;
    match existing {
        Some(t) => {
            if !req.existing {
                return Err(TarnError::new(
                    ErrorCode::TableAlreadyExists,
                    format!("table '{full}' exists already"),
                )
                .with_fix("append to it (mode 'append'), overwrite it (mode 'overwrite'), or pick another name"));
            }
            let table_schema = datafusion::catalog::TableProvider::schema(t.as_ref());
            let table_delta = rules::delta_schema(&table_schema)?;
            rules::check_schema(&full, &data_delta, &table_delta)?;
            let existing_parts: Vec<String> = t
                .spec()
                .partition_fields
                .iter()
                .map(|f| f.name().clone())
                .collect();
            rules::check_partitioning(
                &full,
                &req.partition_by,
                &data_delta,
                Some(&existing_parts),
            )?;
            let txn = new_txn();
            stays_in_lake(lake, ws, &t.spec().name, &txn)?;
            let target = t.for_write(WriteSpec {
                txn,
                create: false,
                mode: req.mode,
                partition_by: existing_parts,
                schema: table_schema.as_ref().clone(),
                app_txn: None,
            });
            let spec = Arc::new(target.spec().clone());
            let plan = write_plan(data, target, req.mode == WriteMode::Overwrite)?;
            Ok((plan, Effect::Commit(spec)))
        }
        None => {
            if !req.create {
                return Err(TarnError::new(
                    ErrorCode::TableNotFound,
                    format!("table '{full}' does not exist"),
                )
                .with_fix("create it (ingest mode 'create' or 'create_append', or save_as_table), or check the name"));
            }
            rules::check_partitioning(&full, &req.partition_by, &data_delta, None)?;
            let schema = new_table_schema(&data_schema, &req.partition_by)?;
            let txn = new_txn();
            stays_in_lake(lake, ws, table, &txn)?;
            let target = new_table_spec(
                lake,
                ws,
                table,
                WriteSpec {
                    txn,
                    create: true,
                    mode: WriteMode::Append,
                    partition_by: req.partition_by.clone(),
                    schema,
                    app_txn: None,
                },
            )?;
            let spec = Arc::new(target.spec().clone());
            let plan = write_plan(data, target, false)?;
            Ok((plan, Effect::Commit(spec)))
        }
    }
}

/// Plans a write statement. `plan_query` plans a SELECT in the session.
pub async fn plan_statement(
    lake: &Arc<Lake>,
    state: &SessionState,
    grants: &Grants,
    default_ws: &str,
    statement: DFStatement,
    w: WriteStatement,
) -> Result<(LogicalPlan, Effect), TarnError> {
    match w {
        WriteStatement::Insert { name, overwrite } => {
            let (ws, table) = target(&name, default_ws)?;
            let mode = if overwrite {
                WriteMode::Overwrite
            } else {
                WriteMode::Append
            };
            let Some(t) = resolve(
                lake,
                grants,
                &ws,
                &table,
                Role::Contributor,
                "writing a table",
            )
            .await?
            else {
                // Naming rules first: a missing suffix is the better answer.
                rules::check_write_target(&ws, &table, false, mode, &[])?;
                return Err(TarnError::new(
                    ErrorCode::TableNotFound,
                    format!("table '{ws}.{table}' does not exist"),
                )
                .with_fix(format!(
                    "create it with CREATE TABLE {ws}.{table} AS SELECT …"
                )));
            };
            let real = t.spec().name.clone();
            rules::check_write_target(&ws, &real, true, mode, &[])?;
            let schema = datafusion::catalog::TableProvider::schema(t.as_ref());
            let input = insert_input(state, statement, &schema).await?;
            let parts: Vec<String> = t
                .spec()
                .partition_fields
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let txn = new_txn();
            stays_in_lake(lake, &ws, &real, &txn)?;
            let target = t.for_write(WriteSpec {
                txn,
                create: false,
                mode,
                partition_by: parts,
                schema: schema.as_ref().clone(),
                app_txn: None,
            });
            let spec = Arc::new(target.spec().clone());
            let plan = write_plan(input, target, overwrite)?;
            Ok((plan, Effect::Commit(spec)))
        }
        WriteStatement::CreateAs {
            name,
            query,
            if_not_exists,
            or_replace,
            partition_by,
        } => {
            let (ws, table) = target(&name, default_ws)?;
            let exists = resolve(
                lake,
                grants,
                &ws,
                &table,
                Role::Contributor,
                "creating a table",
            )
            .await?
            .is_some();
            if exists && if_not_exists {
                return Ok((count_plan(), Effect::Skip));
            }
            if exists && !or_replace {
                return Err(TarnError::new(
                    ErrorCode::TableAlreadyExists,
                    format!("table '{ws}.{table}' exists already"),
                )
                .with_fix(format!(
                    "write INSERT INTO {ws}.{table} …, CREATE OR REPLACE TABLE …, or CREATE TABLE IF NOT EXISTS …"
                )));
            }
            let input = state
                .statement_to_plan(DFStatement::Statement(Box::new(S::Query(query))))
                .await
                .map_err(|e| from_datafusion(&e))?;
            let req = WriteRequest {
                mode: if exists {
                    WriteMode::Overwrite
                } else {
                    WriteMode::Append
                },
                partition_by,
                create: true,
                existing: or_replace,
            };
            plan_dataframe_write(lake, grants, &ws, &table, input, &req).await
        }
        WriteStatement::Drop { name, if_exists } => {
            let (ws, table) = target(&name, default_ws)?;
            let existing =
                resolve(lake, grants, &ws, &table, Role::Owner, "deleting a table").await?;
            let Some(t) = existing else {
                if if_exists {
                    return Ok((count_plan(), Effect::Skip));
                }
                return Err(TarnError::new(
                    ErrorCode::TableNotFound,
                    format!("table '{ws}.{table}' does not exist"),
                ));
            };
            let real = t.spec().name.clone();
            rules::check_delete_target(&ws, &real)?;
            Ok((
                count_plan(),
                Effect::Drop {
                    workspace: ws,
                    table: real,
                },
            ))
        }
    }
}

/// The rows an `INSERT` writes, one column per table column in table
/// order (named as the table's), cast to the table's types.
///
/// `INSERT … VALUES (…)` is planned by DataFusion, which types the rows
/// (and their `$n` parameters) by the target columns. Any other source is
/// planned as the query it is and matched by position here: DataFusion
/// would type every `VALUES` list nested anywhere in the query by the
/// table's columns too, position by position, so
/// `INSERT INTO t(v, k) SELECT column2, column1 FROM (VALUES (1, 'a'))`
/// failed casting `'a'` to `k`'s type.
/// The rows of an INSERT's VALUES as data that may hold NULLs: DataFusion
/// types them by the table's columns, NOT NULL included, and would refuse
/// a NULL while building the rows with an error that names neither table
/// nor column. The write's own check then refuses it as 2403, naming both.
fn nullable_values(plan: LogicalPlan) -> Result<LogicalPlan, TarnError> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::common::DFSchema;
    let internal = |e: datafusion::error::DataFusionError| {
        TarnError::internal(format!("cannot plan the INSERT's VALUES: {e}"))
    };
    plan.transform_up(|p| match p {
        LogicalPlan::Values(v) => {
            let fields = v
                .schema
                .iter()
                .map(|(q, f)| (q.cloned(), Arc::new(f.as_ref().clone().with_nullable(true))))
                .collect();
            let schema = DFSchema::new_with_metadata(fields, v.schema.metadata().clone())?;
            Ok(Transformed::yes(LogicalPlan::Values(
                datafusion::logical_expr::Values {
                    schema: Arc::new(schema),
                    values: v.values,
                },
            )))
        }
        other => Ok(Transformed::yes(other.recompute_schema()?)),
    })
    .map(|t| t.data)
    .map_err(internal)
}

async fn insert_input(
    state: &SessionState,
    statement: DFStatement,
    table: &Schema,
) -> Result<LogicalPlan, TarnError> {
    let DFStatement::Statement(s) = &statement else {
        return Err(TarnError::new(
            ErrorCode::Internal,
            "INSERT did not parse as one",
        ));
    };
    let S::Insert(insert) = s.as_ref() else {
        return Err(TarnError::new(
            ErrorCode::Internal,
            "INSERT did not parse as one",
        ));
    };
    let Some(source) = insert.source.clone() else {
        return Err(TarnError::new(
            ErrorCode::InvalidQuery,
            "INSERT needs VALUES or a SELECT",
        ));
    };
    if matches!(source.body.as_ref(), ast::SetExpr::Values(_)) {
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| from_datafusion(&e))?;
        return match plan {
            LogicalPlan::Dml(dml) => nullable_values(dml.input.as_ref().clone()),
            _ => Err(TarnError::new(
                ErrorCode::Internal,
                "INSERT did not plan as DML",
            )),
        };
    }
    // Which source column feeds each table column (None: not listed).
    let mut feeds: Vec<Option<usize>> = Vec::with_capacity(table.fields().len());
    if insert.columns.is_empty() {
        feeds.extend((0..table.fields().len()).map(Some));
    } else {
        feeds.resize(table.fields().len(), None);
        for (i, name) in insert.columns.iter().enumerate() {
            let [part] = name.0.as_slice() else {
                return Err(TarnError::new(
                    ErrorCode::InvalidQuery,
                    format!("INSERT column '{name}' has more than one part"),
                )
                .with_fix("name the table's columns alone: INSERT INTO t (a, b) SELECT …"));
            };
            let wanted = part
                .as_ident()
                .map(|id| {
                    if id.quote_style.is_some() {
                        id.value.clone()
                    } else {
                        id.value.to_lowercase()
                    }
                })
                .unwrap_or_default();
            // Unquoted names match as typed first (CamelCase lake columns),
            // then as DataFusion normalises them.
            let raw = part
                .as_ident()
                .map(|id| id.value.clone())
                .unwrap_or_default();
            let index = table
                .index_of(&raw)
                .or_else(|_| table.index_of(&wanted))
                .map_err(|_| {
                    TarnError::new(
                        ErrorCode::SchemaMismatch,
                        format!("the table has no column '{raw}'"),
                    )
                    .with_fix("list the table's columns with DESCRIBE <table>")
                })?;
            if feeds[index].is_some() {
                return Err(TarnError::new(
                    ErrorCode::InvalidQuery,
                    format!("column '{raw}' is listed twice"),
                ));
            }
            feeds[index] = Some(i);
        }
    }
    let listed = feeds.iter().filter(|f| f.is_some()).count();
    let query = state
        .statement_to_plan(DFStatement::Statement(Box::new(S::Query(source))))
        .await
        .map_err(|e| from_datafusion(&e))?;
    let given = query.schema().fields().len();
    if given != listed {
        return Err(TarnError::new(
            ErrorCode::SchemaMismatch,
            format!("the query gives {given} columns for {listed} table columns"),
        )
        .with_fix("select one value per table column (or list the columns: INSERT INTO t (a, b) SELECT …)"));
    }
    let mut exprs = Vec::with_capacity(feeds.len());
    for (field, feed) in table.fields().iter().zip(feeds) {
        let value = match feed {
            Some(i) => Expr::Column(Column::from(query.schema().qualified_field(i))),
            None => Expr::Literal(datafusion::common::ScalarValue::Null, None),
        };
        exprs.push(cast(value, field.data_type().clone()).alias(field.name()));
    }
    LogicalPlanBuilder::from(query)
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(|e| from_datafusion(&e))
}

/// An empty plan with the DML result schema (`count`).
pub fn count_plan() -> LogicalPlan {
    let schema = Schema::new(vec![Field::new(
        "count",
        arrow::datatypes::DataType::UInt64,
        false,
    )]);
    LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(
            datafusion::common::DFSchema::try_from(schema)
                .unwrap_or_else(|_| datafusion::common::DFSchema::empty()),
        ),
    })
}
