//! From the parsed query to a DataFusion logical plan.
//!
//! Tables are resolved first (the only asynchronous step); the rest is a
//! walk of the tabular expression that builds the plan operator by
//! operator with DataFusion's `LogicalPlanBuilder`, calling functions from
//! the session's own registry (so the gateway's guarded functions are the
//! ones planned). Every name is checked here against the input's schema,
//! so an unknown column is reported at the place it is written, with the
//! nearest known name.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use chrono::{DateTime, Utc};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::Sort;
use datafusion::logical_expr::{
    lit, when, Expr as DfExpr, ExprFunctionExt, ExprSchemable, JoinType, LogicalPlan,
    LogicalPlanBuilder, TableSource,
};

use crate::ast::*;
use crate::error::{ErrorKind, KqlError};
use crate::Options;

type R<T> = Result<T, KqlError>;

/// The most expression nodes a `let` value may grow to once the lets it
/// names are written into it (each use copies them).
const MAX_LET_NODES: usize = 10_000;

/// The most rows `range` makes (SQL's `range()` has the same limit).
pub(crate) const MAX_RANGE_ROWS: usize = 1_000_000;

pub(crate) async fn plan(
    script: &Script,
    state: &SessionState,
    options: &Options,
) -> R<LogicalPlan> {
    let text = &script.text;
    let mut tables = HashMap::new();
    for t in script.tables() {
        let key = table_key(&t);
        if tables.contains_key(&key) {
            continue;
        }
        let r = match (&t.catalog, &t.workspace) {
            (Some(c), Some(w)) => TableReference::full(c.as_str(), w.as_str(), t.table.as_str()),
            (None, Some(w)) => TableReference::partial(w.as_str(), t.table.as_str()),
            _ => TableReference::bare(t.table.as_str()),
        };
        let missing = || {
            KqlError::at(
                ErrorKind::UnknownTable,
                text,
                t.offset,
                format!("table '{}' does not exist", t.table),
            )
        };
        let schema = state.schema_for_ref(r.clone()).map_err(|_| missing())?;
        let provider = schema
            .table(&t.table)
            .await
            .map_err(|e| KqlError::at(ErrorKind::UnknownTable, text, t.offset, e.to_string()))?;
        let Some(provider) = provider else {
            let names = schema.table_names();
            return Err(missing().suggest(&t.table, names.iter().map(String::as_str)));
        };
        tables.insert(key, (r, provider_as_source(provider)));
    }
    let now = match script.query_now.or(options.now) {
        Some(t) => lit(timestamp(t)),
        None => state
            .scalar_functions()
            .get("now")
            .map(|f| f.call(vec![]))
            .ok_or_else(|| KqlError::at(ErrorKind::Syntax, text, 0, "now() is not available"))?,
    };
    let mut cx = Cx {
        text,
        state,
        tables,
        scalars: HashMap::new(),
        tabulars: HashMap::new(),
        now,
    };
    for l in &script.lets {
        match &l.value {
            LetValue::Scalar(e) => {
                // The value sees the bindings made before it (let n = n * 2
                // is the earlier n doubled): earlier names are written in
                // now, so no binding can refer to itself.
                let mut budget = MAX_LET_NODES;
                let value = cx.substitute(e, &mut budget)?;
                cx.scalars.insert(l.name.clone(), value);
            }
            LetValue::Tabular(t) => {
                let node = cx.tabular(t)?;
                cx.tabulars.insert(l.name.clone(), node);
            }
        }
    }
    let Some(query) = &script.query else {
        return Err(KqlError::at(
            ErrorKind::Syntax,
            text,
            text.len(),
            "the query has no tabular expression to run",
        ));
    };
    let node = cx.tabular(query)?;
    let builder = LogicalPlanBuilder::from(node.plan);
    let builder = if script.explain {
        builder.explain(false, false).map_err(|e| cx.df(0, e))?
    } else {
        builder
    };
    builder.build().map_err(|e| cx.df(0, e))
}

fn df_error(text: &str, offset: usize, e: datafusion::error::DataFusionError) -> KqlError {
    let message = e.strip_backtrace();
    let message = message
        .strip_prefix("Error during planning: ")
        .unwrap_or(&message)
        .to_string();
    KqlError::at(ErrorKind::Syntax, text, offset, message)
}

fn table_key(t: &crate::TableName) -> String {
    format!(
        "{}.{}.{}",
        t.catalog.as_deref().unwrap_or(""),
        t.workspace.as_deref().unwrap_or(""),
        t.table
    )
}

fn timestamp(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("UTC".into()))
}

fn interval(nanos: i64) -> ScalarValue {
    ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, nanos)))
}

/// A planned tabular expression, and the order its rows are in (what
/// `serialize`, `row_number()`, `prev()` and `next()` follow).
#[derive(Clone)]
struct Node {
    plan: LogicalPlan,
    order: Vec<Sort>,
}

struct Cx<'a> {
    text: &'a str,
    state: &'a SessionState,
    tables: HashMap<String, (TableReference, Arc<dyn TableSource>)>,
    scalars: HashMap<String, Expr>,
    tabulars: HashMap<String, Node>,
    now: DfExpr,
}

/// Where aggregate and window calls go while an expression is planned:
/// each becomes a column of the aggregate (or window) node, and the
/// expression refers to it by name.
enum Collect<'c> {
    None,
    Aggregates(&'c mut Vec<DfExpr>, &'c DFSchema),
    Windows(&'c mut Vec<DfExpr>, &'c [Sort]),
}

const AGGREGATES: &[&str] = &[
    "count",
    "countif",
    "dcount",
    "dcountif",
    "sum",
    "sumif",
    "avg",
    "avgif",
    "min",
    "minif",
    "max",
    "maxif",
    "arg_max",
    "arg_min",
    "make_set",
    "make_list",
    "make_set_if",
    "make_list_if",
    "percentile",
    "percentiles",
    "stdev",
    "stdevif",
    "variance",
    "varianceif",
    "take_any",
    "any",
];

const WINDOWS: &[&str] = &["row_number", "prev", "next"];

/// Scalar functions planned (for "did you mean").
const FUNCTIONS: &[&str] = &[
    "strcat",
    "strcat_delim",
    "split",
    "extract",
    "tolower",
    "toupper",
    "trim",
    "trim_start",
    "trim_end",
    "replace_string",
    "replace_regex",
    "substring",
    "strlen",
    "indexof",
    "reverse",
    "ago",
    "now",
    "bin",
    "floor",
    "startofday",
    "startofweek",
    "startofmonth",
    "startofyear",
    "endofday",
    "datetime_diff",
    "datetime_add",
    "format_datetime",
    "dayofweek",
    "dayofmonth",
    "dayofyear",
    "hourofday",
    "getyear",
    "getmonth",
    "monthofyear",
    "tostring",
    "toint",
    "tolong",
    "todouble",
    "toreal",
    "todatetime",
    "totimespan",
    "tobool",
    "toboolean",
    "todecimal",
    "iff",
    "iif",
    "case",
    "coalesce",
    "isempty",
    "isnotempty",
    "isnull",
    "isnotnull",
    "parse_json",
    "todynamic",
    "bag_keys",
    "array_length",
    "round",
    "abs",
    "ceiling",
    "sqrt",
    "exp",
    "log",
    "log10",
    "pow",
    "not",
    "strcmp",
    "countof",
    "has_any_index",
    "isnan",
    "make_datetime",
    "unixtime_seconds_todatetime",
    "unixtime_milliseconds_todatetime",
    "datetime_part",
    "tohex",
    "hash",
    "pack_array",
    "array_concat",
    "set_has_element",
    "array_index_of",
    "ipv4_is_private",
    "string_size",
    "min_of",
    "max_of",
    "binary_and",
    "binary_or",
    "sign",
    "bin_at",
];

impl<'a> Cx<'a> {
    fn err(&self, kind: ErrorKind, offset: usize, message: impl Into<String>) -> KqlError {
        KqlError::at(kind, self.text, offset, message)
    }

    fn syntax(&self, offset: usize, message: impl Into<String>) -> KqlError {
        self.err(ErrorKind::Syntax, offset, message)
    }

    /// A DataFusion error while planning what is written at `offset`.
    fn df(&self, offset: usize, e: datafusion::error::DataFusionError) -> KqlError {
        df_error(self.text, offset, e)
    }

    fn udf(&self, name: &str, args: Vec<DfExpr>, offset: usize) -> R<DfExpr> {
        let f = self
            .state
            .scalar_functions()
            .get(name)
            .cloned()
            .or_else(|| crate::functions::udf(name))
            .ok_or_else(|| self.syntax(offset, format!("the function {name} is not available")))?;
        Ok(f.call(args))
    }

    fn udaf(&self, name: &str, args: Vec<DfExpr>, offset: usize) -> R<DfExpr> {
        let f = self
            .state
            .aggregate_functions()
            .get(name)
            .cloned()
            .ok_or_else(|| self.syntax(offset, format!("the aggregate {name} is not available")))?;
        Ok(f.call(args))
    }

    fn udwf(&self, name: &str, args: Vec<DfExpr>, offset: usize) -> R<DfExpr> {
        let f = self
            .state
            .window_functions()
            .get(name)
            .cloned()
            .ok_or_else(|| {
                self.syntax(
                    offset,
                    format!("the window function {name} is not available"),
                )
            })?;
        Ok(f.call(args))
    }

    // ---- tabular ----

    #[recursive::recursive]
    fn tabular(&mut self, t: &Tabular) -> R<Node> {
        let mut node = self.source(&t.source)?;
        for op in &t.ops {
            node = self.operator(node, op)?;
        }
        Ok(node)
    }

    fn source(&mut self, s: &Source) -> R<Node> {
        let plan = match s {
            Source::Table(t) => {
                if t.catalog.is_none() && t.workspace.is_none() {
                    if let Some(n) = self.tabulars.get(&t.table) {
                        return Ok(n.clone());
                    }
                }
                let (r, source) = self.tables.get(&table_key(t)).cloned().ok_or_else(|| {
                    self.err(
                        ErrorKind::UnknownTable,
                        t.offset,
                        format!("table '{}' does not exist", t.table),
                    )
                })?;
                LogicalPlanBuilder::scan(r.clone(), source, None)
                    .map_err(|e| self.df(t.offset, e))?
                    .build()
                    .map_err(|e| self.df(t.offset, e))?
            }
            Source::Datatable { columns, values } => {
                let rows: Vec<Vec<DfExpr>> = values
                    .chunks(columns.len())
                    .map(|row| {
                        row.iter()
                            .zip(columns)
                            .map(|(v, (_, ty))| {
                                let e = self.constant(v)?;
                                Ok(cast_to(e, *ty))
                            })
                            .collect::<R<Vec<_>>>()
                    })
                    .collect::<R<_>>()?;
                if rows.is_empty() {
                    let fields: Vec<DfExpr> = columns
                        .iter()
                        .map(|(n, ty)| cast_to(lit(ScalarValue::Null), *ty).alias(n))
                        .collect();
                    LogicalPlanBuilder::empty(true)
                        .project(fields)
                        .and_then(|b| b.limit(0, Some(0)))
                        .and_then(|b| b.build())
                        .map_err(|e| self.df(0, e))?
                } else {
                    let values = LogicalPlanBuilder::values(rows)
                        .map_err(|e| self.df(0, e))?
                        .build()
                        .map_err(|e| self.df(0, e))?;
                    let names: Vec<String> = values
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    let proj: Vec<DfExpr> = names
                        .iter()
                        .zip(columns)
                        .map(|(vn, (n, ty))| cast_to(ucol(vn.as_str()), *ty).alias(n))
                        .collect();
                    LogicalPlanBuilder::from(values)
                        .project(proj)
                        .and_then(|b| b.build())
                        .map_err(|e| self.df(0, e))?
                }
            }
            Source::Range {
                name,
                from,
                to,
                step,
            } => {
                let empty = DFSchema::empty();
                self.check_range(from, to, step)?;
                let f = self.scalar(from, &empty, &mut Collect::None)?;
                let t = self.scalar(to, &empty, &mut Collect::None)?;
                let s = self.scalar(step, &empty, &mut Collect::None)?;
                let series = self.udf("generate_series", vec![f, t, s], from.offset)?;
                let plan = LogicalPlanBuilder::empty(true)
                    .project(vec![series.alias(name)])
                    .and_then(|b| b.unnest_column(name.as_str()))
                    .and_then(|b| b.build())
                    .map_err(|e| self.df(from.offset, e))?;
                // range's rows come in order: serialize and prev() follow it.
                return Ok(Node {
                    plan,
                    order: vec![ucol(name).sort(true, false)],
                });
            }
            Source::Print(exprs) => {
                let empty = DFSchema::empty();
                let mut out = Vec::new();
                for (i, n) in exprs.iter().enumerate() {
                    let e = self.scalar(&n.expr, &empty, &mut Collect::None)?;
                    let name = n.name.clone().unwrap_or_else(|| format!("print_{i}"));
                    out.push(e.alias(name));
                }
                LogicalPlanBuilder::empty(true)
                    .project(out)
                    .and_then(|b| b.build())
                    .map_err(|e| self.df(0, e))?
            }
            Source::Union {
                kind_outer,
                with_source,
                tables,
            } => {
                let mut inputs = Vec::new();
                for t in tables {
                    inputs.push((self.tabular(t)?.plan, union_name(t)));
                }
                self.union(inputs, *kind_outer, with_source.as_deref())?
            }
        };
        Ok(Node {
            plan,
            order: Vec::new(),
        })
    }

