//! Statement parameters: the `?` placeholders clients write, numbered as
//! DataFusion expects, and a bound row of values put into a plan.

use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use tarn_common::{ErrorCode, TarnError};

use crate::error::from_datafusion;

/// JDBC/ODBC/ADBC clients write parameters as `?`; DataFusion numbers them
/// (`$1`, `$2`, …). Rewrites each `?` token — never one inside a string or a
/// quoted name — to its position.
pub fn number_placeholders(sql: &str) -> String {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !sql.contains('?') {
        return sql.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        // Let the parser report the error on the original text.
        return sql.to_string();
    };
    // Only the `?` characters themselves are replaced, found by their token
    // positions; every other byte (escaped quotes included) stays as sent.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let mut at: Vec<usize> = tokens
        .iter()
        .filter(|t| matches!(&t.token, Token::Placeholder(p) if p == "?"))
        .filter_map(|t| {
            let line = *line_starts.get((t.span.start.line as usize).checked_sub(1)?)?;
            let col = (t.span.start.column as usize).checked_sub(1)?;
            let (offset, ch) = sql[line..].char_indices().nth(col)?;
            (ch == '?').then_some(line + offset)
        })
        .collect();
    at.sort_unstable();
    let mut out = String::with_capacity(sql.len() + at.len() * 2);
    let mut last = 0;
    for (n, pos) in at.iter().enumerate() {
        out.push_str(&sql[last..*pos]);
        out.push_str(&format!("${}", n + 1));
        last = pos + 1;
    }
    out.push_str(&sql[last..]);
    out
}

/// Binds positional parameters (`$1`, `$2`, …) from the first row of `params`.
pub fn bind_parameters(
    plan: LogicalPlan,
    params: Option<&arrow::record_batch::RecordBatch>,
) -> Result<LogicalPlan, TarnError> {
    let Some(batch) = params else {
        return Ok(plan);
    };
    if batch.num_rows() == 0 {
        return Ok(plan);
    }
    if batch.num_rows() > 1 {
        return Err(TarnError::new(
            ErrorCode::InvalidArgument,
            format!(
                "{} parameter rows were bound; a query takes one",
                batch.num_rows()
            ),
        )
        .with_fix("bind a single row of parameters per execution"));
    }
    let mut values = Vec::with_capacity(batch.num_columns());
    for col in batch.columns() {
        values.push(
            datafusion::scalar::ScalarValue::try_from_array(col, 0).map_err(|e| {
                TarnError::new(ErrorCode::InvalidArgument, format!("bad parameter: {e}"))
            })?,
        );
    }
    plan.with_param_values(ParamValues::List(
        values.into_iter().map(Into::into).collect(),
    ))
    .map_err(|e| from_datafusion(&e))
}

#[cfg(test)]
mod tests {
    use super::number_placeholders;

    #[test]
    fn question_marks_become_positions_outside_literals() {
        assert_eq!(
            number_placeholders("SELECT a FROM t WHERE b = ? AND c = '?' AND \"d?\" = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND \"d?\" = $2"
        );
        assert_eq!(number_placeholders("SELECT 1"), "SELECT 1");
        // Escaped quotes survive untouched.
        assert_eq!(
            number_placeholders("SELECT 'O''Brien', ? FROM t\nWHERE x = ?"),
            "SELECT 'O''Brien', $1 FROM t\nWHERE x = $2"
        );
    }
}
