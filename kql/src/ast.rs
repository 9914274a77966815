//! The parsed query. Every node keeps the byte offset it was written at,
//! so planning errors point into the text as parse errors do.

use chrono::{DateTime, Utc};

use crate::TableName;

/// A parsed KQL query: `let` statements, request properties and at most
/// one tabular expression.
#[derive(Debug, Clone)]
pub struct Script {
    pub(crate) text: String,
    pub(crate) lets: Vec<Let>,
    pub(crate) query_now: Option<DateTime<Utc>>,
    /// Whether a `set query_now` (with or without a value) is written.
    pub(crate) sets_now: bool,
    pub(crate) query: Option<Tabular>,
    pub(crate) explain: bool,
}

impl Script {
    /// The query text, as parsed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The time `set query_now = datetime(…);` pins, if the query sets it.
    pub fn query_now(&self) -> Option<DateTime<Utc>> {
        self.query_now
    }

    /// What a query of only `set` statements does to the session's pinned
    /// `now()`: `Some(Some(t))` pins it to `t`, `Some(None)` unpins it
    /// (`set query_now;`), `None` leaves it.
    pub fn pin(&self) -> Option<Option<DateTime<Utc>>> {
        self.sets_now.then_some(self.query_now)
    }

    /// Whether there is a tabular expression to run (a query of only
    /// `set` statements has none).
    pub fn has_query(&self) -> bool {
        self.query.is_some()
    }

    /// Whether the query asks for its plan (`explain <query>`).
    pub fn is_explain(&self) -> bool {
        self.explain
    }

