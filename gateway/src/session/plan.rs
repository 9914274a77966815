//! Planning: the one path every statement takes before it runs. It is
//! checked (read-only unless a write the caller may make, table functions,
//! every table it names) and planned in a state made for the run, whose
//! Ballista job name carries the session's lease.

use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use datafusion::common::TableReference;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SQLOptions;
use datafusion::sql::parser::Statement as DFStatement;
use tarn_common::{ErrorCode, TarnError, CATALOG};
use tarn_lake::Lake;

use super::params::number_placeholders;
use super::settings::{apply_set, settable};
use super::{refresh_lake, Planned, Session, Sessions};
use crate::error::from_datafusion;

impl Sessions {
    /// Parses, resolves and plans one statement for `session` in `workspace`.
    ///
    /// Every table the statement names is resolved against the lake first,
    /// so an unknown workspace or table gets its own coded error rather than
    /// a generic planning failure.
    pub async fn plan(
        &self,
        session: &Session,
        workspace: &str,
        sql: &str,
        query_id: &str,
    ) -> Result<Planned, TarnError> {
        self.plan_as(session, &session.grants, workspace, sql, query_id)
            .await
    }

    /// Like [`Sessions::plan`], checked against `grants` instead of the
    /// session's own: a kernel plans each cell with the grants of the
    /// credential that sent it (never more than the session's). The
    /// catalog then shows only the workspaces `grants` sees, so
    /// `information_schema` and name resolution narrow with them.
    pub async fn plan_as(
        &self,
        session: &Session,
        grants: &tarn_common::roles::Grants,
        workspace: &str,
        sql: &str,
        query_id: &str,
    ) -> Result<Planned, TarnError> {
        self.plan_in(session, grants, workspace, sql, Language::Sql, query_id)
            .await
    }

    /// Like [`Sessions::plan_as`], for a statement written in `language`.
    pub async fn plan_in(
        &self,
        session: &Session,
        grants: &tarn_common::roles::Grants,
        workspace: &str,
        text: &str,
        language: Language,
        query_id: &str,
    ) -> Result<Planned, TarnError> {
        let planned = self
            .plan_checked(session, grants, workspace, text, language, query_id)
            .await;
        // A statement refused before it runs ends here: counted by its
        // code, as a run's failure is counted when its stream ends.
        if let Err(e) = &planned {
            self.metrics.queries.inc(e.code.name());
        }
        planned
    }

    async fn plan_checked(
        &self,
        session: &Session,
        grants: &tarn_common::roles::Grants,
        workspace: &str,
        text: &str,
        language: Language,
        query_id: &str,
    ) -> Result<Planned, TarnError> {
        let mut state = run_state_of(session, workspace, query_id);
        if grants != &session.grants {
            state.register_catalog_list(self.catalogs_for(grants));
        }
        let prepared = match language {
            Language::Sql => prepare(&self.lake, &state, grants, workspace, text).await?,
            Language::Kql => {
                let now = *session.kql_now.read();
                prepare_kql(&self.lake, &state, grants, workspace, text, now).await?
            }
        };
        match prepared {
            Prepared::Plan { plan, effect } => Ok(Planned {
                plan,
                state,
                effect,
            }),
            Prepared::PinNow(now) => {
                *session.kql_now.write() = now;
                Ok(Planned {
                    plan: empty_plan(),
                    state,
                    effect: crate::write::Effect::Nothing,
                })
            }
            Prepared::Set { key, value } => {
                apply_set(session, &key, value)?;
                Ok(Planned {
                    plan: empty_plan(),
                    state,
                    effect: crate::write::Effect::Nothing,
                })
            }
        }
    }

    /// The state a session plans with, named for one run (ingest plans
    /// its write here).
    pub fn run_state(&self, session: &Session, workspace: &str, query_id: &str) -> SessionState {
        run_state_of(session, workspace, query_id)
    }
}

/// A session's state made for one run: its Ballista job name is
/// `{query_id}@{lease}` and its default schema `workspace`. A statement
/// planned now and a plan made earlier and run now both get their state
/// here, so every job reaches the coordinator named alike.
fn run_state_of(session: &Session, workspace: &str, query_id: &str) -> SessionState {
    let base = session.state.read();
    // The job name carries the lease: the coordinator binds the job's
    // tasks within it, and refuses the job if the lease has ended.
    let mut config = base
        .config()
        .clone()
        .with_ballista_job_name(&format!("{query_id}@{}", session.lease_id));
    config.options_mut().catalog.default_schema = workspace.to_string();
    super::with_config(&base, config)
}

