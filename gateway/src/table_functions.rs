//! Table functions in `FROM`: the pure ones DataFusion offers run, every
//! other is refused before planning.
//!
//! A table function is named where a table would be (`FROM
//! generate_series(1, 10)`), so name resolution would look it up in the
//! lake and answer "table not found". The gateway sets these names apart:
//! the functions on [`ALLOWED`] generate rows from their arguments alone;
//! any other (a future file-reading one such as `read_parquet`, or one
//! registered by a dependency) is refused with a code, so the lake stays
//! the only thing SQL can read.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{TableFactor, Visit, Visitor};
use tarn_common::{ErrorCode, TarnError};

/// Table functions that compute their rows from their arguments.
pub const ALLOWED: &[&str] = tarn_lake::series::NAMES;

/// The names used as table functions (`name(args)` in `FROM`), as written.
pub fn called(statement: &DFStatement) -> BTreeSet<String> {
    struct Calls(BTreeSet<String>);
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(_),
                ..
            } = factor
            {
                self.0.insert(name.to_string());
            }
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls(BTreeSet::new());
    match statement {
        DFStatement::Statement(s) => {
            let _ = s.visit(&mut calls);
        }
        DFStatement::Explain(e) => {
            if let DFStatement::Statement(s) = e.statement.as_ref() {
                let _ = s.visit(&mut calls);
            }
        }
        _ => {}
    }
    calls.0
}

/// Refuses every called table function not on [`ALLOWED`].
pub fn check(calls: &BTreeSet<String>) -> Result<(), TarnError> {
    for name in calls {
        if !ALLOWED.contains(&name.to_lowercase().as_str()) {
            return Err(TarnError::new(
                ErrorCode::Unsupported,
                format!("table function '{name}' is not available"),
            )
            .with_fix(format!(
                "read lake tables by name; the table functions that run are {}",
                ALLOWED.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn parse(sql: &str) -> DFStatement {
        DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    #[test]
    fn calls_are_found_wherever_they_are() {
        let s = parse(
            "WITH a AS (SELECT * FROM generate_series(1, 3)) \
             SELECT * FROM a JOIN (SELECT * FROM range(5)) b ON true, SigninLogs",
        );
        let calls = called(&s);
        assert_eq!(
            calls.into_iter().collect::<Vec<_>>(),
            vec!["generate_series".to_string(), "range".to_string()]
        );
        assert!(called(&parse("SELECT * FROM SigninLogs")).is_empty());
    }

    #[test]
    fn only_pure_functions_pass() {
        assert!(check(&called(&parse("SELECT * FROM generate_series(1, 3)"))).is_ok());
        let err = check(&called(&parse("SELECT * FROM read_parquet('/etc/passwd')"))).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unsupported);
        assert!(err.message.contains("read_parquet"), "{}", err.message);
    }
}