    /// `e` with the scalar lets bound so far written in, counting nodes
    /// against `budget`.
    #[recursive::recursive]
    fn substitute(&self, e: &Expr, budget: &mut usize) -> R<Expr> {
        let too_big = || {
            self.syntax(
                e.offset,
                format!("this let grows past {MAX_LET_NODES} operations once the lets it names are written in"),
            )
        };
        *budget = budget.checked_sub(1).ok_or_else(too_big)?;
        let kind = match &e.kind {
            ExprKind::Ident(n) => match self.scalars.get(n) {
                Some(v) => {
                    // Bound values are written in already: copy, counted.
                    *budget = budget.checked_sub(count_nodes(v)).ok_or_else(too_big)?;
                    return Ok(v.clone());
                }
                None => e.kind.clone(),
            },
            ExprKind::Member(a, k) => {
                ExprKind::Member(Box::new(self.substitute(a, budget)?), k.clone())
            }
            ExprKind::Index(a, b) => ExprKind::Index(
                Box::new(self.substitute(a, budget)?),
                Box::new(self.substitute(b, budget)?),
            ),
            ExprKind::Neg(a) => ExprKind::Neg(Box::new(self.substitute(a, budget)?)),
            ExprKind::Binary(op, a, b) => ExprKind::Binary(
                *op,
                Box::new(self.substitute(a, budget)?),
                Box::new(self.substitute(b, budget)?),
            ),
            ExprKind::Call(f, args) => ExprKind::Call(
                f.clone(),
                args.iter()
                    .map(|a| self.substitute(a, budget))
                    .collect::<R<_>>()?,
            ),
            ExprKind::StrOp {
                op,
                negated,
                case_sensitive,
                left,
                right,
            } => ExprKind::StrOp {
                op: *op,
                negated: *negated,
                case_sensitive: *case_sensitive,
                left: Box::new(self.substitute(left, budget)?),
                right: Box::new(self.substitute(right, budget)?),
            },
            ExprKind::In {
                expr,
                list,
                negated,
                case_insensitive,
            } => ExprKind::In {
                expr: Box::new(self.substitute(expr, budget)?),
                list: list
                    .iter()
                    .map(|a| self.substitute(a, budget))
                    .collect::<R<_>>()?,
                negated: *negated,
                case_insensitive: *case_insensitive,
            },
            ExprKind::HasAny { all, expr, list } => ExprKind::HasAny {
                all: *all,
                expr: Box::new(self.substitute(expr, budget)?),
                list: list
                    .iter()
                    .map(|a| self.substitute(a, budget))
                    .collect::<R<_>>()?,
            },
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => ExprKind::Between {
                expr: Box::new(self.substitute(expr, budget)?),
                low: Box::new(self.substitute(low, budget)?),
                high: Box::new(self.substitute(high, budget)?),
                negated: *negated,
            },
            other => other.clone(),
        };
        Ok(Expr {
            offset: e.offset,
            kind,
        })
    }

    /// `range` makes its rows where it is planned: its bounds must be
    /// constants, and it makes at most [`MAX_RANGE_ROWS`] rows, as SQL's
    /// `range()` does.
    fn check_range(&self, from: &Expr, to: &Expr, step: &Expr) -> R<()> {
        let (Some(f), Some(t), Some(s)) = (
            self.const_num(from),
            self.const_num(to),
            self.const_num(step),
        ) else {
            return Err(self.syntax(from.offset, "range's from, to and step must be constants (numbers, datetimes, timespans, ago(), now())"));
        };
        if s == 0.0 || (t - f) / s < 0.0 {
            return Err(self.syntax(
                step.offset,
                "range's step must lead from 'from' to 'to' (and not be 0)",
            ));
        }
        let rows = ((t - f) / s).floor() + 1.0;
        if rows > MAX_RANGE_ROWS as f64 {
            return Err(self.syntax(
                from.offset,
                format!(
                    "range would make {rows:.0} rows; at most {MAX_RANGE_ROWS} (use a larger step)"
                ),
            ));
        }
        Ok(())
    }

    /// A constant as a number: longs and reals, datetimes and timespans in
    /// nanoseconds, `ago()` and `now()` at the pinned time or this one.
    #[recursive::recursive]
    fn const_num(&self, e: &Expr) -> Option<f64> {
        let now = || -> f64 {
            match &self.now {
                DfExpr::Literal(ScalarValue::TimestampMicrosecond(Some(us), _), _) => {
                    *us as f64 * 1e3
                }
                _ => Utc::now().timestamp_micros() as f64 * 1e3,
            }
        };
        match &e.kind {
            ExprKind::Long(v) => Some(*v as f64),
            ExprKind::Real(v) => Some(*v),
            ExprKind::Timespan(n) => Some(*n as f64),
            ExprKind::DateTime(t) => Some(t.timestamp_micros() as f64 * 1e3),
            ExprKind::Ident(n) => self.scalars.get(n).and_then(|v| self.const_num(v)),
            ExprKind::Neg(x) => self.const_num(x).map(|v| -v),
            ExprKind::Binary(BinOp::Add, a, b) => Some(self.const_num(a)? + self.const_num(b)?),
            ExprKind::Binary(BinOp::Sub, a, b) => Some(self.const_num(a)? - self.const_num(b)?),
            ExprKind::Binary(BinOp::Mul, a, b) => Some(self.const_num(a)? * self.const_num(b)?),
            ExprKind::Call(f, args) if f.eq_ignore_ascii_case("now") && args.is_empty() => {
                Some(now())
            }
            ExprKind::Call(f, args) if f.eq_ignore_ascii_case("ago") && args.len() == 1 => {
                Some(now() - self.const_num(&args[0])?)
            }
            _ => None,
        }
    }

    fn operator(&mut self, node: Node, op: &Op) -> R<Node> {
        let at = op.offset;
        let schema = Arc::clone(node.plan.schema());
        let order = node.order.clone();
        let builder = LogicalPlanBuilder::from(node.plan);
        let text = self.text;
        let map = |e| df_error(text, at, e);
        let (plan, order) = match &op.kind {
            OpKind::Where(e) => {
                let pred = self.scalar(e, &schema, &mut Collect::None)?;
                let pred = self.boolean(pred, &schema, e.offset)?;
                (
                    builder.filter(pred).and_then(|b| b.build()).map_err(map)?,
                    order,
                )
            }
            OpKind::Project(items) => {
                let mut exprs = Vec::new();
                let mut n = 0;
                for item in items {
                    if let ExprKind::Star = item.expr.kind {
                        for (q, f) in schema.iter() {
                            exprs.push(DfExpr::Column(Column::from((q, f))));
                        }
                        continue;
                    }
                    let e = self.scalar(&item.expr, &schema, &mut Collect::None)?;
                    exprs.push(e.alias(self.name_of(item, &mut n)));
                }
                let b = self.project_unique(builder, exprs, at)?;
                (b, Vec::new())
            }
            OpKind::ProjectAway(names) => {
                let drop = self.matching(&schema, names)?;
                let keep: Vec<DfExpr> = schema
                    .iter()
                    .filter(|(_, f)| !drop.contains(f.name()))
                    .map(|(q, f)| DfExpr::Column(Column::from((q, f))))
                    .collect();
                (
                    builder.project(keep).and_then(|b| b.build()).map_err(map)?,
                    order,
                )
            }
            OpKind::ProjectKeep(names) => {
                let keep_names = self.matching(&schema, names)?;
                let keep: Vec<DfExpr> = schema
                    .iter()
                    .filter(|(_, f)| keep_names.contains(f.name()))
                    .map(|(q, f)| DfExpr::Column(Column::from((q, f))))
                    .collect();
                (
                    builder.project(keep).and_then(|b| b.build()).map_err(map)?,
                    order,
                )
            }
            OpKind::ProjectReorder(names) => {
                let first = self.matching_ordered(&schema, names)?;
                let mut exprs: Vec<DfExpr> = Vec::new();
                for n in &first {
                    let (q, f) = schema
                        .iter()
                        .find(|(_, f)| f.name() == n)
                        .expect("matched above");
                    exprs.push(DfExpr::Column(Column::from((q, f))));
                }
                for (q, f) in schema.iter() {
                    if !first.contains(f.name()) {
                        exprs.push(DfExpr::Column(Column::from((q, f))));
                    }
                }
                (
                    builder
                        .project(exprs)
                        .and_then(|b| b.build())
                        .map_err(map)?,
                    order,
                )
            }
            OpKind::ProjectRename(renames) => {
                let mut map_names: HashMap<&str, &str> = HashMap::new();
                for (new, old, rat) in renames {
                    self.column(&schema, old, *rat)?;
                    map_names.insert(old.as_str(), new.as_str());
                }
                let exprs: Vec<DfExpr> = schema
                    .iter()
                    .map(|(q, f)| {
                        let c = DfExpr::Column(Column::from((q, f)));
                        match map_names.get(f.name().as_str()) {
                            Some(new) => c.alias(*new),
                            None => c,
                        }
                    })
                    .collect();
                let b = self.project_unique(builder, exprs, at)?;
                (b, Vec::new())
            }
            OpKind::Extend(items) if items.len() > 1 => {
                // Later items may use earlier ones: extend a = …, b = a * 2.
                let mut node = Node {
                    plan: builder.build().map_err(map)?,
                    order,
                };
                let mut unnamed = 0;
                for item in items {
                    let mut item = item.clone();
                    if item.name.is_none() && !matches!(item.expr.kind, ExprKind::Ident(_)) {
                        item.name = Some(self.name_of(&item, &mut unnamed));
                    }
                    let one = Op {
                        offset: at,
                        kind: OpKind::Extend(vec![item]),
                    };
                    node = self.operator(node, &one)?;
                }
                return Ok(node);
            }
            OpKind::Extend(items) => {
                let mut windows = Vec::new();
                let mut new: Vec<(String, DfExpr)> = Vec::new();
                let mut n = 0;
                for item in items {
                    let e = self.scalar(
                        &item.expr,
                        &schema,
                        &mut Collect::Windows(&mut windows, &order),
                    )?;
                    new.push((self.name_of(item, &mut n), e));
                }
                let builder = if windows.is_empty() {
                    builder
                } else {
                    builder.window(windows).map_err(map)?
                };
                let mut exprs: Vec<DfExpr> = Vec::new();
                for (q, f) in schema.iter() {
                    match new.iter().position(|(n, _)| n == f.name()) {
                        Some(i) => exprs.push(new[i].1.clone().alias(f.name())),
                        None => exprs.push(DfExpr::Column(Column::from((q, f)))),
                    }
                }
                for (name, e) in &new {
                    if schema.field_with_unqualified_name(name).is_err() {
                        exprs.push(e.clone().alias(name));
                    }
                }
                (
                    builder
                        .project(exprs)
                        .and_then(|b| b.build())
                        .map_err(map)?,
                    order,
                )
            }
            OpKind::Summarize { aggregates, by } => (
                self.summarize(builder, &schema, aggregates, by, at)?,
                Vec::new(),
            ),
            OpKind::Count => {
                let count = self.udaf("count", vec![lit(1i64)], at)?.alias("Count");
                (
                    builder
                        .aggregate(Vec::<DfExpr>::new(), vec![count])
                        .and_then(|b| b.build())
                        .map_err(map)?,
                    Vec::new(),
                )
            }
            OpKind::Take(n) => {
                let n = self.count_arg(n)?;
                (
                    builder
                        .limit(0, Some(n))
                        .and_then(|b| b.build())
                        .map_err(map)?,
                    order,
                )
            }
            OpKind::Top { count, by } => {
                let n = self.count_arg(count)?;
                let keys = self.sort_keys(by, &schema)?;
                (
                    builder
                        .sort(keys.clone())
                        .and_then(|b| b.limit(0, Some(n)))
                        .and_then(|b| b.build())
                        .map_err(map)?,
                    keys,
                )
            }
            OpKind::Sort(by) => {
                let keys = self.sort_keys(by, &schema)?;
                (
                    builder
                        .sort(keys.clone())
                        .and_then(|b| b.build())
                        .map_err(map)?,
                    keys,
                )
            }
            OpKind::Distinct(items) => {
                if items.is_empty() {
                    (
                        builder.distinct().and_then(|b| b.build()).map_err(map)?,
                        Vec::new(),
                    )
                } else {
                    let mut n = 0;
                    let mut exprs = Vec::new();
                    for item in items {
                        let e = self.scalar(&item.expr, &schema, &mut Collect::None)?;
                        exprs.push(e.alias(self.name_of(item, &mut n)));
                    }
                    (
                        builder
                            .aggregate(exprs, Vec::<DfExpr>::new())
                            .and_then(|b| b.build())
                            .map_err(map)?,
                        Vec::new(),
                    )
                }
            }
            OpKind::Join { kind, right, on } => {
                let right = self.tabular(right)?;
                (
                    self.join(builder.build().map_err(map)?, right.plan, *kind, on, at)?,
                    Vec::new(),
                )
            }
            OpKind::Lookup { outer, right, on } => {
                let right = self.tabular(right)?;
                (
                    self.lookup(builder.build().map_err(map)?, right.plan, *outer, on, at)?,
                    Vec::new(),
                )
            }
            OpKind::Union {
                kind_outer,
                with_source,
                tables,
            } => {
                let mut inputs = vec![(builder.build().map_err(map)?, "union_arg0".to_string())];
                for t in tables {
                    inputs.push((self.tabular(t)?.plan, union_name(t)));
                }
                (
                    self.union(inputs, *kind_outer, with_source.as_deref())?,
                    Vec::new(),
                )
            }
            OpKind::MvExpand { columns, limit } => {
                if limit.is_some() {
                    return Err(self.err(
                        ErrorKind::Unsupported,
                        at,
                        "mv-expand limit is not supported",
                    ));
                }
                (self.mv_expand(builder, &schema, columns, at)?, Vec::new())
            }
            OpKind::Parse {
                source,
                parts,
                regex,
            } => (
                self.parse_op(builder, &schema, source, parts, *regex)?,
                order,
            ),
            OpKind::As(name) => {
                let plan = builder.build().map_err(map)?;
                self.tabulars.insert(
                    name.clone(),
                    Node {
                        plan: plan.clone(),
                        order: order.clone(),
                    },
                );
                (plan, order)
            }
            OpKind::Serialize(items) => {
                if items.is_empty() {
                    (builder.build().map_err(map)?, order)
                } else {
                    let extend = Op {
                        offset: at,
                        kind: OpKind::Extend(items.clone()),
                    };
                    let node = Node {
                        plan: builder.build().map_err(map)?,
                        order,
                    };
                    return self.operator(node, &extend);
                }
            }
            OpKind::GetSchema => {
                let mut rows = Vec::new();
                for (i, f) in schema.fields().iter().enumerate() {
                    rows.push(vec![
                        lit(f.name().as_str()),
                        lit(i as i32),
                        lit(f.data_type().to_string()),
                        lit(kql_type_name(f.data_type())),
                    ]);
                }
                if rows.is_empty() {
                    return Err(self.syntax(at, "getschema of an input with no columns"));
                }
                let values = LogicalPlanBuilder::values(rows)
                    .and_then(|b| b.build())
                    .map_err(map)?;
                let plan = LogicalPlanBuilder::from(values)
                    .project(vec![
                        ucol("column1").alias("ColumnName"),
                        ucol("column2").alias("ColumnOrdinal"),
                        ucol("column3").alias("DataType"),
                        ucol("column4").alias("ColumnType"),
                    ])
                    .and_then(|b| b.build())
                    .map_err(map)?;
                (plan, Vec::new())
            }
        };
        Ok(Node { plan, order })
    }