/// One statement, checked and planned, before it runs.
#[derive(Debug)]
pub enum Prepared {
    /// A query or a write, and what must happen once it ran.
    Plan {
        /// The logical plan (placeholders still unbound for prepared
        /// statements).
        plan: LogicalPlan,
        /// A write's commit, a drop, or nothing.
        effect: crate::write::Effect,
    },
    /// `SET <key> = <value>` of a setting users may change.
    Set {
        /// The setting, lower-cased.
        key: String,
        /// Its new value.
        value: usize,
    },
    /// A KQL `set query_now = …;` sent alone: the session's `now()` from
    /// here on (`None`: each query's start again).
    PinNow(Option<chrono::DateTime<chrono::Utc>>),
}

/// The language a statement is written in: SQL unless the client says
/// otherwise (Flight SQL header `x-tarn-language`, a kernel's magic, a
/// job cell's language).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    /// DataFusion's SQL dialect.
    #[default]
    Sql,
    /// Kusto Query Language ([`tarn_kql`]).
    Kql,
}

impl Language {
    /// The language a client names (`sql` or `kql`, any case; absent:
    /// SQL).
    pub fn named(name: Option<&str>) -> Result<Self, TarnError> {
        match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("sql") => Ok(Self::Sql),
            Some("kql") | Some("kusto") => Ok(Self::Kql),
            Some(other) => Err(TarnError::new(
                ErrorCode::InvalidArgument,
                format!("unknown query language '{other}'"),
            )
            .with_fix("name the language 'sql' (the default) or 'kql'")),
        }
    }
}

/// A plan that answers no rows (what a `SET` runs).
fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    })
}

/// Parses, checks and plans one KQL query in `state` (whose default
/// schema is `workspace`) for a caller holding `grants`: the tables it
/// names are checked as SQL's are, and its plan is a query's (KQL does
/// not write). `now` is the session's pinned time, if any.
pub async fn prepare_kql(
    lake: &Arc<Lake>,
    state: &SessionState,
    grants: &tarn_common::roles::Grants,
    workspace: &str,
    text: &str,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Prepared, TarnError> {
    let script = tarn_kql::parse(text).map_err(|e| from_kql(&e))?;
    if !script.has_query() {
        return Ok(Prepared::PinNow(script.pin().unwrap_or(now)));
    }
    let mut wants_listing = false;
    for t in script.tables() {
        let r = match (&t.catalog, &t.workspace) {
            (Some(c), Some(w)) => TableReference::full(c.as_str(), w.as_str(), t.table.as_str()),
            (None, Some(w)) => TableReference::partial(w.as_str(), t.table.as_str()),
            _ => TableReference::bare(t.table.as_str()),
        };
        check_reference(lake, &r, workspace, grants, &mut wants_listing)
            .await
            .map_err(|e| placed(e, &script, t.offset))?;
    }
    if wants_listing {
        refresh_lake(lake).await?;
    }
    let plan = tarn_kql::plan(&script, state, &tarn_kql::Options { now })
        .await
        .map_err(|e| from_kql(&e))?;
    Ok(Prepared::Plan {
        plan,
        effect: crate::write::Effect::Nothing,
    })
}

/// A KQL error in the catalogue's terms: its kind picks the code, and the
/// message keeps the line, column, caret and suggestion.
pub fn from_kql(e: &tarn_kql::KqlError) -> TarnError {
    let code = match e.kind {
        tarn_kql::ErrorKind::Syntax => ErrorCode::KqlSyntax,
        tarn_kql::ErrorKind::UnknownColumn => ErrorCode::ColumnNotFound,
        tarn_kql::ErrorKind::UnknownTable => ErrorCode::TableNotFound,
        tarn_kql::ErrorKind::Unsupported => ErrorCode::Unsupported,
    };
    let err = TarnError::new(code, e.to_string());
    match (&e.hint, e.kind) {
        (Some(h), _) => err.with_fix(format!("{h} (line {}, column {})", e.line, e.column)),
        (None, tarn_kql::ErrorKind::Unsupported) => {
            err.with_fix("rewrite the query without it; the README lists the KQL Tarn runs")
        }
        (None, _) => err,
    }
}

/// A lake error about a table a KQL query names, placed where it is
/// written.
fn placed(e: TarnError, script: &tarn_kql::Script, offset: usize) -> TarnError {
    let at = tarn_kql::KqlError::at(
        tarn_kql::ErrorKind::UnknownTable,
        script.text(),
        offset,
        e.message.clone(),
    );
    TarnError {
        message: at.to_string(),
        ..e
    }
}

/// Parses, checks and plans one statement in `state` (whose default
/// schema is `workspace`) for a caller holding `grants`: the one path every
/// statement takes, whether a session's on the cluster or one run in
/// process ([`crate::local`]).
///
/// Every table the statement names is resolved against the lake first,
/// so an unknown workspace or table gets its own coded error rather than
/// a generic planning failure.
pub async fn prepare(
    lake: &Arc<Lake>,
    state: &SessionState,
    grants: &tarn_common::roles::Grants,
    workspace: &str,
    sql: &str,
) -> Result<Prepared, TarnError> {
    let sql = number_placeholders(sql);
    let statement = state
        .sql_to_statement(&sql, &datafusion::config::Dialect::Generic)
        .map_err(|e| from_datafusion(&e))?;
    let write = crate::write::classify(&statement, grants)?;
    if write.is_none() {
        check_read_only(&statement)?;
    }
    let calls = crate::table_functions::called(&statement);
    crate::table_functions::check(&calls)?;
    let refs = state
        .resolve_table_references(&statement)
        .map_err(|e| from_datafusion(&e))?;
    // The table a write creates or deletes need not resolve; its
    // checks are the write's own. A target that is no table name (a path,
    // a name a table cannot have) is refused as such, not looked up.
    let skip = match &write {
        Some(crate::write::WriteStatement::CreateAs { name, .. })
        | Some(crate::write::WriteStatement::Drop { name, .. })
        | Some(crate::write::WriteStatement::Insert { name, .. }) => {
            Some(crate::write::target(name, workspace)?)
        }
        None => None,
    };
    let mut wants_listing = false;
    for r in refs {
        // A table function, not a table (checked above).
        if r.schema().is_none() && calls.contains(r.table()) {
            continue;
        }
        if let Some((ws, t)) = &skip {
            if r.schema().unwrap_or(workspace) == ws && r.table() == t {
                continue;
            }
        }
        check_reference(lake, &r, workspace, grants, &mut wants_listing).await?;
    }
    if wants_listing {
        refresh_lake(lake).await?;
    }
    if let Some(w) = write {
        let (plan, effect) =
            crate::write::plan_statement(lake, state, grants, workspace, statement, w).await?;
        return Ok(Prepared::Plan { plan, effect });
    }
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| from_datafusion(&e))?;
    if let LogicalPlan::Statement(datafusion::logical_expr::Statement::SetVariable(set)) = &plan {
        let (key, value) = settable(&set.variable, &set.value)?;
        return Ok(Prepared::Set { key, value });
    }
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| {
            TarnError::new(
                ErrorCode::Unsupported,
                format!("only queries run here: {}", e.strip_backtrace()),
            )
            .with_fix("send SELECT (or WITH … SELECT, SHOW, DESCRIBE, EXPLAIN) statements")
        })?;
    Ok(Prepared::Plan {
        plan,
        effect: crate::write::Effect::Nothing,
    })
}

