//! Recursive descent over the lexer's tokens.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::ast::*;
use crate::error::{ErrorKind, KqlError};
use crate::lexer::{tokenize, unit_nanos, Tok, Token};
use crate::TableName;

/// The tabular operators Tarn plans (for "did you mean").
pub(crate) const OPERATORS: &[&str] = &[
    "where",
    "filter",
    "project",
    "project-away",
    "project-keep",
    "project-rename",
    "project-reorder",
    "extend",
    "summarize",
    "count",
    "take",
    "limit",
    "top",
    "sort",
    "order",
    "distinct",
    "join",
    "lookup",
    "union",
    "mv-expand",
    "parse",
    "as",
    "serialize",
    "getschema",
    "render",
];

/// Operators KQL has and Tarn does not plan: named in the error.
const UNSUPPORTED_OPERATORS: &[&str] = &[
    "top-nested",
    "top-hitters",
    "make-series",
    "evaluate",
    "invoke",
    "fork",
    "facet",
    "partition",
    "sample",
    "sample-distinct",
    "scan",
    "search",
    "find",
    "mv-apply",
    "parse-where",
    "parse-kv",
    "project-smart",
    "reduce",
    "consume",
    "externaldata",
    "materialize",
    "graph-match",
    "make-graph",
];

pub(crate) fn parse(text: &str) -> Result<Script, KqlError> {
    let toks = tokenize(text)?;
    let mut p = Parser {
        text,
        toks,
        pos: 0,
        tabular_lets: Vec::new(),
        scalar_lets: Vec::new(),
        depth: 0,
    };
    p.script()
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Token>,
    pos: usize,
    tabular_lets: Vec<String>,
    scalar_lets: Vec<String>,
    /// How deep the parse is nested now (parentheses, calls, queries).
    depth: usize,
}

/// The deepest nesting a query may have: far beyond what anyone writes,
/// and well within the stack the parser and planner recurse on.
pub(crate) const MAX_DEPTH: usize = 128;

/// The most operands one chain of arithmetic or comparisons may have
/// (`a + b + …`); `and` and `or` chains are balanced and may be longer.
const MAX_CHAIN: usize = 256;