    /// Projects `exprs`, refusing two output columns of one name.
    fn project_unique(
        &self,
        builder: LogicalPlanBuilder,
        exprs: Vec<DfExpr>,
        at: usize,
    ) -> R<LogicalPlan> {
        let mut seen = std::collections::HashSet::new();
        for e in &exprs {
            let name = e.schema_name().to_string();
            let name = match e {
                DfExpr::Alias(a) => a.name.clone(),
                DfExpr::Column(c) => c.name.clone(),
                _ => name,
            };
            if !seen.insert(name.clone()) {
                return Err(self.syntax(
                    at,
                    format!(
                        "the column '{name}' would appear twice; rename one with 'NewName = …'"
                    ),
                ));
            }
        }
        builder
            .project(exprs)
            .and_then(|b| b.build())
            .map_err(|e| self.df(at, e))
    }

    /// The output name of a projected item: its own, the column it reads,
    /// `Parent_key` for `Parent.key`, else `Column1`, `Column2`…
    fn name_of(&self, item: &NamedExpr, n: &mut usize) -> String {
        if let Some(name) = &item.name {
            return name.clone();
        }
        match &item.expr.kind {
            ExprKind::Ident(c) => c.clone(),
            ExprKind::Member(base, key) => match &base.kind {
                ExprKind::Ident(c) => format!("{c}_{key}"),
                _ => {
                    *n += 1;
                    format!("Column{n}")
                }
            },
            ExprKind::Index(base, idx) => match (&base.kind, &idx.kind) {
                (ExprKind::Ident(c), ExprKind::Str(k)) => format!("{c}_{k}"),
                _ => {
                    *n += 1;
                    format!("Column{n}")
                }
            },
            _ => {
                *n += 1;
                format!("Column{n}")
            }
        }
    }

    fn matching(
        &self,
        schema: &DFSchema,
        names: &[(String, usize)],
    ) -> R<std::collections::HashSet<String>> {
        Ok(self.matching_ordered(schema, names)?.into_iter().collect())
    }

    /// Column names matching each name or wildcard, in the order given.
    fn matching_ordered(&self, schema: &DFSchema, names: &[(String, usize)]) -> R<Vec<String>> {
        let mut out = Vec::new();
        for (pattern, at) in names {
            if pattern.contains('*') {
                for f in schema.fields() {
                    if glob(pattern, f.name()) && !out.contains(f.name()) {
                        out.push(f.name().clone());
                    }
                }
            } else {
                self.column(schema, pattern, *at)?;
                if !out.contains(pattern) {
                    out.push(pattern.clone());
                }
            }
        }
        Ok(out)
    }

    fn count_arg(&self, e: &Expr) -> R<usize> {
        match self.constant_value(e)? {
            ScalarValue::Int64(Some(v)) if v >= 0 => Ok(v as usize),
            _ => Err(self.syntax(e.offset, "expected a whole number of rows (0 or more)")),
        }
    }

    fn sort_keys(&self, keys: &[SortKey], schema: &DFSchema) -> R<Vec<Sort>> {
        keys.iter()
            .map(|k| {
                let e = self.scalar(&k.expr, schema, &mut Collect::None)?;
                // KQL: nulls first when ascending, last when descending.
                let nulls_first = k.nulls_first.unwrap_or(!k.desc);
                Ok(e.sort(!k.desc, nulls_first))
            })
            .collect()
    }

    fn summarize(
        &self,
        builder: LogicalPlanBuilder,
        schema: &DFSchema,
        aggregates: &[NamedExpr],
        by: &[NamedExpr],
        at: usize,
    ) -> R<LogicalPlan> {
        let mut groups = Vec::new();
        let mut group_names = Vec::new();
        let mut n = 0;
        for item in by {
            let e = self.scalar(&item.expr, schema, &mut Collect::None)?;
            let name = match (&item.name, &item.expr.kind) {
                (Some(n), _) => n.clone(),
                // bin(TimeGenerated, 1h) keeps the column's name.
                (None, ExprKind::Call(f, args))
                    if matches!(
                        f.to_ascii_lowercase().as_str(),
                        "bin" | "floor" | "startofday" | "startofweek" | "startofmonth" | "bin_at"
                    ) && matches!(args.first().map(|a| &a.kind), Some(ExprKind::Ident(_))) =>
                {
                    match &args[0].kind {
                        ExprKind::Ident(c) => c.clone(),
                        _ => unreachable!(),
                    }
                }
                _ => self.name_of(item, &mut n),
            };
            group_names.push(name.clone());
            groups.push(e.alias(name));
        }
        let mut aggs: Vec<DfExpr> = Vec::new();
        let mut finals: Vec<(String, DfExpr)> = Vec::new();
        for item in aggregates {
            // arg_max / arg_min and percentiles make several columns.
            if let ExprKind::Call(f, args) = &item.expr.kind {
                let lf = f.to_ascii_lowercase();
                if lf == "arg_max" || lf == "arg_min" {
                    self.arg_extreme(
                        &lf == "arg_max",
                        args,
                        schema,
                        &group_names,
                        &mut aggs,
                        &mut finals,
                        item,
                    )?;
                    continue;
                }
                if lf == "percentiles" {
                    let Some(x) = args.first() else {
                        return Err(self.syntax(
                            item.expr.offset,
                            "percentiles(Expr, P1, P2, …) needs an expression and percentages",
                        ));
                    };
                    let base = match &x.kind {
                        ExprKind::Ident(c) => c.clone(),
                        _ => String::new(),
                    };
                    for p in &args[1..] {
                        let call = Expr {
                            offset: item.expr.offset,
                            kind: ExprKind::Call("percentile".into(), vec![x.clone(), p.clone()]),
                        };
                        let e = self.scalar(
                            &call,
                            schema,
                            &mut Collect::Aggregates(&mut aggs, schema),
                        )?;
                        let pv = match self.constant_value(p)? {
                            ScalarValue::Int64(Some(v)) => v.to_string(),
                            ScalarValue::Float64(Some(v)) => v.to_string().replace('.', "_"),
                            _ => "p".into(),
                        };
                        finals.push((format!("percentile_{base}_{pv}"), e));
                    }
                    continue;
                }
            }
            let name = match &item.name {
                Some(n) => n.clone(),
                None => aggregate_name(&item.expr).unwrap_or_else(|| {
                    n += 1;
                    format!("Column{n}")
                }),
            };
            let before = aggs.len();
            let e = self.scalar(
                &item.expr,
                schema,
                &mut Collect::Aggregates(&mut aggs, schema),
            )?;
            if aggs.len() == before {
                return Err(self.syntax(item.expr.offset, "summarize computes aggregates: this expression has none (count(), sum(x), …); group by it with 'by'"));
            }
            finals.push((name, e));
        }
        let agg = builder
            .aggregate(groups, aggs)
            .map_err(|e| self.df(at, e))?;
        let mut out: Vec<DfExpr> = group_names
            .iter()
            .map(|n| DfExpr::Column(Column::new_unqualified(n)))
            .collect();
        for (name, e) in finals {
            out.push(unqualify(e).alias(name));
        }
        let plan = agg.build().map_err(|e| self.df(at, e))?;
        self.project_unique(LogicalPlanBuilder::from(plan), out, at)
    }

    #[allow(clippy::too_many_arguments)]
    fn arg_extreme(
        &self,
        max: bool,
        args: &[Expr],
        schema: &DFSchema,
        group_names: &[String],
        aggs: &mut Vec<DfExpr>,
        finals: &mut Vec<(String, DfExpr)>,
        item: &NamedExpr,
    ) -> R<()> {
        let at = item.expr.offset;
        let fname = if max { "arg_max" } else { "arg_min" };
        let Some(target) = args.first() else {
            return Err(self.syntax(
                at,
                format!(
                    "{fname}(Expr, Col1, …) needs the expression to {}",
                    if max { "maximise" } else { "minimise" }
                ),
            ));
        };
        let t = self.scalar(target, schema, &mut Collect::None)?;
        let t_name = match (&item.name, &target.kind) {
            (Some(n), _) => n.clone(),
            (None, ExprKind::Ident(c)) => c.clone(),
            _ => format!("{}_", if max { "max" } else { "min" }),
        };
        let extreme = self.udaf(if max { "max" } else { "min" }, vec![t.clone()], at)?;
        let alias = format!("__kql_agg{}", aggs.len());
        aggs.push(extreme.alias(&alias));
        finals.push((t_name.clone(), ucol(alias.as_str())));
        let mut cols: Vec<(String, DfExpr)> = Vec::new();
        for a in &args[1..] {
            if let ExprKind::Star = a.kind {
                for (q, f) in schema.iter() {
                    let name = f.name();
                    if group_names.contains(name)
                        || *name == t_name
                        || cols.iter().any(|(n, _)| n == name)
                    {
                        continue;
                    }
                    cols.push((name.clone(), DfExpr::Column(Column::from((q, f)))));
                }
            } else {
                let mut m = 0;
                let name = self.name_of(
                    &NamedExpr {
                        name: None,
                        expr: a.clone(),
                    },
                    &mut m,
                );
                let e = self.scalar(a, schema, &mut Collect::None)?;
                cols.push((name, e));
            }
        }
        for (name, e) in cols {
            // The value on the row where the target is at its extreme
            // (non-null targets first).
            let v = self
                .udaf("first_value", vec![e], at)?
                .order_by(vec![t.clone().sort(!max, false)])
                .build()
                .map_err(|e| self.df(at, e))?;
            let alias = format!("__kql_agg{}", aggs.len());
            aggs.push(v.alias(&alias));
            finals.push((name, ucol(alias.as_str())));
        }
        Ok(())
    }