    /// Every table the query reads, as written: names bound by `let` are
    /// not tables.
    pub fn tables(&self) -> Vec<TableName> {
        // Names given by `as` are the query's own, wherever they are.
        let mut named = Vec::new();
        for l in &self.lets {
            if let LetValue::Tabular(t) = &l.value {
                t.as_names(&mut named);
            }
        }
        if let Some(q) = &self.query {
            q.as_names(&mut named);
        }
        let mut bound: Vec<&str> = named.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for l in &self.lets {
            match &l.value {
                LetValue::Tabular(t) => t.tables(&bound, &mut out),
                LetValue::Scalar(e) => e.tables(&bound, &mut out),
            }
            bound.push(&l.name);
        }
        if let Some(q) = &self.query {
            q.tables(&bound, &mut out);
        }
        out
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Let {
    pub name: String,
    pub value: LetValue,
}

#[derive(Debug, Clone)]
pub(crate) enum LetValue {
    Scalar(Expr),
    Tabular(Tabular),
}

/// A source and the operators piped after it.
#[derive(Debug, Clone)]
pub(crate) struct Tabular {
    pub source: Source,
    pub ops: Vec<Op>,
}

impl Tabular {
    fn as_names(&self, out: &mut Vec<String>) {
        if let Source::Union { tables, .. } = &self.source {
            for t in tables {
                t.as_names(out);
            }
        }
        for op in &self.ops {
            match &op.kind {
                OpKind::As(n) => out.push(n.clone()),
                OpKind::Join { right, .. } | OpKind::Lookup { right, .. } => right.as_names(out),
                OpKind::Union { tables, .. } => {
                    for t in tables {
                        t.as_names(out);
                    }
                }
                _ => {}
            }
        }
    }

    fn tables(&self, bound: &[&str], out: &mut Vec<TableName>) {
        match &self.source {
            Source::Table(t) => {
                let is_let = t.catalog.is_none()
                    && t.workspace.is_none()
                    && bound.contains(&t.table.as_str());
                if !is_let {
                    out.push(t.clone());
                }
            }
            Source::Union { tables, .. } => {
                for t in tables {
                    t.tables(bound, out);
                }
            }
            Source::Print(items) => {
                for i in items {
                    i.expr.tables(bound, out);
                }
            }
            Source::Datatable { .. } | Source::Range { .. } => {}
        }
        for op in &self.ops {
            match &op.kind {
                OpKind::Where(e) | OpKind::Take(e) => e.tables(bound, out),
                OpKind::Project(items)
                | OpKind::Extend(items)
                | OpKind::Serialize(items)
                | OpKind::Distinct(items) => {
                    for i in items {
                        i.expr.tables(bound, out);
                    }
                }
                OpKind::Summarize { aggregates, by } => {
                    for i in aggregates.iter().chain(by) {
                        i.expr.tables(bound, out);
                    }
                }
                OpKind::Sort(keys) | OpKind::Top { by: keys, .. } => {
                    for k in keys {
                        k.expr.tables(bound, out);
                    }
                }
                OpKind::MvExpand { columns, .. } => {
                    for c in columns {
                        c.expr.tables(bound, out);
                    }
                }
                OpKind::Parse { source, .. } => source.tables(bound, out),
                OpKind::Join { right, .. } | OpKind::Lookup { right, .. } => {
                    right.tables(bound, out)
                }
                OpKind::Union { tables, .. } => {
                    for t in tables {
                        t.tables(bound, out);
                    }
                }
                _ => {}
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Table(TableName),
    Datatable {
        columns: Vec<(String, Type)>,
        values: Vec<Expr>,
    },
    Range {
        name: String,
        from: Expr,
        to: Expr,
        step: Expr,
    },
    Union {
        kind_outer: bool,
        with_source: Option<String>,
        tables: Vec<Tabular>,
    },
    Print(Vec<NamedExpr>),
}

#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub offset: usize,
    pub kind: OpKind,
}

#[derive(Debug, Clone)]
pub(crate) enum OpKind {
    Where(Expr),
    Project(Vec<NamedExpr>),
    ProjectAway(Vec<(String, usize)>),
    ProjectKeep(Vec<(String, usize)>),
    ProjectRename(Vec<(String, String, usize)>),
    ProjectReorder(Vec<(String, usize)>),
    Extend(Vec<NamedExpr>),
    Summarize {
        aggregates: Vec<NamedExpr>,
        by: Vec<NamedExpr>,
    },
    Count,
    Take(Expr),
    Top {
        count: Expr,
        by: Vec<SortKey>,
    },
    Sort(Vec<SortKey>),
    Distinct(Vec<NamedExpr>),
    Join {
        kind: JoinKind,
        right: Box<Tabular>,
        on: Vec<JoinOn>,
    },
    Lookup {
        outer: bool,
        right: Box<Tabular>,
        on: Vec<JoinOn>,
    },
    Union {
        kind_outer: bool,
        with_source: Option<String>,
        tables: Vec<Tabular>,
    },
    MvExpand {
        columns: Vec<MvColumn>,
        limit: Option<Expr>,
    },
    Parse {
        source: Expr,
        parts: Vec<ParsePart>,
        regex: bool,
    },
    As(String),
    Serialize(Vec<NamedExpr>),
    GetSchema,
}

#[derive(Debug, Clone)]
pub(crate) struct MvColumn {
    pub name: Option<String>,
    pub expr: Expr,
    pub to_type: Option<Type>,
}

#[derive(Debug, Clone)]
pub(crate) enum ParsePart {
    /// A literal the text must hold here.
    Literal(String),
    /// `*`: any text.
    Any,
    /// A column to fill, with its type (`string` unless given).
    Column(String, Type),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinKind {
    InnerUnique,
    Inner,
    LeftOuter,
    RightOuter,
    FullOuter,
    LeftAnti,
    RightAnti,
    LeftSemi,
    RightSemi,
}

#[derive(Debug, Clone)]
pub(crate) enum JoinOn {
    /// `on Col`: the same column on both sides.
    Same(String, usize),
    /// `on $left.A == $right.B`.
    Pair(String, String, usize),
}

#[derive(Debug, Clone)]
pub(crate) struct SortKey {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: Option<bool>,
}

#[derive(Debug, Clone)]
pub(crate) struct NamedExpr {
    pub name: Option<String>,
    pub expr: Expr,
}

/// A scalar type as KQL names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Bool,
    Int,
    Long,
    Real,
    Decimal,
    String,
    DateTime,
    Timespan,
    Dynamic,
    Guid,
}

#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub offset: usize,
    pub kind: ExprKind,
}

impl Expr {
    /// The tables of the queries inside an expression (`in (T | …)`).
    fn tables(&self, bound: &[&str], out: &mut Vec<TableName>) {
        match &self.kind {
            ExprKind::InQuery { expr, query, .. } => {
                expr.tables(bound, out);
                query.tables(bound, out);
            }
            ExprKind::Member(a, _) | ExprKind::Neg(a) => a.tables(bound, out),
            ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => {
                a.tables(bound, out);
                b.tables(bound, out);
            }
            ExprKind::StrOp { left, right, .. } => {
                left.tables(bound, out);
                right.tables(bound, out);
            }
            ExprKind::Call(_, args) => {
                for a in args {
                    a.tables(bound, out);
                }
            }
            ExprKind::In { expr, list, .. } | ExprKind::HasAny { expr, list, .. } => {
                expr.tables(bound, out);
                for a in list {
                    a.tables(bound, out);
                }
            }
            ExprKind::Between {
                expr, low, high, ..
            } => {
                expr.tables(bound, out);
                low.tables(bound, out);
                high.tables(bound, out);
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ExprKind {
    Null,
    Bool(bool),
    Long(i64),
    Real(f64),
    Str(String),
    DateTime(DateTime<Utc>),
    /// A timespan in nanoseconds (KQL's tick is 100 ns).
    Timespan(i64),
    Dynamic(serde_json::Value),
    Ident(String),
    /// `$left.X` (true) or `$right.X` (false).
    Side(bool, String),
    Star,
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// A string operator: `has`, `contains`, `startswith`… with `!` and
    /// `_cs` forms.
    StrOp {
        op: StrOp,
        negated: bool,
        case_sensitive: bool,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `x in (T | project c)`: membership in a query's one column.
    InQuery {
        expr: Box<Expr>,
        query: Box<Tabular>,
        negated: bool,
    },
    /// `has_any`, `has_all` with their list.
    HasAny {
        all: bool,
        expr: Box<Expr>,
        list: Vec<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    EqTilde,
    NotEqTilde,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrOp {
    Has,
    HasPrefix,
    HasSuffix,
    Contains,
    StartsWith,
    EndsWith,
    MatchesRegex,
}