type R<T> = Result<T, KqlError>;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        let i = (self.pos + n).min(self.toks.len() - 1);
        &self.toks[i].tok
    }

    fn offset(&self) -> usize {
        self.toks[self.pos].offset
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    /// Enters one level of nesting, refusing a query nested too deeply.
    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!(
                "the query is nested more than {MAX_DEPTH} levels deep here"
            )));
        }
        Ok(())
    }

    fn err(&self, message: impl Into<String>) -> KqlError {
        KqlError::at(ErrorKind::Syntax, self.text, self.offset(), message)
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> KqlError {
        KqlError::at(ErrorKind::Syntax, self.text, offset, message)
    }

    fn describe(&self) -> String {
        match self.peek() {
            Tok::Eof => "the end of the query".into(),
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::Str(s) => format!("the string \"{s}\""),
            Tok::Long(v) => format!("the number {v}"),
            Tok::Real(v) => format!("the number {v}"),
            Tok::Timespan(_) | Tok::Raw(..) => "a literal".into(),
        }
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.is_sym(s) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str, what: &str) -> R<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.err(format!("expected '{s}' {what}, found {}", self.describe())))
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x.eq_ignore_ascii_case(w))
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str, what: &str) -> R<()> {
        if self.eat_word(w) {
            Ok(())
        } else {
            Err(self.err(format!("expected '{w}' {what}, found {}", self.describe())))
        }
    }

    fn ident(&mut self, what: &str) -> R<(String, usize)> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                let at = self.bump().offset;
                Ok((s, at))
            }
            _ => Err(self.err(format!("expected {what}, found {}", self.describe()))),
        }
    }

    /// Whether the next two tokens touch (`project` `-` `away`).
    fn adjacent(&self, n: usize) -> bool {
        let a = (self.pos + n).min(self.toks.len() - 1);
        let b = (a + 1).min(self.toks.len() - 1);
        self.toks[a].end == self.toks[b].offset
    }

    // ---- statements ----

    fn script(&mut self) -> R<Script> {
        let mut lets = Vec::new();
        let mut query_now = None;
        let mut sets_now = false;
        let mut query: Option<Tabular> = None;
        let mut explain = false;
        loop {
            while self.eat_sym(";") {}
            if *self.peek() == Tok::Eof {
                break;
            }
            let at = self.offset();
            if self.is_word("let") {
                self.bump();
                lets.push(self.let_statement()?);
            } else if self.is_word("set") && matches!(self.peek_at(1), Tok::Ident(_)) {
                self.bump();
                if let Some(now) = self.set_statement()? {
                    sets_now = true;
                    query_now = now;
                }
            } else if self.is_word("declare") || self.is_word("alias") || self.is_word("pattern") {
                let (w, _) = self.ident("a statement")?;
                return Err(unsupported(
                    self.text,
                    at,
                    format!("the '{w}' statement is not supported"),
                ));
            } else {
                if self.eat_word("explain") {
                    explain = true;
                }
                if query.is_some() {
                    return Err(self.err_at(
                        at,
                        "a query holds one tabular expression; this is a second one (end the query, or join/union them)",
                    ));
                }
                query = Some(self.tabular()?);
            }
            if !self.eat_sym(";") && *self.peek() != Tok::Eof {
                return Err(self.err(format!(
                    "expected '|', ';' or the end of the query, found {}",
                    self.describe()
                )));
            }
        }
        if explain && query.is_none() {
            return Err(self.err("'explain' needs a query after it"));
        }
        Ok(Script {
            text: self.text.to_string(),
            lets,
            query_now,
            sets_now,
            query,
            explain,
        })
    }

    fn let_statement(&mut self) -> R<Let> {
        let (name, offset) = self.ident("a name after 'let'")?;
        self.expect_sym("=", "after the name 'let' binds")?;
        // let f = (x: long) { … } — a user-defined function.
        if self.is_sym("(")
            && matches!(self.peek_at(1), Tok::Ident(_))
            && self.peek_at(2) == &Tok::Sym(":")
            || self.is_sym("(")
                && self.peek_at(1) == &Tok::Sym(")")
                && self.peek_at(2) == &Tok::Sym("{")
        {
            return Err(unsupported(
                self.text,
                offset,
                format!("'let {name} = (…) {{ … }}': user-defined functions are not supported; bind a scalar or a tabular expression"),
            ));
        }
        let value = if self.tabular_ahead() {
            self.tabular_lets.push(name.clone());
            LetValue::Tabular(self.tabular()?)
        } else {
            self.scalar_lets.push(name.clone());
            LetValue::Scalar(self.expr()?)
        };
        Ok(Let { name, value })
    }

    /// Whether a tabular expression (not a scalar) starts here.
    fn tabular_ahead(&self) -> bool {
        match self.peek() {
            Tok::Ident(w) => {
                let lw = w.to_ascii_lowercase();
                if [
                    "datatable",
                    "range",
                    "union",
                    "print",
                    "materialize",
                    "view",
                ]
                .contains(&lw.as_str())
                {
                    return !(lw == "range" && self.peek_at(1) == &Tok::Sym("("));
                }
                if self.tabular_lets.contains(w) {
                    return true;
                }
                if self.scalar_lets.contains(w) {
                    return false;
                }
                // A name (maybe dotted) followed by a pipe or the end of
                // the statement is a table.
                let mut n = 1;
                while self.peek_at(n) == &Tok::Sym(".")
                    && matches!(self.peek_at(n + 1), Tok::Ident(_))
                {
                    n += 2;
                }
                matches!(self.peek_at(n), Tok::Sym("|") | Tok::Sym(";") | Tok::Eof)
            }
            Tok::Sym("(") => {
                // (T | where …)
                let mut depth = 0;
                let mut i = self.pos;
                while i < self.toks.len() {
                    match &self.toks[i].tok {
                        Tok::Sym("(") => depth += 1,
                        Tok::Sym(")") => {
                            depth -= 1;
                            if depth == 0 {
                                return false;
                            }
                        }
                        Tok::Sym("|") if depth == 1 => return true,
                        Tok::Eof => return false,
                        _ => {}
                    }
                    i += 1;
                }
                false
            }
            _ => false,
        }
    }

    /// A `set` statement: `Some(now)` for `set query_now [= datetime(…)]`,
    /// `None` for the properties that change nothing here.
    fn set_statement(&mut self) -> R<Option<Option<DateTime<Utc>>>> {
        let (name, at) = self.ident("a request property")?;
        let value = if self.eat_sym("=") {
            Some(self.expr()?)
        } else {
            None
        };
        match name.to_ascii_lowercase().as_str() {
            "query_now" => match value.map(|v| v.kind) {
                Some(ExprKind::DateTime(t)) => Ok(Some(Some(t))),
                None => Ok(Some(None)),
                _ => Err(self.err_at(
                    at,
                    "set query_now needs a datetime: set query_now = datetime(2026-10-25T00:00:00Z);",
                )),
            },
            // Result truncation: Tarn streams results, it does not
            // truncate them, so these change nothing.
            "notruncation" | "truncationmaxrecords" | "truncationmaxsize" => Ok(None),
            _ => Err(unsupported(
                self.text,
                at,
                format!("the request property '{name}' is not supported (only query_now and the truncation properties are)"),
            )),
        }
    }

    // ---- tabular expressions ----

    #[recursive::recursive]
    fn tabular(&mut self) -> R<Tabular> {
        self.enter()?;
        let t = self.tabular_inner();
        self.depth -= 1;
        t
    }

    fn tabular_inner(&mut self) -> R<Tabular> {
        let source = self.source()?;
        let (source, mut ops) = match source {
            // (T | where …) as a source: its operators come first.
            SourceOrNested::Nested(t) => (t.source, t.ops),
            SourceOrNested::Source(s) => (s, Vec::new()),
        };
        while self.is_sym("|") {
            self.bump();
            if let Some(op) = self.operator()? {
                ops.push(op);
            }
        }
        Ok(Tabular { source, ops })
    }

    fn source(&mut self) -> R<SourceOrNested> {
        let at = self.offset();
        if self.eat_sym("(") {
            let t = self.tabular()?;
            self.expect_sym(")", "to close the parenthesised query")?;
            return Ok(SourceOrNested::Nested(Box::new(t)));
        }
        let (word, _) = match self.peek() {
            Tok::Ident(_) => self.ident("a table")?,
            _ => {
                return Err(self.err(format!(
                    "expected a table name or a tabular expression, found {}",
                    self.describe()
                )))
            }
        };
        let lw = word.to_ascii_lowercase();
        let source = match lw.as_str() {
            "datatable" if self.is_sym("(") => self.datatable()?,
            "range" if !self.is_sym("(") && !self.is_sym("|") => self.range()?,
            "union" if !self.is_sym("|") && !self.is_sym(";") => {
                let (kind_outer, with_source) = self.union_params()?;
                let tables = self.union_tables()?;
                Source::Union {
                    kind_outer,
                    with_source,
                    tables,
                }
            }
            "print" => {
                let exprs = self.named_list()?;
                Source::Print(exprs)
            }
            "materialize" if self.is_sym("(") => {
                self.bump();
                let t = self.tabular()?;
                self.expect_sym(")", "to close materialize(")?;
                return Ok(SourceOrNested::Nested(Box::new(t)));
            }
            "search" | "find" | "evaluate" | "externaldata" | "view" => {
                return Err(unsupported(
                    self.text,
                    at,
                    format!("the '{word}' operator is not supported; name a table and filter it with 'where'"),
                ))
            }
            _ => {
                let mut parts = vec![word];
                while self.is_sym(".") && matches!(self.peek_at(1), Tok::Ident(_)) {
                    self.bump();
                    parts.push(self.ident("a name")?.0);
                }
                if parts.len() > 3 {
                    return Err(self.err_at(at, "a table is named T, workspace.T or catalog.workspace.T"));
                }
                let table = parts.pop().unwrap_or_default();
                let workspace = parts.pop();
                let catalog = parts.pop();
                Source::Table(TableName {
                    catalog,
                    workspace,
                    table,
                    offset: at,
                })
            }
        };
        Ok(SourceOrNested::Source(source))
    }

    fn datatable(&mut self) -> R<Source> {
        self.expect_sym("(", "after datatable")?;
        let mut columns = Vec::new();
        loop {
            let (name, _) = self.ident("a column name")?;
            self.expect_sym(":", "between the column's name and its type")?;
            let ty = self.type_name()?;
            columns.push((name, ty));
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")", "to close the column list")?;
        self.expect_sym("[", "to open datatable's values")?;
        let mut values = Vec::new();
        if !self.is_sym("]") {
            loop {
                values.push(self.expr()?);
                if !self.eat_sym(",") {
                    break;
                }
                if self.is_sym("]") {
                    break;
                }
            }
        }
        self.expect_sym("]", "to close datatable's values")?;
        if columns.is_empty() || values.len() % columns.len() != 0 {
            return Err(self.err(format!(
                "datatable has {} columns but {} values, not a whole number of rows",
                columns.len(),
                values.len()
            )));
        }
        Ok(Source::Datatable { columns, values })
    }

    fn range(&mut self) -> R<Source> {
        let (name, _) = self.ident("the column range makes")?;
        self.expect_word("from", "in range x from … to … step …")?;
        let from = self.expr()?;
        self.expect_word("to", "in range x from … to … step …")?;
        let to = self.expr()?;
        self.expect_word("step", "in range x from … to … step …")?;
        let step = self.expr()?;
        Ok(Source::Range {
            name,
            from,
            to,
            step,
        })
    }

    fn type_name(&mut self) -> R<Type> {
        // `datetime` and `dynamic` lex as ordinary words unless followed
        // by a parenthesis.
        let (t, at) = self.ident("a type")?;
        type_named(&t).ok_or_else(|| {
            self.err_at(at, format!("unknown type '{t}'")).suggest(
                &t,
                [
                    "bool", "int", "long", "real", "double", "decimal", "string", "datetime",
                    "timespan", "dynamic", "guid",
                ],
            )
        })
    }

    fn union_params(&mut self) -> R<(bool, Option<String>)> {
        let mut outer = true;
        let mut with_source = None;
        loop {
            if self.is_word("kind") && self.peek_at(1) == &Tok::Sym("=") {
                self.bump();
                self.bump();
                let (k, at) = self.ident("inner or outer")?;
                outer = match k.to_ascii_lowercase().as_str() {
                    "outer" => true,
                    "inner" => false,
                    _ => {
                        return Err(
                            self.err_at(at, format!("union kind is inner or outer, not '{k}'"))
                        )
                    }
                };
            } else if self.is_word("withsource") && self.peek_at(1) == &Tok::Sym("=") {
                self.bump();
                self.bump();
                with_source = Some(self.ident("a column name")?.0);
            } else if self.is_word("isfuzzy") && self.peek_at(1) == &Tok::Sym("=") {
                self.bump();
                self.bump();
                self.bump();
            } else {
                break;
            }
        }
        Ok((outer, with_source))
    }

    fn union_tables(&mut self) -> R<Vec<Tabular>> {
        let mut tables = Vec::new();
        loop {
            tables.push(self.join_side()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(tables)
    }

    /// The right side of a join, lookup or union: `(query)` or a name.
    fn join_side(&mut self) -> R<Tabular> {
        if self.is_sym("(") {
            self.bump();
            let t = self.tabular()?;
            self.expect_sym(")", "to close the parenthesised query")?;
            return Ok(t);
        }
        let at = self.offset();
        match self.source()? {
            SourceOrNested::Source(source @ Source::Table(_)) => Ok(Tabular {
                source,
                ops: Vec::new(),
            }),
            SourceOrNested::Nested(t) => Ok(*t),
            SourceOrNested::Source(_) => {
                Err(self.err_at(at, "put a query here in parentheses: (T | where …)"))
            }
        }
    }

    fn operator(&mut self) -> R<Option<Op>> {
        let at = self.offset();
        let (mut name, _) = match self.peek() {
            Tok::Ident(_) => self.ident("an operator")?,
            _ => {
                return Err(self.err(format!(
                    "expected an operator after '|', found {}",
                    self.describe()
                )))
            }
        };
        // project-away, mv-expand, top-nested…: words joined by '-'.
        while self.is_sym("-") && self.toks[self.pos - 1].end == self.offset() && self.adjacent(0) {
            self.bump();
            name.push('-');
            name.push_str(&self.ident("an operator")?.0);
        }
        let lname = name.to_ascii_lowercase();
        let kind = match lname.as_str() {
            "where" | "filter" => OpKind::Where(self.expr()?),
            "project" => OpKind::Project(self.named_list()?),
            "project-away" => OpKind::ProjectAway(self.name_list()?),
            "project-keep" => OpKind::ProjectKeep(self.name_list()?),
            "project-reorder" => {
                let mut names = Vec::new();
                loop {
                    names.push(self.name_pattern()?);
                    // asc/desc/granny-asc orders of wildcards: ignored.
                    if self.is_word("asc") || self.is_word("desc") {
                        self.bump();
                    }
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                OpKind::ProjectReorder(names)
            }
            "project-rename" => {
                let mut renames = Vec::new();
                loop {
                    let (new, at) = self.ident("a new column name")?;
                    self.expect_sym("=", "in project-rename New = Old")?;
                    let (old, _) = self.ident("the column to rename")?;
                    renames.push((new, old, at));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                OpKind::ProjectRename(renames)
            }
            "extend" => OpKind::Extend(self.named_list()?),
            "summarize" => {
                self.hints()?;
                let aggregates = if self.is_word("by") {
                    Vec::new()
                } else {
                    self.named_list()?
                };
                let by = if self.eat_word("by") {
                    if matches!(
                        self.peek(),
                        Tok::Eof | Tok::Sym("|") | Tok::Sym(";") | Tok::Sym(")")
                    ) {
                        return Err(self.err("expected a grouping expression after 'by'"));
                    }
                    self.named_list()?
                } else {
                    Vec::new()
                };
                if aggregates.is_empty() && by.is_empty() {
                    return Err(
                        self.err_at(at, "summarize needs an aggregate, a 'by' clause or both")
                    );
                }
                OpKind::Summarize { aggregates, by }
            }
            "count" => OpKind::Count,
            "take" | "limit" => OpKind::Take(self.expr()?),
            "top" => {
                let count = self.expr()?;
                self.expect_word("by", "in top N by …")?;
                OpKind::Top {
                    count,
                    by: self.sort_keys()?,
                }
            }
            "sort" | "order" => {
                self.expect_word("by", &format!("after '{name}'"))?;
                OpKind::Sort(self.sort_keys()?)
            }
            "distinct" => {
                if self.eat_sym("*") {
                    OpKind::Distinct(Vec::new())
                } else {
                    OpKind::Distinct(self.named_list()?)
                }
            }
            "join" => {
                let mut kind = JoinKind::InnerUnique;
                loop {
                    if self.is_word("kind") && self.peek_at(1) == &Tok::Sym("=") {
                        self.bump();
                        self.bump();
                        let (k, kat) = self.ident("a join kind")?;
                        kind = join_kind(&k).ok_or_else(|| {
                            self.err_at(kat, format!("unknown join kind '{k}'"))
                                .suggest(&k, JOIN_KINDS.iter().copied())
                        })?;
                    } else if !self.hint()? {
                        break;
                    }
                }
                let right = Box::new(self.join_side()?);
                let on = self.join_on()?;
                OpKind::Join { kind, right, on }
            }
            "lookup" => {
                let mut outer = true;
                loop {
                    if self.is_word("kind") && self.peek_at(1) == &Tok::Sym("=") {
                        self.bump();
                        self.bump();
                        let (k, kat) = self.ident("a lookup kind")?;
                        outer = match k.to_ascii_lowercase().as_str() {
                            "leftouter" => true,
                            "inner" => false,
                            _ => {
                                return Err(self.err_at(
                                    kat,
                                    format!("lookup kind is leftouter or inner, not '{k}'"),
                                ))
                            }
                        };
                    } else if !self.hint()? {
                        break;
                    }
                }
                let right = Box::new(self.join_side()?);
                let on = self.join_on()?;
                OpKind::Lookup { outer, right, on }
            }
            "union" => {
                let (kind_outer, with_source) = self.union_params()?;
                OpKind::Union {
                    kind_outer,
                    with_source,
                    tables: self.union_tables()?,
                }
            }
            "mv-expand" => {
                loop {
                    let is_param = matches!(self.peek(), Tok::Ident(w) if ["bagexpansion", "with_itemindex", "kind"].contains(&w.to_ascii_lowercase().as_str()))
                        && self.peek_at(1) == &Tok::Sym("=");
                    if is_param {
                        let (w, wat) = self.ident("a parameter")?;
                        if w.eq_ignore_ascii_case("with_itemindex") {
                            return Err(unsupported(
                                self.text,
                                wat,
                                "mv-expand with_itemindex is not supported",
                            ));
                        }
                        self.bump();
                        self.bump();
                    } else if !self.hint()? {
                        break;
                    }
                }
                let mut columns = Vec::new();
                loop {
                    let n = self.named()?;
                    let to_type = if self.eat_word("to") {
                        self.expect_word("typeof", "in 'to typeof(type)'")?;
                        self.expect_sym("(", "after typeof")?;
                        let t = self.type_name()?;
                        self.expect_sym(")", "to close typeof(")?;
                        Some(t)
                    } else {
                        None
                    };
                    columns.push(MvColumn {
                        name: n.name,
                        expr: n.expr,
                        to_type,
                    });
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                let limit = if self.eat_word("limit") {
                    Some(self.expr()?)
                } else {
                    None
                };
                OpKind::MvExpand { columns, limit }
            }
            "parse" => {
                let mut regex = false;
                if self.is_word("kind") && self.peek_at(1) == &Tok::Sym("=") {
                    self.bump();
                    self.bump();
                    let (k, kat) = self.ident("simple, regex or relaxed")?;
                    regex = match k.to_ascii_lowercase().as_str() {
                        "simple" | "relaxed" => false,
                        "regex" => true,
                        _ => {
                            return Err(self.err_at(
                                kat,
                                format!("parse kind is simple, regex or relaxed, not '{k}'"),
                            ))
                        }
                    };
                    if self.is_word("flags") && self.peek_at(1) == &Tok::Sym("=") {
                        return Err(unsupported(
                            self.text,
                            self.offset(),
                            "parse flags are not supported",
                        ));
                    }
                }
                let source = self.postfix()?;
                self.expect_word("with", "in parse Column with …")?;
                let mut parts = Vec::new();
                loop {
                    match self.peek().clone() {
                        Tok::Str(s) => {
                            self.bump();
                            parts.push(ParsePart::Literal(s));
                        }
                        Tok::Sym("*") => {
                            self.bump();
                            parts.push(ParsePart::Any);
                        }
                        Tok::Ident(n) => {
                            self.bump();
                            let ty = if self.eat_sym(":") {
                                self.type_name()?
                            } else {
                                Type::String
                            };
                            parts.push(ParsePart::Column(n, ty));
                        }
                        _ => break,
                    }
                }
                if !parts.iter().any(|p| matches!(p, ParsePart::Column(..))) {
                    return Err(self.err_at(at, "parse names no column to fill: write parse Col with \"prefix\" Name:type \"suffix\" *"));
                }
                OpKind::Parse {
                    source,
                    parts,
                    regex,
                }
            }
            "as" => {
                self.hints()?;
                OpKind::As(self.ident("a name")?.0)
            }
            "serialize" => {
                if matches!(
                    self.peek(),
                    Tok::Eof | Tok::Sym("|") | Tok::Sym(";") | Tok::Sym(")")
                ) {
                    OpKind::Serialize(Vec::new())
                } else {
                    OpKind::Serialize(self.named_list()?)
                }
            }
            "getschema" => OpKind::GetSchema,
            "render" => {
                // A chart hint for KQL's own front ends: the rows are
                // what Tarn returns, so the hint is read and dropped.
                while !matches!(
                    self.peek(),
                    Tok::Eof | Tok::Sym("|") | Tok::Sym(";") | Tok::Sym(")")
                ) {
                    self.bump();
                }
                return Ok(None);
            }
            _ if UNSUPPORTED_OPERATORS.contains(&lname.as_str()) => {
                return Err(unsupported(
                    self.text,
                    at,
                    format!("the '{name}' operator is not supported"),
                ))
            }
            _ => {
                return Err(KqlError::at(
                    ErrorKind::Syntax,
                    self.text,
                    at,
                    format!("unknown operator '{name}'"),
                )
                .suggest(&name, OPERATORS.iter().copied()))
            }
        };
        Ok(Some(Op { offset: at, kind }))
    }

    /// `hint.x = y` parameters: read and ignored (the optimiser plans).
    fn hint(&mut self) -> R<bool> {
        if self.is_word("hint") && self.peek_at(1) == &Tok::Sym(".") {
            self.bump();
            self.bump();
            self.ident("a hint name")?;
            self.expect_sym("=", "after the hint's name")?;
            self.bump();
            return Ok(true);
        }
        Ok(false)
    }

    fn hints(&mut self) -> R<()> {
        while self.hint()? {}
        Ok(())
    }

    fn join_on(&mut self) -> R<Vec<JoinOn>> {
        self.expect_word("on", "after the join's right side")?;
        let mut on = Vec::new();
        loop {
            let at = self.offset();
            let e = self.expr()?;
            match e.kind {
                ExprKind::Ident(c) => on.push(JoinOn::Same(c, at)),
                ExprKind::Binary(BinOp::Eq, l, r) => match (l.kind, r.kind) {
                    (ExprKind::Side(true, a), ExprKind::Side(false, b))
                    | (ExprKind::Side(false, b), ExprKind::Side(true, a)) => {
                        on.push(JoinOn::Pair(a, b, at))
                    }
                    _ => {
                        return Err(
                            self.err_at(at, "a join condition is Column or $left.A == $right.B")
                        )
                    }
                },
                _ => {
                    return Err(self.err_at(at, "a join condition is Column or $left.A == $right.B"))
                }
            }
            if !self.eat_sym(",") && !self.eat_word("and") {
                break;
            }
        }
        Ok(on)
    }

    fn sort_keys(&mut self) -> R<Vec<SortKey>> {
        let mut keys = Vec::new();
        loop {
            let expr = self.expr()?;
            let mut desc = true;
            if self.eat_word("asc") {
                desc = false;
            } else if self.eat_word("desc") {
                desc = true;
            }
            let mut nulls_first = None;
            if self.eat_word("nulls") {
                if self.eat_word("first") {
                    nulls_first = Some(true);
                } else if self.eat_word("last") {
                    nulls_first = Some(false);
                } else {
                    return Err(self.err("expected 'first' or 'last' after 'nulls'"));
                }
            }
            keys.push(SortKey {
                expr,
                desc,
                nulls_first,
            });
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(keys)
    }

    fn name_pattern(&mut self) -> R<(String, usize)> {
        let at = self.offset();
        let mut s = String::new();
        loop {
            match self.peek().clone() {
                Tok::Ident(w) if s.is_empty() || s.ends_with('*') => {
                    self.bump();
                    s.push_str(&w);
                }
                Tok::Sym("*") => {
                    self.bump();
                    s.push('*');
                }
                _ => break,
            }
            if !self.adjacent(0) && self.pos > 0 {
                // The next token does not touch this one: the name ended.
                let prev_end = self.toks[self.pos - 1].end;
                if prev_end != self.offset() {
                    break;
                }
            }
        }
        if s.is_empty() {
            return Err(self.err(format!("expected a column name, found {}", self.describe())));
        }
        Ok((s, at))
    }

    fn name_list(&mut self) -> R<Vec<(String, usize)>> {
        let mut names = Vec::new();
        loop {
            names.push(self.name_pattern()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(names)
    }

    fn named(&mut self) -> R<NamedExpr> {
        if matches!(self.peek(), Tok::Ident(_)) && self.peek_at(1) == &Tok::Sym("=") {
            let (name, _) = self.ident("a name")?;
            self.bump();
            return Ok(NamedExpr {
                name: Some(name),
                expr: self.expr()?,
            });
        }
        if self.is_sym("(") {
            // (a, b) = arg_max(…): names for a multi-column aggregate.
            let save = self.pos;
            self.bump();
            let mut ok = true;
            while ok {
                ok = matches!(self.peek(), Tok::Ident(_));
                self.bump();
                if !self.eat_sym(",") {
                    break;
                }
            }
            if ok && self.eat_sym(")") && self.is_sym("=") {
                return Err(unsupported(
                    self.text,
                    self.toks[save].offset,
                    "naming several columns at once, (a, b) = …, is not supported; name them with project-rename after",
                ));
            }
            self.pos = save;
        }
        Ok(NamedExpr {
            name: None,
            expr: self.expr()?,
        })
    }

    fn named_list(&mut self) -> R<Vec<NamedExpr>> {
        let mut out = Vec::new();
        loop {
            out.push(self.named()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(out)
    }

    // ---- scalar expressions ----

    #[recursive::recursive]
    fn expr(&mut self) -> R<Expr> {
        self.enter()?;
        let e = self.or_expr();
        self.depth -= 1;
        let e = e?;
        // Chains nest their left operands: the tree may be deeper than
        // the parse was. Measured without recursion.
        if tree_depth(&e) > MAX_TREE_DEPTH {
            return Err(self.err_at(
                e.offset,
                format!("this expression nests more than {MAX_TREE_DEPTH} operations deep; split it with extend"),
            ));
        }
        Ok(e)
    }

    fn or_expr(&mut self) -> R<Expr> {
        let mut operands = vec![self.and_expr()?];
        let mut at = Vec::new();
        while self.is_word("or") {
            at.push(self.bump().offset);
            operands.push(self.and_expr()?);
        }
        Ok(balanced(BinOp::Or, operands, &at))
    }

    fn and_expr(&mut self) -> R<Expr> {
        let mut operands = vec![self.comparison()?];
        let mut at = Vec::new();
        while self.is_word("and") {
            at.push(self.bump().offset);
            operands.push(self.comparison()?);
        }
        Ok(balanced(BinOp::And, operands, &at))
    }

    /// Counts one more operand of an arithmetic chain.
    fn chain(&self, n: &mut usize) -> R<()> {
        *n += 1;
        if *n > MAX_CHAIN {
            return Err(self.err(format!(
                "more than {MAX_CHAIN} operands in one chain of operators; split the expression with extend"
            )));
        }
        Ok(())
    }

    fn comparison(&mut self) -> R<Expr> {
        let left = self.additive()?;
        let at = self.offset();
        // `!has`, `!in`, `!contains`…: a '!' touching a word.
        let negated =
            self.is_sym("!") && matches!(self.peek_at(1), Tok::Ident(_)) && self.adjacent(0);
        let word = match (negated, self.peek(), self.peek_at(1)) {
            (true, _, Tok::Ident(w)) => Some(w.to_ascii_lowercase()),
            (false, Tok::Ident(w), _) => Some(w.to_ascii_lowercase()),
            _ => None,
        };
        if let Some(w) = word {
            let str_op = match w.as_str() {
                "has" | "has_cs" => Some(StrOp::Has),
                "hasprefix" | "hasprefix_cs" => Some(StrOp::HasPrefix),
                "hassuffix" | "hassuffix_cs" => Some(StrOp::HasSuffix),
                "contains" | "contains_cs" => Some(StrOp::Contains),
                "startswith" | "startswith_cs" => Some(StrOp::StartsWith),
                "endswith" | "endswith_cs" => Some(StrOp::EndsWith),
                "matches" => Some(StrOp::MatchesRegex),
                _ => None,
            };
            if let Some(op) = str_op {
                if negated {
                    self.bump();
                }
                self.bump();
                if op == StrOp::MatchesRegex {
                    self.expect_word("regex", "after 'matches'")?;
                }
                let right = self.additive()?;
                return Ok(Expr {
                    offset: at,
                    kind: ExprKind::StrOp {
                        op,
                        negated,
                        case_sensitive: w.ends_with("_cs") || op == StrOp::MatchesRegex,
                        left: Box::new(left),
                        right: Box::new(right),
                    },
                });
            }
            if w == "in" {
                if negated {
                    self.bump();
                }
                self.bump();
                let case_insensitive = self.is_sym("~");
                if case_insensitive {
                    self.bump();
                }
                // in (T | project c) and in ((T | project c)): a query.
                if self.is_sym("(") && !case_insensitive {
                    let save = self.pos;
                    self.bump();
                    if self.tabular_ahead() {
                        let query = self.tabular()?;
                        self.expect_sym(")", "to close in (…)")?;
                        return Ok(Expr {
                            offset: at,
                            kind: ExprKind::InQuery {
                                expr: Box::new(left),
                                query: Box::new(query),
                                negated,
                            },
                        });
                    }
                    self.pos = save;
                }
                let list = self.paren_list("in (…)")?;
                return Ok(Expr {
                    offset: at,
                    kind: ExprKind::In {
                        expr: Box::new(left),
                        list,
                        negated,
                        case_insensitive,
                    },
                });
            }
            if (w == "has_any" || w == "has_all") && !negated {
                self.bump();
                let list = self.paren_list(&format!("{w} (…)"))?;
                return Ok(Expr {
                    offset: at,
                    kind: ExprKind::HasAny {
                        all: w == "has_all",
                        expr: Box::new(left),
                        list,
                    },
                });
            }
            if w == "between" {
                if negated {
                    self.bump();
                }
                self.bump();
                self.expect_sym("(", "after between")?;
                let low = self.additive()?;
                self.expect_sym("..", "between low and high: between (a .. b)")?;
                let high = self.additive()?;
                self.expect_sym(")", "to close between (a .. b)")?;
                return Ok(Expr {
                    offset: at,
                    kind: ExprKind::Between {
                        expr: Box::new(left),
                        low: Box::new(low),
                        high: Box::new(high),
                        negated,
                    },
                });
            }
            if negated {
                return Err(self
                    .err_at(at + 1, format!("'!{w}' is not an operator"))
                    .suggest(
                        &w,
                        [
                            "has",
                            "contains",
                            "startswith",
                            "endswith",
                            "in",
                            "between",
                            "has_cs",
                            "contains_cs",
                        ],
                    ));
            }
        }
        let op = match self.peek() {
            Tok::Sym("==") => BinOp::Eq,
            Tok::Sym("!=") | Tok::Sym("<>") => BinOp::NotEq,
            Tok::Sym("=~") => BinOp::EqTilde,
            Tok::Sym("!~") => BinOp::NotEqTilde,
            Tok::Sym("<") => BinOp::Lt,
            Tok::Sym("<=") => BinOp::LtEq,
            Tok::Sym(">") => BinOp::Gt,
            Tok::Sym(">=") => BinOp::GtEq,
            Tok::Sym("=") => {
                return Err(
                    self.err("'=' assigns a name; compare with '==' (or '=~' ignoring case)")
                )
            }
            _ => return Ok(left),
        };
        self.bump();
        let right = self.additive()?;
        Ok(bin(op, left, right, at))
    }

    fn paren_list(&mut self, what: &str) -> R<Vec<Expr>> {
        self.expect_sym("(", &format!("in {what}"))?;
        let mut list = Vec::new();
        if !self.is_sym(")") {
            loop {
                list.push(self.expr()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.expect_sym(")", &format!("to close {what}"))?;
        Ok(list)
    }

    fn additive(&mut self) -> R<Expr> {
        let mut left = self.multiplicative()?;
        let mut n = 0;
        loop {
            self.chain(&mut n)?;
            let op = match self.peek() {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                _ => return Ok(left),
            };
            let at = self.bump().offset;
            let right = self.multiplicative()?;
            left = bin(op, left, right, at);
        }
    }

    fn multiplicative(&mut self) -> R<Expr> {
        let mut left = self.unary()?;
        let mut n = 0;
        loop {
            self.chain(&mut n)?;
            let op = match self.peek() {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                Tok::Sym("%") => BinOp::Mod,
                _ => return Ok(left),
            };
            let at = self.bump().offset;
            let right = self.unary()?;
            left = bin(op, left, right, at);
        }
    }

    fn unary(&mut self) -> R<Expr> {
        self.enter()?;
        let e = self.unary_inner();
        self.depth -= 1;
        e
    }

    fn unary_inner(&mut self) -> R<Expr> {
        if self.is_sym("-") {
            let at = self.bump().offset;
            let e = self.unary()?;
            return Ok(match e.kind {
                ExprKind::Long(v) => Expr {
                    offset: at,
                    kind: ExprKind::Long(-v),
                },
                ExprKind::Real(v) => Expr {
                    offset: at,
                    kind: ExprKind::Real(-v),
                },
                ExprKind::Timespan(v) => Expr {
                    offset: at,
                    kind: ExprKind::Timespan(-v),
                },
                kind => Expr {
                    offset: at,
                    kind: ExprKind::Neg(Box::new(Expr {
                        offset: e.offset,
                        kind,
                    })),
                },
            });
        }
        if self.is_sym("+") {
            self.bump();
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> R<Expr> {
        let mut e = self.primary()?;
        let mut n = 0;
        loop {
            self.chain(&mut n)?;
            if self.is_sym(".") && matches!(self.peek_at(1), Tok::Ident(_)) {
                let at = self.bump().offset;
                let (name, _) = self.ident("a property name")?;
                e = Expr {
                    offset: at,
                    kind: ExprKind::Member(Box::new(e), name),
                };
            } else if self.is_sym("[") {
                let at = self.bump().offset;
                let index = self.expr()?;
                self.expect_sym("]", "to close the index")?;
                e = Expr {
                    offset: at,
                    kind: ExprKind::Index(Box::new(e), Box::new(index)),
                };
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> R<Expr> {
        let t = self.bump();
        let at = t.offset;
        let kind = match t.tok {
            Tok::Long(v) => ExprKind::Long(v),
            Tok::Real(v) => ExprKind::Real(v),
            Tok::Timespan(v) => ExprKind::Timespan(v),
            Tok::Str(s) => {
                // Adjacent string literals concatenate.
                let mut s = s;
                while let Tok::Str(next) = self.peek().clone() {
                    self.bump();
                    s.push_str(&next);
                }
                ExprKind::Str(s)
            }
            Tok::Raw(name, raw) => self.raw_literal(&name, &raw, at)?,
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect_sym(")", "to close the parenthesis")?;
                return Ok(e);
            }
            Tok::Sym("*") => ExprKind::Star,
            Tok::Sym("[") => {
                // A bare list in a `let`: treated as dynamic([…]).
                let mut list = Vec::new();
                if !self.is_sym("]") {
                    loop {
                        list.push(self.expr()?);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                }
                self.expect_sym("]", "to close the list")?;
                let values: Option<Vec<serde_json::Value>> =
                    list.iter().map(literal_json).collect();
                match values {
                    Some(v) => ExprKind::Dynamic(serde_json::Value::Array(v)),
                    None => return Err(self.err_at(at, "a list literal holds only constants")),
                }
            }
            Tok::Ident(name) => {
                let lname = name.to_ascii_lowercase();
                if lname == "true" {
                    ExprKind::Bool(true)
                } else if lname == "false" {
                    ExprKind::Bool(false)
                } else if (name == "$left" || name == "$right") && self.is_sym(".") {
                    self.bump();
                    let (col, _) = self.ident("a column name")?;
                    ExprKind::Side(name == "$left", col)
                } else if self.is_sym("(") {
                    self.bump();
                    let mut args = Vec::new();
                    if !self.is_sym(")") {
                        loop {
                            args.push(self.expr()?);
                            if !self.eat_sym(",") {
                                break;
                            }
                        }
                    }
                    self.expect_sym(")", &format!("to close {name}("))?;
                    ExprKind::Call(name, args)
                } else {
                    ExprKind::Ident(name)
                }
            }
            Tok::Eof => return Err(self.err_at(at, "the query ends where a value was expected")),
            other => {
                let what = match other {
                    Tok::Sym(s) => format!("'{s}'"),
                    _ => "this".into(),
                };
                return Err(self.err_at(at, format!("expected a value, found {what}")));
            }
        };
        Ok(Expr { offset: at, kind })
    }

    fn raw_literal(&self, name: &str, raw: &str, at: usize) -> R<ExprKind> {
        let unquoted = raw.trim().trim_matches(|c| c == '"' || c == '\'');
        if unquoted.eq_ignore_ascii_case("null") {
            return Ok(ExprKind::Null);
        }
        match name {
            "datetime" => parse_datetime(unquoted).map(ExprKind::DateTime).ok_or_else(|| {
                self.err_at(at, format!("'{raw}' is not a datetime: write datetime(2026-10-25) or datetime(2026-10-25T13:45:00Z)"))
            }),
            "timespan" | "time" => parse_timespan(unquoted).map(ExprKind::Timespan).ok_or_else(|| {
                self.err_at(at, format!("'{raw}' is not a timespan: write 1d, 5m, 30s or timespan(01:30:00)"))
            }),
            _ => parse_dynamic(raw).map(ExprKind::Dynamic).ok_or_else(|| {
                self.err_at(at, format!("'{raw}' is not a dynamic literal: write dynamic([\"a\", 1]) or dynamic({{\"k\": \"v\"}})"))
            }),
        }
    }
}

enum SourceOrNested {
    Source(Source),
    Nested(Box<Tabular>),
}

const JOIN_KINDS: &[&str] = &[
    "innerunique",
    "inner",
    "leftouter",
    "rightouter",
    "fullouter",
    "leftanti",
    "rightanti",
    "leftsemi",
    "rightsemi",
    "anti",
    "leftantisemi",
    "rightantisemi",
];

fn join_kind(k: &str) -> Option<JoinKind> {
    Some(match k.to_ascii_lowercase().as_str() {
        "innerunique" => JoinKind::InnerUnique,
        "inner" => JoinKind::Inner,
        "leftouter" => JoinKind::LeftOuter,
        "rightouter" => JoinKind::RightOuter,
        "fullouter" => JoinKind::FullOuter,
        "leftanti" | "anti" | "leftantisemi" => JoinKind::LeftAnti,
        "rightanti" | "rightantisemi" => JoinKind::RightAnti,
        "leftsemi" => JoinKind::LeftSemi,
        "rightsemi" => JoinKind::RightSemi,
        _ => return None,
    })
}

pub(crate) fn type_named(t: &str) -> Option<Type> {
    Some(match t.to_ascii_lowercase().as_str() {
        "bool" | "boolean" => Type::Bool,
        "int" => Type::Int,
        "long" => Type::Long,
        "real" | "double" => Type::Real,
        "decimal" => Type::Decimal,
        "string" => Type::String,
        "datetime" | "date" => Type::DateTime,
        "timespan" | "time" => Type::Timespan,
        "dynamic" => Type::Dynamic,
        "guid" | "uniqueid" => Type::Guid,
        _ => return None,
    })
}

/// The deepest an expression's tree may be (what planning recurses on).
const MAX_TREE_DEPTH: usize = 320;

/// The depth of an expression's tree, walked with a stack of its own.
fn tree_depth(e: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Expr, usize)> = vec![(e, 1)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        let mut children: Vec<&Expr> = Vec::new();
        match &e.kind {
            ExprKind::Member(a, _) | ExprKind::Neg(a) => children.push(a),
            ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => children.extend([&**a, &**b]),
            ExprKind::StrOp { left, right, .. } => children.extend([&**left, &**right]),
            ExprKind::Call(_, args) => children.extend(args.iter()),
            ExprKind::In { expr, list, .. } | ExprKind::HasAny { expr, list, .. } => {
                children.push(expr);
                children.extend(list.iter());
            }
            ExprKind::Between {
                expr, low, high, ..
            } => children.extend([&**expr, &**low, &**high]),
            ExprKind::InQuery { expr, .. } => children.push(expr),
            _ => {}
        }
        stack.extend(children.into_iter().map(|c| (c, d + 1)));
    }
    deepest
}

/// `a or b or c …` as a balanced tree (its depth grows with the log of
/// its length), `at[i]` the offset of the operator before operand i + 1.
fn balanced(op: BinOp, mut operands: Vec<Expr>, at: &[usize]) -> Expr {
    if operands.len() == 1 {
        return operands.pop().expect("one operand");
    }
    let mid = operands.len() / 2;
    let right = operands.split_off(mid);
    let offset = at[mid - 1];
    let l = balanced(op, operands, &at[..mid - 1]);
    let r = balanced(op, right, &at[mid..]);
    bin(op, l, r, offset)
}

fn bin(op: BinOp, l: Expr, r: Expr, at: usize) -> Expr {
    Expr {
        offset: at,
        kind: ExprKind::Binary(op, Box::new(l), Box::new(r)),
    }
}

fn unsupported(text: &str, at: usize, message: impl Into<String>) -> KqlError {
    KqlError::at(ErrorKind::Unsupported, text, at, message)
}

fn literal_json(e: &Expr) -> Option<serde_json::Value> {
    Some(match &e.kind {
        ExprKind::Null => serde_json::Value::Null,
        ExprKind::Bool(b) => (*b).into(),
        ExprKind::Long(v) => (*v).into(),
        ExprKind::Real(v) => serde_json::Number::from_f64(*v)?.into(),
        ExprKind::Str(s) => s.clone().into(),
        ExprKind::Dynamic(v) => v.clone(),
        _ => return None,
    })
}

/// A datetime as KQL writes one: ISO 8601 with or without time, `T` or
/// space, fractions and `Z`; always UTC.
pub(crate) fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let s = s.trim_end_matches('Z').trim_end_matches('z');
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
    }
    None
}

/// A timespan as KQL writes one: `1d`, `1.5h`, `[-][d.]hh:mm[:ss[.fffffff]]`
/// or a bare number of days; in nanoseconds.
pub(crate) fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let nanos = if s.contains(':') {
        let (days, clock) = match s.split_once('.') {
            Some((d, rest)) if !d.contains(':') => (d.parse::<i64>().ok()?, rest),
            _ => (0, s),
        };
        let parts: Vec<&str> = clock.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return None;
        }
        let h: i64 = parts[0].parse().ok()?;
        let m: i64 = parts[1].parse().ok()?;
        let sec: f64 = parts.get(2).map_or(Some(0.0), |p| p.parse().ok())?;
        // Checked: a timespan past ±292 years does not fit; no wrapping.
        days.checked_mul(86_400_000_000_000)?
            .checked_add(h.checked_mul(3_600_000_000_000)?)?
            .checked_add(m.checked_mul(60_000_000_000)?)?
            .checked_add(checked_nanos(sec * 1e9)?)?
    } else {
        let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let v: f64 = num.trim().parse().ok()?;
        let unit = if unit.is_empty() { "d" } else { unit };
        checked_nanos(v * unit_nanos(unit)? as f64)?
    };
    Some(if neg { -nanos } else { nanos })
}

/// Nanoseconds as a whole number, if they fit.
fn checked_nanos(v: f64) -> Option<i64> {
    let v = v.round();
    (v.is_finite() && v.abs() < 9.2e18).then_some(v as i64)
}

/// A dynamic literal: JSON, with KQL's single-quoted strings allowed.
fn parse_dynamic(raw: &str) -> Option<serde_json::Value> {
    if let Ok(v) = serde_json::from_str(raw) {
        return Some(v);
    }
    // 'a' → "a" outside double-quoted strings.
    let mut out = String::with_capacity(raw.len());
    let mut quote: Option<char> = None;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'') => {
                quote = Some('\'');
                out.push('"');
            }
            (None, '"') => {
                quote = Some('"');
                out.push('"');
            }
            (Some('\''), '\'') => {
                quote = None;
                out.push('"');
            }
            (Some('\''), '"') => out.push_str("\\\""),
            (Some('"'), '"') => {
                quote = None;
                out.push('"');
            }
            (Some(_), '\\') => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (_, c) => out.push(c),
        }
    }
    serde_json::from_str(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hunting_query_parses() {
        let s = parse(
            "let threshold = 5;\nSigninLogs\n| where TimeGenerated > ago(1d) and ResultType != \"0\"\n| summarize Failures = count(), Users = dcount(UserPrincipalName) by IPAddress, bin(TimeGenerated, 1h)\n| where Failures > threshold\n| sort by Failures desc nulls last",
        )
        .unwrap();
        assert_eq!(s.lets.len(), 1);
        let q = s.query.unwrap();
        assert_eq!(q.ops.len(), 4);
        assert!(matches!(q.ops[1].kind, OpKind::Summarize { .. }));
    }

    #[test]
    fn an_unknown_operator_is_placed_and_named() {
        let e = parse("SigninLogs\n| whre x == 1").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.message.contains("unknown operator 'whre'"), "{e}");
        assert_eq!(e.hint.as_deref(), Some("did you mean `where`?"));
    }

    #[test]
    fn unsupported_operators_say_so_by_name() {
        let e = parse("T | top-nested 3 of A by count()").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.message.contains("'top-nested'"), "{e}");
        let e = parse("search \"x\"").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
    }

    #[test]
    fn odd_literals_are_errors_or_values_not_panics() {
        let s = parse("print s = \"\\é\", t = 'a\\q'").unwrap();
        assert!(s.query.is_some());
        assert_eq!(parse_timespan("999999999999.00:00:00"), None);
        assert!(parse("print t = timespan(999999999999.00:00:00)").is_err());
    }

    #[test]
    fn literals_parse() {
        assert_eq!(
            parse_timespan("1.02:03:04"),
            Some(((26 * 60 + 3) * 60 + 4) * 1_000_000_000)
        );
        assert_eq!(parse_timespan("5m"), Some(300_000_000_000));
        assert!(parse_datetime("2026-10-25").is_some());
        assert!(parse_datetime("2026-10-25 13:45:00.5").is_some());
        assert_eq!(
            parse_dynamic("['a', \"b\"]"),
            Some(serde_json::json!(["a", "b"]))
        );
        let s =
            parse("print x = datetime(2026-10-25T00:00:00Z), y = 1.5h, z = dynamic({'k': [1, 2]})")
                .unwrap();
        assert!(s.query.is_some());
    }

    #[test]
    fn tables_exclude_let_names() {
        let s = parse(
            "let A = SigninLogs | where x == 1; A | join (ws.AuditLogs) on y | union SecurityEvent",
        )
        .unwrap();
        let t: Vec<String> = s.tables().into_iter().map(|t| t.table).collect();
        assert_eq!(t, ["SigninLogs", "AuditLogs", "SecurityEvent"]);
    }

    #[test]
    fn deep_nesting_is_refused_and_long_or_chains_are_not() {
        let deep = format!("print x = {}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e}");
        let e = parse(&format!("print x = {}1", "-".repeat(100_000))).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e}");
        let e = parse(&format!("print x = 1{}", " + 1".repeat(100_000))).unwrap_err();
        assert!(e.message.contains("operands in one chain"), "{e}");
        let queries = format!("{}T{}", "(".repeat(200), " | take 1)".repeat(200));
        let e = parse(&queries).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e}");
        let ors = (0..5_000)
            .map(|i| format!("x == {i}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let s = parse(&format!("T | where {ors}")).unwrap();
        assert!(s.query.is_some());
    }

    #[test]
    fn negated_and_cs_string_operators() {
        let s = parse(
            "T | where a !has 'x' and b contains_cs 'Y' and c !in~ ('a') and d !between (1 .. 2)",
        )
        .unwrap();
        assert!(s.query.is_some());
    }
}