    fn join(
        &self,
        left: LogicalPlan,
        right: LogicalPlan,
        kind: JoinKind,
        on: &[JoinOn],
        at: usize,
    ) -> R<LogicalPlan> {
        let map = |e| self.df(at, e);
        let (lkeys, rkeys) = self.join_keys(&left, &right, on)?;
        let left = if kind == JoinKind::InnerUnique {
            // innerunique: one left row per key (any one), then inner.
            let keys: Vec<DfExpr> = lkeys.iter().map(|k| ucol(k.as_str())).collect();
            let all: Vec<DfExpr> = left
                .schema()
                .iter()
                .map(|(q, f)| DfExpr::Column(Column::from((q, f))))
                .collect();
            LogicalPlanBuilder::from(left)
                .distinct_on(keys, all, None)
                .and_then(|b| b.build())
                .map_err(map)?
        } else {
            left
        };
        let join_type = match kind {
            JoinKind::InnerUnique | JoinKind::Inner => JoinType::Inner,
            JoinKind::LeftOuter => JoinType::Left,
            JoinKind::RightOuter => JoinType::Right,
            JoinKind::FullOuter => JoinType::Full,
            JoinKind::LeftAnti => JoinType::LeftAnti,
            JoinKind::RightAnti => JoinType::RightAnti,
            JoinKind::LeftSemi => JoinType::LeftSemi,
            JoinKind::RightSemi => JoinType::RightSemi,
        };
        let left_names: Vec<String> = left
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let right_names: Vec<String> = right
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let l = LogicalPlanBuilder::from(left)
            .alias("__kql_left")
            .map_err(map)?
            .build()
            .map_err(map)?;
        let r = LogicalPlanBuilder::from(right)
            .alias("__kql_right")
            .map_err(map)?
            .build()
            .map_err(map)?;
        let lcols: Vec<Column> = lkeys
            .iter()
            .map(|k| Column::new(Some("__kql_left"), k))
            .collect();
        let rcols: Vec<Column> = rkeys
            .iter()
            .map(|k| Column::new(Some("__kql_right"), k))
            .collect();
        let joined = LogicalPlanBuilder::from(l)
            .join_detailed(
                r,
                join_type,
                (lcols, rcols),
                None,
                datafusion::common::NullEquality::NullEqualsNothing,
            )
            .map_err(map)?;
        let mut out: Vec<DfExpr> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let keep_left = !matches!(kind, JoinKind::RightAnti | JoinKind::RightSemi);
        let keep_right = !matches!(kind, JoinKind::LeftAnti | JoinKind::LeftSemi);
        if keep_left {
            for n in &left_names {
                out.push(DfExpr::Column(Column::new(Some("__kql_left"), n)).alias(n));
                names.push(n.clone());
            }
        }
        if keep_right {
            for n in &right_names {
                let name = unique_name(n, &names);
                out.push(DfExpr::Column(Column::new(Some("__kql_right"), n)).alias(&name));
                names.push(name);
            }
        }
        joined.project(out).and_then(|b| b.build()).map_err(map)
    }

    fn lookup(
        &self,
        left: LogicalPlan,
        right: LogicalPlan,
        outer: bool,
        on: &[JoinOn],
        at: usize,
    ) -> R<LogicalPlan> {
        let map = |e| self.df(at, e);
        let (lkeys, rkeys) = self.join_keys(&left, &right, on)?;
        let left_names: Vec<String> = left
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let right_names: Vec<String> = right
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let l = LogicalPlanBuilder::from(left)
            .alias("__kql_left")
            .map_err(map)?
            .build()
            .map_err(map)?;
        let r = LogicalPlanBuilder::from(right)
            .alias("__kql_right")
            .map_err(map)?
            .build()
            .map_err(map)?;
        let lcols: Vec<Column> = lkeys
            .iter()
            .map(|k| Column::new(Some("__kql_left"), k))
            .collect();
        let rcols: Vec<Column> = rkeys
            .iter()
            .map(|k| Column::new(Some("__kql_right"), k))
            .collect();
        let joined = LogicalPlanBuilder::from(l)
            .join_detailed(
                r,
                if outer {
                    JoinType::Left
                } else {
                    JoinType::Inner
                },
                (lcols, rcols),
                None,
                datafusion::common::NullEquality::NullEqualsNothing,
            )
            .map_err(map)?;
        let mut out = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for n in &left_names {
            out.push(DfExpr::Column(Column::new(Some("__kql_left"), n)).alias(n));
            names.push(n.clone());
        }
        for n in &right_names {
            if rkeys.contains(n) {
                continue;
            }
            let name = unique_name(n, &names);
            out.push(DfExpr::Column(Column::new(Some("__kql_right"), n)).alias(&name));
            names.push(name);
        }
        joined.project(out).and_then(|b| b.build()).map_err(map)
    }

    fn join_keys(
        &self,
        left: &LogicalPlan,
        right: &LogicalPlan,
        on: &[JoinOn],
    ) -> R<(Vec<String>, Vec<String>)> {
        let mut l = Vec::new();
        let mut r = Vec::new();
        for o in on {
            match o {
                JoinOn::Same(c, at) => {
                    self.column(left.schema(), c, *at)?;
                    self.column(right.schema(), c, *at)?;
                    l.push(c.clone());
                    r.push(c.clone());
                }
                JoinOn::Pair(a, b, at) => {
                    self.column(left.schema(), a, *at)?;
                    self.column(right.schema(), b, *at)?;
                    l.push(a.clone());
                    r.push(b.clone());
                }
            }
        }
        Ok((l, r))
    }

    /// `union`: columns by name; a column an input lacks is null there
    /// (outer) or dropped (inner).
    fn union(
        &self,
        inputs: Vec<(LogicalPlan, String)>,
        outer: bool,
        with_source: Option<&str>,
    ) -> R<LogicalPlan> {
        let mut columns: Vec<(String, DataType)> = Vec::new();
        for (p, _) in &inputs {
            for f in p.schema().fields() {
                if !columns.iter().any(|(n, _)| n == f.name()) {
                    columns.push((f.name().clone(), f.data_type().clone()));
                }
            }
        }
        if !outer {
            columns.retain(|(n, _)| {
                inputs
                    .iter()
                    .all(|(p, _)| p.schema().field_with_unqualified_name(n).is_ok())
            });
        }
        let mut builder: Option<LogicalPlanBuilder> = None;
        for (p, source) in inputs {
            let mut exprs = Vec::new();
            if let Some(ws) = with_source {
                exprs.push(lit(source).alias(ws));
            }
            for (n, t) in &columns {
                let e = match p.schema().iter().find(|(_, f)| f.name() == n) {
                    Some((q, f)) if f.data_type() == t => DfExpr::Column(Column::from((q, f))),
                    Some((q, f)) => DfExpr::Column(Column::from((q, f)))
                        .cast_to(t, p.schema())
                        .map_err(|e| self.df(0, e))?,
                    None => lit(ScalarValue::try_from(t).unwrap_or(ScalarValue::Null)),
                };
                exprs.push(e.alias(n));
            }
            let projected = LogicalPlanBuilder::from(p)
                .project(exprs)
                .and_then(|b| b.build())
                .map_err(|e| self.df(0, e))?;
            builder = Some(match builder {
                None => LogicalPlanBuilder::from(projected),
                Some(b) => b.union(projected).map_err(|e| self.df(0, e))?,
            });
        }
        builder
            .ok_or_else(|| self.syntax(0, "union needs tables"))?
            .build()
            .map_err(|e| self.df(0, e))
    }

    fn mv_expand(
        &self,
        builder: LogicalPlanBuilder,
        schema: &DFSchema,
        columns: &[MvColumn],
        at: usize,
    ) -> R<LogicalPlan> {
        let map = |e| self.df(at, e);
        let mut replaced: Vec<(String, DfExpr, Option<Type>)> = Vec::new();
        for c in columns {
            let e = self.scalar(&c.expr, schema, &mut Collect::None)?;
            let e = self.as_array(e, schema, c.expr.offset)?;
            let name = match (&c.name, &c.expr.kind) {
                (Some(n), _) => n.clone(),
                (None, ExprKind::Ident(n)) => n.clone(),
                _ => {
                    return Err(self.syntax(
                        c.expr.offset,
                        "name the expanded expression: mv-expand Name = expr",
                    ))
                }
            };
            replaced.push((name, e, c.to_type));
        }
        let mut exprs = Vec::new();
        for (q, f) in schema.iter() {
            match replaced.iter().find(|(n, _, _)| n == f.name()) {
                Some((n, e, _)) => exprs.push(e.clone().alias(n)),
                None => exprs.push(DfExpr::Column(Column::from((q, f)))),
            }
        }
        for (n, e, _) in &replaced {
            if schema.field_with_unqualified_name(n).is_err() {
                exprs.push(e.clone().alias(n));
            }
        }
        let mut b = builder.project(exprs).map_err(map)?;
        let names: Vec<Column> = replaced
            .iter()
            .map(|(n, _, _)| Column::new_unqualified(n))
            .collect();
        b = b
            .unnest_columns_with_options(names, Default::default())
            .map_err(map)?;
        if replaced.iter().any(|(_, _, t)| t.is_some()) {
            let s = Arc::clone(b.schema());
            let exprs: Vec<DfExpr> = s
                .iter()
                .map(|(q, f)| {
                    let c = DfExpr::Column(Column::from((q, f)));
                    match replaced.iter().find(|(n, _, _)| n == f.name()) {
                        Some((n, _, Some(t))) => cast_to(c, *t).alias(n),
                        _ => c,
                    }
                })
                .collect();
            b = b.project(exprs).map_err(map)?;
        }
        b.build().map_err(map)
    }