/// Checks that a table a statement names exists and that the caller may
/// read it; `information_schema` asks for a fresh listing instead.
async fn check_reference(
    lake: &Arc<Lake>,
    r: &TableReference,
    default_ws: &str,
    grants: &tarn_common::roles::Grants,
    wants_listing: &mut bool,
) -> Result<(), TarnError> {
    for part in [r.schema(), Some(r.table())].into_iter().flatten() {
        crate::write::refuse_path(part)?;
    }
    if let Some(c) = r.catalog() {
        if c != CATALOG {
            return Err(TarnError::new(
                ErrorCode::WorkspaceNotFound,
                format!("catalog '{c}' does not exist; Tarn's only catalog is '{CATALOG}'"),
            )
            .with_fix(format!(
                "write {CATALOG}.<workspace>.<table>, <workspace>.<table> or <table>"
            )));
        }
    }
    let ws = r.schema().unwrap_or(default_ws);
    if ws == "information_schema" {
        *wants_listing = true;
        return Ok(());
    }
    grants.require(ws, tarn_common::roles::Role::Reader, "reading a table")?;
    let workspace = lake.workspace(ws).await.map_err(|e| e.to_tarn())?;
    workspace.table(r.table()).await.map_err(|e| e.to_tarn())?;
    Ok(())
}

/// Refuses anything but queries before any name is resolved: DDL, DML,
/// `COPY … TO` and external tables could reach outside the lake.
fn check_read_only(statement: &DFStatement) -> Result<(), TarnError> {
    use datafusion::sql::sqlparser::ast::Statement as S;
    let allowed = match statement {
        DFStatement::Statement(s) => matches!(
            s.as_ref(),
            S::Query(_)
                | S::Set(_)
                | S::ShowTables { .. }
                | S::ShowColumns { .. }
                | S::ExplainTable { .. }
                | S::Explain { .. }
        ),
        DFStatement::Explain(_) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        let kind = statement.to_string();
        let kind: String = kind
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Err(TarnError::new(
            ErrorCode::Unsupported,
            format!("only queries run here, not '{kind} …'"),
        )
        .with_fix("send SELECT (or WITH … SELECT, SHOW, DESCRIBE, EXPLAIN) statements"))
    }
}