    /// An expression as an array: a list as it is, a JSON string as the
    /// list of its elements' texts.
    fn as_array(&self, e: DfExpr, schema: &DFSchema, at: usize) -> R<DfExpr> {
        let t = e.get_type(schema).map_err(|er| self.df(at, er))?;
        match t {
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => Ok(e),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                self.udf(crate::functions::JSON_ARRAY, vec![e], at)
            }
            other => Err(self.syntax(
                at,
                format!("this is a {other}, not an array or a JSON string"),
            )),
        }
    }

    fn parse_op(
        &self,
        builder: LogicalPlanBuilder,
        schema: &DFSchema,
        source: &Expr,
        parts: &[ParsePart],
        regex: bool,
    ) -> R<LogicalPlan> {
        let at = source.offset;
        let src = self.scalar(source, schema, &mut Collect::None)?;
        let src = DfExpr::TryCast(datafusion::logical_expr::TryCast::new(
            Box::new(src),
            DataType::Utf8,
        ));
        let mut pattern = String::from("^");
        let mut outputs: Vec<(String, Type)> = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            match p {
                ParsePart::Literal(s) => {
                    if regex {
                        pattern.push_str(s);
                    } else {
                        pattern.push_str(&regex_escape(s));
                    }
                }
                ParsePart::Any => pattern.push_str(if last { ".*" } else { ".*?" }),
                ParsePart::Column(n, t) => {
                    pattern.push_str(if last { "(.*)" } else { "(.*?)" });
                    outputs.push((n.clone(), *t));
                }
            }
        }
        if !regex {
            pattern = format!("(?s){pattern}");
        }
        let matched = self.udf("regexp_match", vec![src, lit(pattern)], at)?;
        let mut new: Vec<(String, DfExpr)> = Vec::new();
        for (i, (n, t)) in outputs.iter().enumerate() {
            let v = self.udf(
                "array_element",
                vec![matched.clone(), lit((i + 1) as i64)],
                at,
            )?;
            new.push((n.clone(), cast_to(v, *t)));
        }
        let mut exprs = Vec::new();
        for (q, f) in schema.iter() {
            match new.iter().find(|(n, _)| n == f.name()) {
                Some((n, e)) => exprs.push(e.clone().alias(n)),
                None => exprs.push(DfExpr::Column(Column::from((q, f)))),
            }
        }
        for (n, e) in &new {
            if schema.field_with_unqualified_name(n).is_err() {
                exprs.push(e.clone().alias(n));
            }
        }
        builder
            .project(exprs)
            .and_then(|b| b.build())
            .map_err(|e| self.df(at, e))
    }

    // ---- scalar ----

    /// A column of `schema` by its exact name, or an error naming the
    /// nearest one.
    fn column(&self, schema: &DFSchema, name: &str, at: usize) -> R<DfExpr> {
        if let Some((q, f)) = schema.iter().find(|(_, f)| f.name() == name) {
            return Ok(DfExpr::Column(Column::from((q, f))));
        }
        let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Err(self
            .err(
                ErrorKind::UnknownColumn,
                at,
                format!("no column '{name}' in the input"),
            )
            .suggest(
                name,
                known
                    .iter()
                    .copied()
                    .chain(self.scalars.keys().map(String::as_str)),
            ))
    }

    fn constant(&self, e: &Expr) -> R<DfExpr> {
        self.scalar(e, &DFSchema::empty(), &mut Collect::None)
    }

    /// A constant's value (a count, a percentage).
    fn constant_value(&self, e: &Expr) -> R<ScalarValue> {
        let resolved = match &e.kind {
            ExprKind::Ident(n) => self.scalars.get(n).cloned().unwrap_or_else(|| e.clone()),
            _ => e.clone(),
        };
        match resolved.kind {
            ExprKind::Long(v) => Ok(ScalarValue::Int64(Some(v))),
            ExprKind::Real(v) => Ok(ScalarValue::Float64(Some(v))),
            _ => Err(self.syntax(e.offset, "expected a constant number")),
        }
    }

    #[recursive::recursive]
    fn constant_str(&self, e: &Expr) -> Option<String> {
        match &e.kind {
            ExprKind::Str(s) => Some(s.clone()),
            ExprKind::Ident(n) => self.scalars.get(n).and_then(|v| self.constant_str(v)),
            _ => None,
        }
    }

    /// A predicate must be boolean.
    fn boolean(&self, e: DfExpr, schema: &DFSchema, at: usize) -> R<DfExpr> {
        match e.get_type(schema) {
            Ok(DataType::Boolean) | Ok(DataType::Null) => Ok(e),
            Ok(other) => Err(self.syntax(
                at,
                format!(
                    "'where' needs a true/false condition; this is a {}",
                    kql_type_name(&other)
                ),
            )),
            Err(er) => Err(self.df(at, er)),
        }
    }

    #[recursive::recursive]
    fn scalar(&self, e: &Expr, schema: &DFSchema, collect: &mut Collect) -> R<DfExpr> {
        let at = e.offset;
        Ok(match &e.kind {
            ExprKind::Null => lit(ScalarValue::Null),
            ExprKind::Bool(b) => lit(*b),
            ExprKind::Long(v) => lit(*v),
            ExprKind::Real(v) => lit(*v),
            ExprKind::Str(s) => lit(s.as_str()),
            ExprKind::DateTime(t) => lit(timestamp(*t)),
            ExprKind::Timespan(n) => lit(interval(*n)),
            ExprKind::Dynamic(v) => match v {
                serde_json::Value::String(s) => lit(s.as_str()),
                serde_json::Value::Null => lit(ScalarValue::Null),
                other => lit(other.to_string()),
            },
            ExprKind::Ident(name) => {
                if let Some((q, f)) = schema.iter().find(|(_, f)| f.name() == name) {
                    DfExpr::Column(Column::from((q, f)))
                } else if let Some(v) = self.scalars.get(name) {
                    self.scalar(&v.clone(), schema, collect)?
                } else if self.tabulars.contains_key(name)
                    || self.tables.keys().any(|k| k.ends_with(&format!(".{name}")))
                {
                    return Err(self.syntax(at, format!("'{name}' is a table; a scalar is needed here (toscalar() is not supported)")));
                } else {
                    return Err(self.column(schema, name, at).unwrap_err());
                }
            }
            ExprKind::Side(_, c) => {
                return Err(self.syntax(
                    at,
                    format!("$left.{c} / $right.{c} belong in a join's 'on' clause"),
                ))
            }
            ExprKind::Star => return Err(self.syntax(at, "'*' is not a value here")),
            ExprKind::Member(base, key) => {
                let b = self.scalar(base, schema, collect)?;
                self.dynamic_get(b, lit(key.as_str()), schema, at)?
            }
            ExprKind::Index(base, index) => {
                let b = self.scalar(base, schema, collect)?;
                let i = self.scalar(index, schema, collect)?;
                let bt = b.get_type(schema).map_err(|er| self.df(at, er))?;
                if matches!(
                    bt,
                    DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
                ) {
                    // KQL indexes from 0 (negative from the end); arrays here from 1.
                    let idx = when(i.clone().gt_eq(lit(0i64)), i.clone() + lit(1i64))
                        .otherwise(i)
                        .map_err(|er| self.df(at, er))?;
                    self.udf("array_element", vec![b, idx], at)?
                } else {
                    self.dynamic_get(b, i, schema, at)?
                }
            }
            ExprKind::Neg(x) => DfExpr::Negative(Box::new(self.scalar(x, schema, collect)?)),
            ExprKind::Binary(op, l, r) => self.binary(*op, l, r, schema, collect, at)?,
            ExprKind::In {
                expr,
                list,
                negated,
                case_insensitive,
            } => {
                let x = self.scalar(expr, schema, collect)?;
                let mut items = Vec::new();
                for item in list {
                    self.list_items(item, schema, collect, &mut items)?;
                }
                let (x, items) = if *case_insensitive {
                    let lx = self.udf("lower", vec![x], at)?;
                    let li = items
                        .into_iter()
                        .map(|i| self.udf("lower", vec![i], at))
                        .collect::<R<Vec<_>>>()?;
                    (lx, li)
                } else {
                    (x, items)
                };
                if *negated {
                    x.clone().is_null().or(x.in_list(items, true))
                } else {
                    x.in_list(items, false)
                }
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let x = self.scalar(expr, schema, collect)?;
                let mut lo = self.scalar(low, schema, collect)?;
                let mut hi = self.scalar(high, schema, collect)?;
                // between (datetime .. timespan): from the datetime, that long.
                if matches!(high.kind, ExprKind::Timespan(_))
                    && matches!(x.get_type(schema), Ok(DataType::Timestamp(..)))
                {
                    hi = lo.clone() + hi;
                }
                if let Ok(DataType::Date32) = x.get_type(schema) {
                    if let Some(d) = date_of(&low.kind) {
                        lo = lit(d);
                    }
                    if let Some(d) = date_of(&high.kind) {
                        hi = lit(d);
                    }
                }
                if *negated {
                    x.not_between(lo, hi)
                } else {
                    x.between(lo, hi)
                }
            }
            ExprKind::StrOp {
                op,
                negated,
                case_sensitive,
                left,
                right,
            } => {
                let l = self.scalar(left, schema, collect)?;
                let l = self.as_text(l, schema, at)?;
                let term = self.constant_str(right);
                let r = self.scalar(right, schema, collect)?;
                let positive =
                    self.string_op(*op, *case_sensitive, l.clone(), r, term.as_deref(), at)?;
                if *negated {
                    // KQL strings are never null: a null is "", which has
                    // no term and contains nothing.
                    l.is_null().or(DfExpr::Not(Box::new(positive)))
                } else {
                    positive
                }
            }
            ExprKind::InQuery {
                expr,
                query,
                negated,
            } => {
                let x = self.scalar(expr, schema, collect)?;
                // The query is planned apart: a scalar context cannot
                // hold the planner mutably, so plan it on a copy.
                let mut inner = Cx {
                    text: self.text,
                    state: self.state,
                    tables: self.tables.clone(),
                    scalars: self.scalars.clone(),
                    tabulars: self.tabulars.clone(),
                    now: self.now.clone(),
                };
                let node = inner.tabular(query)?;
                if node.plan.schema().fields().len() != 1 {
                    return Err(self.syntax(at, format!("'in' needs a query of one column; this one has {}: project the one to match", node.plan.schema().fields().len())));
                }
                let sub = datafusion::logical_expr::Subquery {
                    subquery: Arc::new(node.plan),
                    outer_ref_columns: vec![],
                    spans: Default::default(),
                };
                DfExpr::InSubquery(datafusion::logical_expr::expr::InSubquery::new(
                    Box::new(x),
                    sub,
                    *negated,
                ))
            }
            ExprKind::HasAny { all, expr, list } => {
                let l = self.scalar(expr, schema, collect)?;
                let l = self.as_text(l, schema, at)?;
                let mut items = Vec::new();
                for item in list {
                    self.list_items(item, schema, collect, &mut items)?;
                }
                let mut terms = Vec::new();
                for item in &items {
                    match item {
                        DfExpr::Literal(ScalarValue::Utf8(Some(s)), _) => terms.push(s.clone()),
                        DfExpr::Literal(v, _) => terms.push(v.to_string()),
                        _ => return Err(self.syntax(at, "has_any and has_all take constant terms")),
                    }
                }
                if terms.is_empty() {
                    lit(*all)
                } else {
                    let mut acc: Option<DfExpr> = None;
                    for t in terms {
                        let one = self.string_op(
                            StrOp::Has,
                            false,
                            l.clone(),
                            lit(t.as_str()),
                            Some(&t),
                            at,
                        )?;
                        acc = Some(match acc {
                            None => one,
                            Some(a) if *all => a.and(one),
                            Some(a) => a.or(one),
                        });
                    }
                    acc.unwrap_or_else(|| lit(false))
                }
            }
            ExprKind::Call(name, args) => self.call(name, args, schema, collect, at)?,
        })
    }

    /// The values of an `in (…)` list item: a dynamic array's elements,
    /// or the item itself.
    fn list_items(
        &self,
        item: &Expr,
        schema: &DFSchema,
        collect: &mut Collect,
        out: &mut Vec<DfExpr>,
    ) -> R<()> {
        let resolved = match &item.kind {
            ExprKind::Ident(n) if schema.field_with_unqualified_name(n).is_err() => {
                self.scalars.get(n).cloned().unwrap_or_else(|| item.clone())
            }
            _ => item.clone(),
        };
        if let ExprKind::Dynamic(serde_json::Value::Array(values)) = &resolved.kind {
            for v in values {
                out.push(match v {
                    serde_json::Value::String(s) => lit(s.as_str()),
                    serde_json::Value::Number(n) if n.is_i64() => {
                        lit(n.as_i64().unwrap_or_default())
                    }
                    serde_json::Value::Number(n) => lit(n.as_f64().unwrap_or_default()),
                    serde_json::Value::Bool(b) => lit(*b),
                    serde_json::Value::Null => lit(ScalarValue::Null),
                    other => lit(other.to_string()),
                });
            }
            return Ok(());
        }
        out.push(self.scalar(&resolved, schema, collect)?);
        Ok(())
    }

    fn as_text(&self, e: DfExpr, schema: &DFSchema, at: usize) -> R<DfExpr> {
        match e.get_type(schema).map_err(|er| self.df(at, er))? {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(e),
            _ => Ok(cast_to(e, Type::String)),
        }
    }

    fn string_op(
        &self,
        op: StrOp,
        cs: bool,
        l: DfExpr,
        r: DfExpr,
        term: Option<&str>,
        at: usize,
    ) -> R<DfExpr> {
        let lower = |e: DfExpr| self.udf("lower", vec![e], at);
        Ok(match op {
            StrOp::Has | StrOp::HasPrefix | StrOp::HasSuffix => match term {
                Some(t) => {
                    // A term: bounded by non-alphanumerics or the ends.
                    let t = regex_escape(t);
                    let flags = if cs { "" } else { "(?i)" };
                    let pattern = match op {
                        StrOp::Has => format!("{flags}(^|[^[:alnum:]]){t}($|[^[:alnum:]])"),
                        StrOp::HasPrefix => format!("{flags}(^|[^[:alnum:]]){t}"),
                        _ => format!("{flags}{t}($|[^[:alnum:]])"),
                    };
                    self.udf("regexp_like", vec![l, lit(pattern)], at)?
                }
                None => {
                    // A term computed per row: matched as a substring.
                    let (l, r) = if cs { (l, r) } else { (lower(l)?, lower(r)?) };
                    self.udf("strpos", vec![l, r], at)?.gt(lit(0i64))
                }
            },
            StrOp::Contains => {
                let (l, r) = if cs { (l, r) } else { (lower(l)?, lower(r)?) };
                self.udf("strpos", vec![l, r], at)?.gt(lit(0i64))
            }
            StrOp::StartsWith => {
                let (l, r) = if cs { (l, r) } else { (lower(l)?, lower(r)?) };
                self.udf("starts_with", vec![l, r], at)?
            }
            StrOp::EndsWith => {
                let (l, r) = if cs { (l, r) } else { (lower(l)?, lower(r)?) };
                self.udf("ends_with", vec![l, r], at)?
            }
            StrOp::MatchesRegex => self.udf("regexp_like", vec![l, r], at)?,
        })
    }

    fn dynamic_get(&self, base: DfExpr, key: DfExpr, schema: &DFSchema, at: usize) -> R<DfExpr> {
        match base.get_type(schema).map_err(|er| self.df(at, er))? {
            DataType::Struct(_) => self.udf("get_field", vec![base, key], at),
            _ => {
                let base = self.as_text(base, schema, at)?;
                self.udf(crate::functions::JSON_GET, vec![base, key], at)
            }
        }
    }

    fn binary(
        &self,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        schema: &DFSchema,
        collect: &mut Collect,
        at: usize,
    ) -> R<DfExpr> {
        let mut a = self.scalar(l, schema, collect)?;
        let mut b = self.scalar(r, schema, collect)?;
        // A timespan literal beside a duration (a difference of two
        // datetimes) is a duration too.
        let ta = a.get_type(schema).ok();
        let tb = b.get_type(schema).ok();
        if let (Some(DataType::Duration(u)), ExprKind::Timespan(n)) = (&ta, &r.kind) {
            b = lit(duration(*n, *u));
        }
        if let (ExprKind::Timespan(n), Some(DataType::Duration(u))) = (&l.kind, &tb) {
            a = lit(duration(*n, *u));
        }
        // A datetime at midnight beside a date column is that date, so the
        // comparison stays on the column (and prunes files by it).
        if let (Some(DataType::Date32), Some(d)) = (&ta, date_of(&r.kind)) {
            b = lit(d);
        }
        if let (Some(d), Some(DataType::Date32)) = (date_of(&l.kind), &tb) {
            a = lit(d);
        }
        // A dynamic value (JSON text) beside a number is that number.
        let is_dynamic = |e: &DfExpr| matches!(e, DfExpr::ScalarFunction(f) if f.name() == crate::functions::JSON_GET);
        let is_number = |t: &Option<DataType>| t.as_ref().is_some_and(|t| t.is_numeric());
        if is_dynamic(&a) && is_number(&tb) {
            a = cast_to(a, Type::Real);
        }
        if is_dynamic(&b) && is_number(&ta) {
            b = cast_to(b, Type::Real);
        }
        let is_text = |t: &Option<DataType>| {
            matches!(
                t,
                Some(DataType::Utf8) | Some(DataType::LargeUtf8) | Some(DataType::Utf8View)
            )
        };
        Ok(match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Mod => a % b,
            BinOp::Eq => {
                let empty = |k: &ExprKind| matches!(k, ExprKind::Str(s) if s.is_empty());
                if is_text(&ta) && empty(&r.kind) {
                    a.clone().is_null().or(a.eq(b))
                } else if is_text(&tb) && empty(&l.kind) {
                    b.clone().is_null().or(a.eq(b))
                } else {
                    a.eq(b)
                }
            }
            BinOp::NotEq => {
                let nonempty = |k: &ExprKind| matches!(k, ExprKind::Str(s) if !s.is_empty());
                if is_text(&ta) && nonempty(&r.kind) {
                    // KQL strings are never null: a null is "", which
                    // differs from any other string.
                    a.clone().is_null().or(a.not_eq(b))
                } else if is_text(&tb) && nonempty(&l.kind) {
                    b.clone().is_null().or(a.not_eq(b))
                } else {
                    a.not_eq(b)
                }
            }
            BinOp::EqTilde | BinOp::NotEqTilde => {
                let a = self.as_text(a, schema, at)?;
                let b = self.as_text(b, schema, at)?;
                let la = self.udf("lower", vec![a.clone()], at)?;
                let lb = self.udf("lower", vec![b], at)?;
                if op == BinOp::EqTilde {
                    la.eq(lb)
                } else {
                    a.is_null().or(la.not_eq(lb))
                }
            }
            BinOp::Lt => a.lt(b),
            BinOp::LtEq => a.lt_eq(b),
            BinOp::Gt => a.gt(b),
            BinOp::GtEq => a.gt_eq(b),
            BinOp::And => a.and(b),
            BinOp::Or => a.or(b),
        })
    }

    fn call(
        &self,
        name: &str,
        args: &[Expr],
        schema: &DFSchema,
        collect: &mut Collect,
        at: usize,
    ) -> R<DfExpr> {
        let lname = name.to_ascii_lowercase();
        if AGGREGATES.contains(&lname.as_str()) {
            let (aggs, input) = match collect {
                Collect::Aggregates(aggs, input) => (aggs, *input),
                _ => {
                    return Err(
                        self.syntax(at, format!("{name}() is an aggregate: use it in summarize"))
                    )
                }
            };
            let (agg, percent) = self.aggregate(&lname, args, input, at)?;
            let alias = format!("__kql_agg{}", aggs.len());
            aggs.push(agg.alias(&alias));
            let column = ucol(alias.as_str());
            return match percent {
                None => Ok(column),
                Some(p) => {
                    // Nearest rank over the sorted list: the value at
                    // rank ceil(p/100 × n), at least 1.
                    let n = self.udf("array_length", vec![column.clone()], at)?;
                    let rank =
                        self.udf("ceil", vec![cast_to(n, Type::Real) * lit(p / 100.0)], at)?;
                    let rank =
                        self.udf("greatest", vec![cast_to(rank, Type::Long), lit(1i64)], at)?;
                    self.udf("array_element", vec![column, rank], at)
                }
            };
        }
        if WINDOWS.contains(&lname.as_str()) {
            let (wins, order) = match collect {
                Collect::Windows(w, o) => (w, *o),
                _ => {
                    return Err(self.syntax(
                        at,
                        format!(
                            "{name}() needs ordered rows: use it in extend after sort or serialize"
                        ),
                    ))
                }
            };
            let w = self.window(&lname, args, schema, order, at)?;
            let alias = format!("__kql_win{}", wins.len());
            wins.push(w.alias(&alias));
            return Ok(ucol(alias.as_str()));
        }
        let a = |i: usize| -> R<DfExpr> {
            let e = args.get(i).ok_or_else(|| {
                self.syntax(
                    at,
                    format!(
                        "{name}() needs at least {} argument{}",
                        i + 1,
                        if i == 0 { "" } else { "s" }
                    ),
                )
            })?;
            self.scalar(e, schema, &mut Collect::None)
        };
        let argc = |lo: usize, hi: usize| -> R<()> {
            if args.len() < lo || args.len() > hi {
                let want = if lo == hi {
                    format!("{lo}")
                } else {
                    format!("{lo} to {hi}")
                };
                return Err(self.syntax(
                    at,
                    format!(
                        "{name}() takes {want} argument{}, not {}",
                        if hi == 1 { "" } else { "s" },
                        args.len()
                    ),
                ));
            }
            Ok(())
        };
        let typ = |e: &DfExpr| e.get_type(schema).map_err(|er| self.df(at, er));
        Ok(match lname.as_str() {
            "strcat" => {
                let parts = (0..args.len())
                    .map(|i| a(i).and_then(|e| self.as_text(e, schema, at)))
                    .collect::<R<Vec<_>>>()?;
                if parts.is_empty() {
                    return Err(self.syntax(at, "strcat() needs at least one argument"));
                }
                self.udf("concat", parts, at)?
            }
            "strcat_delim" => {
                let parts = (0..args.len())
                    .map(|i| a(i).and_then(|e| self.as_text(e, schema, at)))
                    .collect::<R<Vec<_>>>()?;
                self.udf("concat_ws", parts, at)?
            }
            "split" => {
                argc(2, 3)?;
                let arr = self.udf("string_to_array", vec![a(0)?, a(1)?], at)?;
                if args.len() == 3 {
                    let arr = self.udf("array_element", vec![arr, a(2)? + lit(1i64)], at)?;
                    self.udf("make_array", vec![arr], at)?
                } else {
                    arr
                }
            }
            "extract" => {
                argc(3, 4)?;
                let Some(re) = self.constant_str(&args[0]) else {
                    return Err(self.syntax(
                        args[0].offset,
                        "extract() takes the regular expression as a constant string",
                    ));
                };
                let group = match self.constant_value(&args[1])? {
                    ScalarValue::Int64(Some(g)) if g >= 0 => g,
                    _ => {
                        return Err(self.syntax(
                            args[1].offset,
                            "extract()'s capture group is a number, 0 for the whole match",
                        ))
                    }
                };
                let m = self.udf("regexp_match", vec![a(2)?, lit(format!("({re})"))], at)?;
                let v = self.udf("array_element", vec![m, lit(group + 1)], at)?;
                if args.len() == 4 {
                    match &args[3].kind {
                        ExprKind::Call(f, t)
                            if f.eq_ignore_ascii_case("typeof") && t.len() == 1 =>
                        {
                            let ty = match &t[0].kind {
                                ExprKind::Ident(n) => crate::parser::type_named(n),
                                _ => None,
                            };
                            cast_to(
                                v,
                                ty.ok_or_else(|| self.syntax(t[0].offset, "unknown type"))?,
                            )
                        }
                        _ => {
                            return Err(self.syntax(
                                args[3].offset,
                                "extract()'s fourth argument is typeof(type)",
                            ))
                        }
                    }
                } else {
                    v
                }
            }
            "tolower" => {
                argc(1, 1)?;
                self.udf("lower", vec![a(0)?], at)?
            }
            "toupper" => {
                argc(1, 1)?;
                self.udf("upper", vec![a(0)?], at)?
            }
            "trim" | "trim_start" | "trim_end" => {
                argc(2, 2)?;
                let Some(re) = self.constant_str(&args[0]) else {
                    return Err(self.syntax(
                        args[0].offset,
                        format!(
                            "{name}() takes the regular expression to trim as a constant string"
                        ),
                    ));
                };
                let pattern = match lname.as_str() {
                    "trim" => format!("^({re})+|({re})+$"),
                    "trim_start" => format!("^({re})+"),
                    _ => format!("({re})+$"),
                };
                let s = self.as_text(a(1)?, schema, at)?;
                self.udf(
                    "regexp_replace",
                    vec![s, lit(pattern), lit(""), lit("g")],
                    at,
                )?
            }
            "replace_string" => {
                argc(3, 3)?;
                self.udf("replace", vec![a(0)?, a(1)?, a(2)?], at)?
            }
            "replace_regex" => {
                argc(3, 3)?;
                let rewrite = self.constant_str(&args[2]).map(|s| backrefs(&s));
                let rewrite = match rewrite {
                    Some(s) => lit(s),
                    None => a(2)?,
                };
                self.udf("regexp_replace", vec![a(0)?, a(1)?, rewrite, lit("g")], at)?
            }
            "substring" => {
                argc(2, 3)?;
                let s = self.as_text(a(0)?, schema, at)?;
                let start = a(1)? + lit(1i64);
                if args.len() == 3 {
                    self.udf("substr", vec![s, start, a(2)?], at)?
                } else {
                    self.udf("substr", vec![s, start], at)?
                }
            }
            "strlen" => {
                argc(1, 1)?;
                let s = self.as_text(a(0)?, schema, at)?;
                cast_to(self.udf("character_length", vec![s], at)?, Type::Long)
            }
            "indexof" => {
                argc(2, 2)?;
                cast_to(self.udf("strpos", vec![a(0)?, a(1)?], at)?, Type::Long) - lit(1i64)
            }
            "reverse" => {
                argc(1, 1)?;
                self.udf("reverse", vec![a(0)?], at)?
            }
            "strcmp" => {
                argc(2, 2)?;
                let (x, y) = (a(0)?, a(1)?);
                when(x.clone().lt(y.clone()), lit(-1i32))
                    .when(x.gt(y), lit(1i32))
                    .otherwise(lit(0i32))
                    .map_err(|e| self.df(at, e))?
            }
            "countof" => {
                argc(2, 2)?;
                let s = a(0)?;
                let sub = a(1)?;
                // (len(s) - len(replace(s, sub, ""))) / len(sub)
                let removed = self.udf("replace", vec![s.clone(), sub.clone(), lit("")], at)?;
                let diff = self.udf("character_length", vec![s], at)?
                    - self.udf("character_length", vec![removed], at)?;
                cast_to(
                    diff / self.udf("character_length", vec![sub], at)?,
                    Type::Long,
                )
            }
            "ago" => {
                argc(1, 1)?;
                self.now.clone() - a(0)?
            }
            "now" => {
                argc(0, 1)?;
                if args.is_empty() {
                    self.now.clone()
                } else {
                    self.now.clone() + a(0)?
                }
            }
            "bin" | "floor" | "bin_at" => {
                if lname == "bin_at" {
                    argc(3, 3)?;
                } else {
                    argc(2, 2)?;
                }
                let x = a(0)?;
                let size = a(1)?;
                match typ(&x)? {
                    DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
                        let origin = if lname == "bin_at" {
                            a(2)?
                        } else {
                            lit(ScalarValue::TimestampMicrosecond(
                                Some(0),
                                Some("UTC".into()),
                            ))
                        };
                        self.udf("date_bin", vec![size, x, origin], at)?
                    }
                    _ => {
                        let origin = if lname == "bin_at" { a(2)? } else { lit(0i64) };
                        let f = self.udf(
                            "floor",
                            vec![
                                cast_to(x.clone() - origin.clone(), Type::Real)
                                    / cast_to(size.clone(), Type::Real),
                            ],
                            at,
                        )?;
                        let binned = f * size + origin;
                        match typ(&x)? {
                            t @ (DataType::Int8
                            | DataType::Int16
                            | DataType::Int32
                            | DataType::Int64) => DfExpr::Cast(
                                datafusion::logical_expr::Cast::new(Box::new(binned), t),
                            ),
                            _ => binned,
                        }
                    }
                }
            }
            "startofday" | "startofmonth" | "startofyear" => {
                argc(1, 1)?;
                let unit = &lname["startof".len()..];
                self.udf("date_trunc", vec![lit(unit), a(0)?], at)?
            }
            "startofweek" => {
                argc(1, 1)?;
                self.start_of_week(a(0)?, at)?
            }
            "endofday" => {
                argc(1, 1)?;
                self.udf("date_trunc", vec![lit("day"), a(0)?], at)?
                    + lit(interval(86_400_000_000_000 - 100))
            }
            "datetime_add" => {
                argc(3, 3)?;
                let Some(part) = self.constant_str(&args[0]) else {
                    return Err(self.syntax(
                        args[0].offset,
                        "datetime_add()'s first argument is a constant part name",
                    ));
                };
                let n = a(1)?;
                let unit = part_seconds(&part).ok_or_else(|| {
                    self.syntax(args[0].offset, format!("unknown datetime part '{part}'"))
                })?;
                let nanos = cast_to(n * lit((unit * 1e9) as i64), Type::Long);
                let dur = DfExpr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(nanos),
                    DataType::Duration(TimeUnit::Nanosecond),
                ));
                a(2)? + dur
            }
            "datetime_diff" => {
                argc(3, 3)?;
                let Some(part) = self.constant_str(&args[0]) else {
                    return Err(self.syntax(
                        args[0].offset,
                        "datetime_diff()'s first argument is a constant part name",
                    ));
                };
                let (x, y) = (a(1)?, a(2)?);
                let lp = part.to_ascii_lowercase();
                match lp.as_str() {
                    "year" | "quarter" | "month" => {
                        let year = |t: DfExpr| self.udf("date_part", vec![lit("year"), t], at);
                        let dy = year(x.clone())? - year(y.clone())?;
                        let v = match lp.as_str() {
                            "year" => dy,
                            "month" => {
                                let m =
                                    |t: DfExpr| self.udf("date_part", vec![lit("month"), t], at);
                                dy * lit(12.0) + m(x)? - m(y)?
                            }
                            _ => {
                                let m =
                                    |t: DfExpr| self.udf("date_part", vec![lit("quarter"), t], at);
                                dy * lit(4.0) + m(x)? - m(y)?
                            }
                        };
                        cast_to(v, Type::Long)
                    }
                    _ => {
                        let unit = part_seconds(&lp).ok_or_else(|| {
                            self.syntax(args[0].offset, format!("unknown datetime part '{part}'"))
                        })?;
                        let trunc_unit = match lp.as_str() {
                            "week" | "weeks" => None,
                            "day" | "days" => Some("day"),
                            "hour" | "hours" => Some("hour"),
                            "minute" | "minutes" => Some("minute"),
                            "second" | "seconds" => Some("second"),
                            "millisecond" | "milliseconds" => Some("millisecond"),
                            _ => Some("microsecond"),
                        };
                        let epoch = |t: DfExpr| -> R<DfExpr> {
                            let t = match trunc_unit {
                                Some(u) => self.udf("date_trunc", vec![lit(u), t], at)?,
                                // Weeks: the Sundays that start them.
                                None => self.start_of_week(t, at)?,
                            };
                            self.udf("date_part", vec![lit("epoch"), t], at)
                        };
                        let d = (epoch(x)? - epoch(y)?) / lit(unit);
                        cast_to(self.udf("round", vec![d], at)?, Type::Long)
                    }
                }
            }
            "format_datetime" => {
                argc(2, 2)?;
                let Some(f) = self.constant_str(&args[1]) else {
                    return Err(self.syntax(
                        args[1].offset,
                        "format_datetime() takes the format as a constant string",
                    ));
                };
                self.udf("to_char", vec![a(0)?, lit(chrono_format(&f))], at)?
            }
            "dayofweek" => {
                argc(1, 1)?;
                let dow = self.udf("date_part", vec![lit("dow"), a(0)?], at)?;
                let nanos = cast_to(dow * lit(86_400_000_000_000i64), Type::Long);
                DfExpr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(nanos),
                    DataType::Duration(TimeUnit::Nanosecond),
                ))
            }
            "dayofmonth" | "dayofyear" | "hourofday" | "getyear" | "getmonth" | "monthofyear"
            | "datetime_part" => {
                let (part, t) = if lname == "datetime_part" {
                    argc(2, 2)?;
                    let Some(p) = self.constant_str(&args[0]) else {
                        return Err(self.syntax(
                            args[0].offset,
                            "datetime_part()'s first argument is a constant part name",
                        ));
                    };
                    (p.to_ascii_lowercase(), a(1)?)
                } else {
                    argc(1, 1)?;
                    let p = match lname.as_str() {
                        "dayofmonth" => "day",
                        "dayofyear" => "doy",
                        "hourofday" => "hour",
                        "getyear" => "year",
                        _ => "month",
                    };
                    (p.to_string(), a(0)?)
                };
                cast_to(self.udf("date_part", vec![lit(part), t], at)?, Type::Int)
            }
            "make_datetime" => {
                if args.len() < 3 || args.len() > 7 {
                    return Err(self.syntax(
                        at,
                        "make_datetime(year, month, day[, hour, minute, second])",
                    ));
                }
                let parts = (0..args.len()).map(a).collect::<R<Vec<_>>>()?;
                let text = {
                    let mut pieces = Vec::new();
                    let pad = |e: DfExpr, w: i64| -> R<DfExpr> {
                        self.udf("lpad", vec![cast_to(e, Type::String), lit(w), lit("0")], at)
                    };
                    pieces.push(pad(parts[0].clone(), 4)?);
                    pieces.push(lit("-"));
                    pieces.push(pad(parts[1].clone(), 2)?);
                    pieces.push(lit("-"));
                    pieces.push(pad(parts[2].clone(), 2)?);
                    pieces.push(lit("T"));
                    pieces.push(pad(parts.get(3).cloned().unwrap_or(lit(0i64)), 2)?);
                    pieces.push(lit(":"));
                    pieces.push(pad(parts.get(4).cloned().unwrap_or(lit(0i64)), 2)?);
                    pieces.push(lit(":"));
                    pieces.push(pad(parts.get(5).cloned().unwrap_or(lit(0i64)), 2)?);
                    pieces.push(lit("Z"));
                    self.udf("concat", pieces, at)?
                };
                cast_to(text, Type::DateTime)
            }
            "unixtime_seconds_todatetime" => {
                argc(1, 1)?;
                cast_to(
                    self.udf("to_timestamp_seconds", vec![cast_to(a(0)?, Type::Long)], at)?,
                    Type::DateTime,
                )
            }
            "unixtime_milliseconds_todatetime" => {
                argc(1, 1)?;
                cast_to(
                    self.udf("to_timestamp_millis", vec![cast_to(a(0)?, Type::Long)], at)?,
                    Type::DateTime,
                )
            }
            "tostring" => {
                argc(1, 1)?;
                self.as_text(a(0)?, schema, at)?
            }
            "toint" => {
                argc(1, 1)?;
                cast_to(a(0)?, Type::Int)
            }
            "tolong" | "toint64" => {
                argc(1, 1)?;
                cast_to(a(0)?, Type::Long)
            }
            "todouble" | "toreal" => {
                argc(1, 1)?;
                cast_to(a(0)?, Type::Real)
            }
            "todecimal" => {
                argc(1, 1)?;
                cast_to(a(0)?, Type::Decimal)
            }
            "todatetime" => {
                argc(1, 1)?;
                cast_to(a(0)?, Type::DateTime)
            }
            "totimespan" => {
                argc(1, 1)?;
                cast_to(a(0)?, Type::Timespan)
            }
            "tobool" | "toboolean" => {
                argc(1, 1)?;
                let x = a(0)?;
                match typ(&x)? {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        let l = self.udf("lower", vec![x], at)?;
                        when(
                            l.clone().eq(lit("true")).or(l.clone().eq(lit("1"))),
                            lit(true),
                        )
                        .when(l.clone().eq(lit("false")).or(l.eq(lit("0"))), lit(false))
                        .otherwise(lit(ScalarValue::Boolean(None)))
                        .map_err(|e| self.df(at, e))?
                    }
                    _ => cast_to(x, Type::Bool),
                }
            }
            "iff" | "iif" => {
                argc(3, 3)?;
                when(a(0)?, a(1)?)
                    .otherwise(a(2)?)
                    .map_err(|e| self.df(at, e))?
            }
            "case" => {
                if args.len() < 3 || args.len().is_multiple_of(2) {
                    return Err(self.syntax(at, "case(condition1, value1, condition2, value2, …, else) takes pairs and a final else"));
                }
                let mut b = when(a(0)?, a(1)?);
                let mut i = 2;
                while i + 1 < args.len() {
                    b = b.when(a(i)?, a(i + 1)?);
                    i += 2;
                }
                b.otherwise(a(args.len() - 1)?)
                    .map_err(|e| self.df(at, e))?
            }
            "coalesce" => {
                let parts = (0..args.len()).map(a).collect::<R<Vec<_>>>()?;
                if parts.is_empty() {
                    return Err(self.syntax(at, "coalesce() needs arguments"));
                }
                self.udf("coalesce", parts, at)?
            }
            "isempty" | "isnotempty" => {
                argc(1, 1)?;
                let x = a(0)?;
                let empty = match typ(&x)? {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        x.clone().is_null().or(x.eq(lit("")))
                    }
                    _ => x.is_null(),
                };
                if lname == "isempty" {
                    empty
                } else {
                    DfExpr::Not(Box::new(empty))
                }
            }
            "isnull" => {
                argc(1, 1)?;
                a(0)?.is_null()
            }
            "isnotnull" => {
                argc(1, 1)?;
                a(0)?.is_not_null()
            }
            "isnan" => {
                argc(1, 1)?;
                self.udf("isnan", vec![a(0)?], at)?
            }
            "not" => {
                argc(1, 1)?;
                DfExpr::Not(Box::new(a(0)?))
            }
            "parse_json" | "todynamic" => {
                argc(1, 1)?;
                let x = a(0)?;
                match typ(&x)? {
                    DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Null
                    | DataType::List(_)
                    | DataType::Struct(_) => x,
                    _ => self.as_text(x, schema, at)?,
                }
            }
            "bag_keys" => {
                argc(1, 1)?;
                let x = self.as_text(a(0)?, schema, at)?;
                self.udf(crate::functions::BAG_KEYS, vec![x], at)?
            }
            "array_length" => {
                argc(1, 1)?;
                let arr = self.as_array(a(0)?, schema, at)?;
                cast_to(self.udf("array_length", vec![arr], at)?, Type::Long)
            }
            "pack_array" => {
                let parts = (0..args.len()).map(a).collect::<R<Vec<_>>>()?;
                self.udf("make_array", parts, at)?
            }
            "array_concat" => {
                let parts = (0..args.len())
                    .map(|i| a(i).and_then(|e| self.as_array(e, schema, at)))
                    .collect::<R<Vec<_>>>()?;
                self.udf("array_concat", parts, at)?
            }
            "set_has_element" => {
                argc(2, 2)?;
                let arr = self.as_array(a(0)?, schema, at)?;
                self.udf("array_has", vec![arr, a(1)?], at)?
            }
            "array_index_of" => {
                argc(2, 2)?;
                let arr = self.as_array(a(0)?, schema, at)?;
                let p = self.udf("array_position", vec![arr, a(1)?], at)?;
                self.udf(
                    "coalesce",
                    vec![cast_to(p, Type::Long) - lit(1i64), lit(-1i64)],
                    at,
                )?
            }
            "round" => {
                argc(1, 2)?;
                let mut v = vec![a(0)?];
                if args.len() == 2 {
                    v.push(a(1)?);
                }
                self.udf("round", v, at)?
            }
            "abs" | "sqrt" | "exp" | "log10" | "sign" => {
                argc(1, 1)?;
                let f = if lname == "sign" {
                    "signum"
                } else {
                    lname.as_str()
                };
                self.udf(f, vec![a(0)?], at)?
            }
            "log" => {
                argc(1, 1)?;
                self.udf("ln", vec![a(0)?], at)?
            }
            "ceiling" => {
                argc(1, 1)?;
                self.udf("ceil", vec![a(0)?], at)?
            }
            "pow" => {
                argc(2, 2)?;
                self.udf(
                    "power",
                    vec![cast_to(a(0)?, Type::Real), cast_to(a(1)?, Type::Real)],
                    at,
                )?
            }
            "min_of" | "max_of" => {
                let parts = (0..args.len()).map(a).collect::<R<Vec<_>>>()?;
                self.udf(
                    if lname == "min_of" {
                        "least"
                    } else {
                        "greatest"
                    },
                    parts,
                    at,
                )?
            }
            "binary_and" => {
                argc(2, 2)?;
                DfExpr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                    Box::new(a(0)?),
                    datafusion::logical_expr::Operator::BitwiseAnd,
                    Box::new(a(1)?),
                ))
            }
            "binary_or" => {
                argc(2, 2)?;
                DfExpr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                    Box::new(a(0)?),
                    datafusion::logical_expr::Operator::BitwiseOr,
                    Box::new(a(1)?),
                ))
            }
            "tohex" => {
                argc(1, 2)?;
                self.udf("to_hex", vec![cast_to(a(0)?, Type::Long)], at)?
            }
            "hash" => {
                argc(1, 2)?;
                self.udf("md5", vec![self.as_text(a(0)?, schema, at)?], at)?
            }
            "string_size" => {
                argc(1, 1)?;
                cast_to(self.udf("octet_length", vec![a(0)?], at)?, Type::Long)
            }
            "ipv4_is_private" => {
                argc(1, 1)?;
                let ip = self.as_text(a(0)?, schema, at)?;
                let pattern = r"^(10\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\.)";
                self.udf("regexp_like", vec![ip, lit(pattern)], at)?
            }
            "typeof" => {
                return Err(self.syntax(
                    at,
                    "typeof(type) is written only in 'to typeof(…)' and extract()",
                ))
            }
            "toscalar" | "materialize" | "table" | "database" | "cluster" | "column_ifexists"
            | "series_stats" => {
                return Err(self.err(
                    ErrorKind::Unsupported,
                    at,
                    format!("the function {name}() is not supported"),
                ))
            }
            _ => {
                return Err(self
                    .syntax(at, format!("unknown function '{name}'"))
                    .suggest(
                        name,
                        FUNCTIONS.iter().chain(AGGREGATES).chain(WINDOWS).copied(),
                    ))
            }
        })
    }

    /// An aggregate call, and for a percentile the percentage to pick
    /// from the sorted list it aggregates.
    /// The Sunday midnight that starts `t`'s week.
    fn start_of_week(&self, t: DfExpr, at: usize) -> R<DfExpr> {
        let day = self.udf("date_trunc", vec![lit("day"), t.clone()], at)?;
        let dow = self.udf("date_part", vec![lit("dow"), t], at)?;
        let back = cast_to(dow * lit(86_400_000_000i64), Type::Long);
        let back = DfExpr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(back),
            DataType::Duration(TimeUnit::Microsecond),
        ));
        Ok(day - back)
    }

    fn aggregate(
        &self,
        name: &str,
        args: &[Expr],
        input: &DFSchema,
        at: usize,
    ) -> R<(DfExpr, Option<f64>)> {
        let a = |i: usize| -> R<DfExpr> {
            let e = args.get(i).ok_or_else(|| {
                self.syntax(
                    at,
                    format!(
                        "{name}() needs {} argument{}",
                        i + 1,
                        if i == 0 { "" } else { "s" }
                    ),
                )
            })?;
            self.scalar(e, input, &mut Collect::None)
        };
        let cond =
            |i: usize| -> R<DfExpr> { a(i).and_then(|p| self.boolean(p, input, args[i].offset)) };
        let build = |b: datafusion::logical_expr::expr_fn::ExprFuncBuilder| {
            b.build().map_err(|e| self.df(at, e))
        };
        let exact = |lo: usize, hi: usize| -> R<()> {
            if args.len() < lo || args.len() > hi {
                return Err(self.syntax(
                    at,
                    format!(
                        "{name}() takes {lo}{} argument{}, not {}",
                        if hi > lo {
                            format!(" to {hi}")
                        } else {
                            String::new()
                        },
                        if hi == 1 { "" } else { "s" },
                        args.len()
                    ),
                ));
            }
            Ok(())
        };
        Ok((
            match name {
                "count" => {
                    exact(0, 1)?;
                    if args.is_empty() || matches!(args[0].kind, ExprKind::Star) {
                        self.udaf("count", vec![lit(1i64)], at)?
                    } else {
                        self.udaf("count", vec![a(0)?], at)?
                    }
                }
                "countif" => {
                    exact(1, 1)?;
                    let c = cond(0)?;
                    self.udaf(
                        "count",
                        vec![when(c, lit(1i64)).end().map_err(|e| self.df(at, e))?],
                        at,
                    )?
                }
                "dcount" => {
                    exact(1, 2)?;
                    build(self.udaf("count", vec![a(0)?], at)?.distinct())?
                }
                "dcountif" => {
                    exact(2, 3)?;
                    let v = when(cond(1)?, a(0)?).end().map_err(|e| self.df(at, e))?;
                    build(self.udaf("count", vec![v], at)?.distinct())?
                }
                "sum" | "avg" | "min" | "max" | "stdev" | "variance" | "take_any" | "any" => {
                    exact(1, 1)?;
                    let f = match name {
                        "stdev" => "stddev",
                        "variance" => "var",
                        "take_any" | "any" => "first_value",
                        other => other,
                    };
                    self.udaf(f, vec![a(0)?], at)?
                }
                "sumif" => {
                    exact(2, 2)?;
                    // A group where nothing matches sums to 0, as in KQL.
                    let v = when(cond(1)?, a(0)?)
                        .otherwise(lit(0i64))
                        .map_err(|e| self.df(at, e))?;
                    self.udaf("sum", vec![v], at)?
                }
                "avgif" | "minif" | "maxif" | "stdevif" | "varianceif" => {
                    exact(2, 2)?;
                    let f = match name {
                        "stdevif" => "stddev",
                        "varianceif" => "var",
                        other => &other[..other.len() - 2],
                    };
                    let v = when(cond(1)?, a(0)?).end().map_err(|e| self.df(at, e))?;
                    self.udaf(f, vec![v], at)?
                }
                "make_set" | "make_list" | "make_set_if" | "make_list_if" => {
                    let conditional = name.ends_with("_if");
                    if conditional {
                        exact(2, 3)?;
                    } else {
                        exact(1, 2)?;
                    }
                    let x = a(0)?;
                    // Nulls are left out: IGNORE NULLS, which costs less
                    // than a filter (and nothing on a non-null column).
                    let b = self
                        .udaf("array_agg", vec![x], at)?
                        .null_treatment(datafusion::logical_expr::expr::NullTreatment::IgnoreNulls);
                    let b = if conditional { b.filter(cond(1)?) } else { b };
                    if name.starts_with("make_set") {
                        build(b.distinct())?
                    } else {
                        build(b)?
                    }
                }
                "percentile" => {
                    exact(2, 2)?;
                    // Nearest rank: the value at rank ceil(p/100 × n) of the
                    // sorted values.
                    let x = a(0)?;
                    let p = match self.constant_value(&args[1])? {
                        ScalarValue::Int64(Some(v)) => v as f64,
                        ScalarValue::Float64(Some(v)) => v,
                        _ => {
                            return Err(
                                self.syntax(args[1].offset, "the percentage is a constant number")
                            )
                        }
                    };
                    if !(0.0..=100.0).contains(&p) {
                        return Err(
                            self.syntax(args[1].offset, "the percentage is between 0 and 100")
                        );
                    }
                    let values = build(
                        self.udaf("array_agg", vec![x.clone()], at)?
                            .filter(x.clone().is_not_null())
                            .order_by(vec![x.sort(true, false)]),
                    )?;
                    return Ok((values, Some(p)));
                }
                _ => {
                    return Err(self.syntax(at, format!("the aggregate {name}() is not supported")))
                }
            },
            None,
        ))
    }

    fn window(
        &self,
        name: &str,
        args: &[Expr],
        schema: &DFSchema,
        order: &[Sort],
        at: usize,
    ) -> R<DfExpr> {
        let a = |i: usize| -> R<DfExpr> {
            let e = args.get(i).ok_or_else(|| {
                self.syntax(
                    at,
                    format!(
                        "{name}() needs {} argument{}",
                        i + 1,
                        if i == 0 { "" } else { "s" }
                    ),
                )
            })?;
            self.scalar(e, schema, &mut Collect::None)
        };
        let f = match name {
            "row_number" => {
                if !args.is_empty() {
                    return Err(self.err(
                        ErrorKind::Unsupported,
                        at,
                        "row_number() with a start or restart argument is not supported",
                    ));
                }
                self.udwf("row_number", vec![], at)?
            }
            "prev" | "next" => {
                if args.is_empty() || args.len() > 3 {
                    return Err(self.syntax(at, format!("{name}(column[, offset[, default]])")));
                }
                let mut v = vec![a(0)?];
                v.push(if args.len() > 1 { a(1)? } else { lit(1i64) });
                if args.len() > 2 {
                    v.push(a(2)?);
                }
                self.udwf(if name == "prev" { "lag" } else { "lead" }, v, at)?
            }
            _ => return Err(self.syntax(at, format!("unknown window function {name}"))),
        };
        if order.is_empty() {
            // serialize without a sort: the rows' order as they come.
            return Ok(f);
        }
        f.order_by(order.to_vec())
            .build()
            .map_err(|e| self.df(at, e))
    }
}

/// The name KQL gives an unnamed aggregate: `count_`, `sum_X`…
fn aggregate_name(e: &Expr) -> Option<String> {
    let ExprKind::Call(f, args) = &e.kind else {
        return None;
    };
    let lf = f.to_ascii_lowercase();
    if !AGGREGATES.contains(&lf.as_str()) {
        return None;
    }
    let col = match args.first().map(|a| &a.kind) {
        Some(ExprKind::Ident(c)) => c.clone(),
        _ => String::new(),
    };
    Some(match lf.as_str() {
        "count" => "count_".into(),
        "countif" => "countif_".into(),
        "percentile" => {
            let p = match args.get(1).map(|a| &a.kind) {
                Some(ExprKind::Long(v)) => v.to_string(),
                Some(ExprKind::Real(v)) => v.to_string().replace('.', "_"),
                _ => String::new(),
            };
            format!("percentile_{col}_{p}")
        }
        "take_any" | "any" => col,
        "make_set" | "make_set_if" => format!("set_{col}"),
        "make_list" | "make_list_if" => format!("list_{col}"),
        other => format!("{other}_{col}"),
    })
}

/// Replaces qualified columns with bare ones (the names a summarize's
/// aggregate node outputs).
fn unqualify(e: DfExpr) -> DfExpr {
    e.transform(|e| match e {
        DfExpr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(DfExpr::Column(
            Column::new_unqualified(c.name),
        ))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .unwrap_or_else(|e| lit(e.to_string()))
}

/// How many nodes an expression has (walked with a stack of its own).
fn count_nodes(e: &Expr) -> usize {
    let mut n = 0;
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        n += 1;
        match &e.kind {
            ExprKind::Member(a, _) | ExprKind::Neg(a) => stack.push(a),
            ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => stack.extend([&**a, &**b]),
            ExprKind::StrOp { left, right, .. } => stack.extend([&**left, &**right]),
            ExprKind::Call(_, args) => stack.extend(args.iter()),
            ExprKind::In { expr, list, .. } | ExprKind::HasAny { expr, list, .. } => {
                stack.push(expr);
                stack.extend(list.iter());
            }
            ExprKind::Between {
                expr, low, high, ..
            } => stack.extend([&**expr, &**low, &**high]),
            ExprKind::InQuery { expr, .. } => stack.push(expr),
            _ => {}
        }
    }
    n
}

/// A column by its exact name (`col()` would parse and fold case).
fn ucol(name: &str) -> DfExpr {
    DfExpr::Column(Column::new_unqualified(name))
}

fn unique_name(n: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == n) {
        return n.to_string();
    }
    let mut i = 1;
    loop {
        let c = format!("{n}{i}");
        if !taken.contains(&c) {
            return c;
        }
        i += 1;
    }
}

fn union_name(t: &Tabular) -> String {
    match &t.source {
        Source::Table(n) => n.table.clone(),
        _ => "union_arg".into(),
    }
}

fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = name;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            if !rest.starts_with(p) {
                return false;
            }
            rest = &rest[p.len()..];
        } else if i + 1 == parts.len() {
            return rest.ends_with(p);
        } else if let Some(pos) = rest.find(p) {
            rest = &rest[pos + p.len()..];
        } else {
            return false;
        }
    }
    rest.is_empty()
}

fn cast_to(e: DfExpr, t: Type) -> DfExpr {
    let dt = match t {
        Type::Bool => DataType::Boolean,
        Type::Int => DataType::Int32,
        Type::Long => DataType::Int64,
        Type::Real => DataType::Float64,
        Type::Decimal => DataType::Decimal128(38, 10),
        Type::String | Type::Dynamic | Type::Guid => DataType::Utf8,
        Type::DateTime => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::Timespan => DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
    };
    DfExpr::TryCast(datafusion::logical_expr::TryCast::new(Box::new(e), dt))
}

/// A datetime literal at midnight, as a date.
fn date_of(e: &ExprKind) -> Option<ScalarValue> {
    match e {
        ExprKind::DateTime(t) if t.timestamp() % 86_400 == 0 && t.timestamp_subsec_nanos() == 0 => {
            Some(ScalarValue::Date32(Some((t.timestamp() / 86_400) as i32)))
        }
        _ => None,
    }
}

fn duration(nanos: i64, unit: TimeUnit) -> ScalarValue {
    match unit {
        TimeUnit::Second => ScalarValue::DurationSecond(Some(nanos / 1_000_000_000)),
        TimeUnit::Millisecond => ScalarValue::DurationMillisecond(Some(nanos / 1_000_000)),
        TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(nanos / 1_000)),
        TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(nanos)),
    }
}

fn part_seconds(part: &str) -> Option<f64> {
    Some(match part.to_ascii_lowercase().as_str() {
        "week" | "weeks" => 604_800.0,
        "day" | "days" => 86_400.0,
        "hour" | "hours" => 3_600.0,
        "minute" | "minutes" => 60.0,
        "second" | "seconds" => 1.0,
        "millisecond" | "milliseconds" => 0.001,
        "microsecond" | "microseconds" => 0.000_001,
        "nanosecond" | "nanoseconds" => 0.000_000_001,
        _ => return None,
    })
}

/// KQL's name for a column type.
fn kql_type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "bool",
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            "int"
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "long",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "real",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "decimal",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => "datetime",
        DataType::Duration(_) | DataType::Interval(_) => "timespan",
        _ => "dynamic",
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `\1` back references (KQL's) as `${1}` (the regex crate's).
fn backrefs(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            let mut n = String::new();
            while let Some(d) = chars.peek().copied().filter(|d| d.is_ascii_digit()) {
                n.push(d);
                chars.next();
            }
            out.push_str(&format!("${{{n}}}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// A .NET datetime format (`yyyy-MM-dd HH:mm:ss.fff`) as chrono's.
fn chrono_format(f: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let piece = match (c, n) {
            ('y', 4) | ('y', 3) => "%Y".to_string(),
            ('y', 2) => "%y".to_string(),
            ('M', 2) => "%m".to_string(),
            ('M', 1) => "%-m".to_string(),
            ('d', 2) => "%d".to_string(),
            ('d', 1) => "%-d".to_string(),
            ('H', 2) => "%H".to_string(),
            ('H', 1) => "%-H".to_string(),
            ('h', 2) => "%I".to_string(),
            ('h', 1) => "%-I".to_string(),
            ('m', 2) => "%M".to_string(),
            ('m', 1) => "%-M".to_string(),
            ('s', 2) => "%S".to_string(),
            ('s', 1) => "%-S".to_string(),
            // chrono writes 3, 6 or 9 digits of a fraction.
            ('f', k) | ('F', k) if k <= 3 => "%3f".to_string(),
            ('f', k) | ('F', k) if k <= 6 => "%6f".to_string(),
            ('f', k) | ('F', k) if k <= 9 => "%9f".to_string(),
            ('t', 2) => "%p".to_string(),
            ('%', _) => "%%".repeat(n),
            _ => std::iter::repeat_n(c, n).collect(),
        };
        out.push_str(&piece);
        i += n;
    }
    out
}
