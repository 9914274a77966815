//! Bounded constant folding.
//!
//! DataFusion's optimizer evaluates constant expressions while it plans
//! (`SimplifyExpressions`' const evaluator), and planning happens here in
//! the gateway. A few functions turn a short statement into a huge value —
//! `repeat('x', 1500000000)` is 1.5 GB from 30 bytes of SQL — so folding
//! them unchecked lets any caller make the gateway allocate what it likes.
//!
//! The gateway's sessions therefore use guarded versions of those
//! functions. Before computing, a guarded function works out the size of
//! its result from its arguments; a result over the planning budget is not
//! computed. The optimizer would quietly keep the call for execution time,
//! but the coordinator's scheduler plans it again and would fold it there,
//! so a refusal is remembered and `RefuseOversizedConstants` fails the
//! statement with `MEMORY_LIMIT_EXCEEDED` instead. The guards keep the
//! functions' names: plans sent to executors name `repeat`, not a Tarn
//! function, and executors run their own (bounded by their memory pools).
//!
//! The budget counts every guarded result of one optimizer pass, so many
//! calls just under the limit cannot add up to a large total either.
//! Optimizer passes run synchronously on one thread, which is why the
//! bookkeeping is thread-local: `StartConstantBudget` opens it at the start
//! of each pass and `RefuseOversizedConstants` closes it at the end.

use std::cell::RefCell;
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{ExprSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, LogicalPlan, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use tarn_common::{ErrorCode, TarnError};

/// How a guarded function's result size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) × n`.
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad`: `n` characters.
    Pad,
    /// `array_repeat(v, n)`: `n` elements.
    ArrayRepeat,
    /// `array_resize(a, n [, v])`: `n` elements.
    ArrayResize,
    /// `replace(s, from, to)`, `regexp_replace(s, re, to …)`: every match
    /// of `s` (at most one per character, and one more) becomes `to`.
    Replace,
    /// `concat(…)`, `concat_ws(sep, …)`: the sum of the arguments.
    Concat,
    /// `range(a, b [, step])`, `generate_series`: `(b - a) / step` elements.
    Series,
}

/// The functions guarded, by their registered names.
const GUARDED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("array_resize", Growth::ArrayResize),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::Replace),
    ("concat", Growth::Concat),
    ("concat_ws", Growth::Concat),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
];

/// The budget of the optimizer pass running on this thread.
#[derive(Debug, Default)]
struct Budget {
    /// Whether a pass is open (between the start and the check rules).
    open: bool,
    /// Bytes of guarded results computed in this pass.
    used: usize,
    /// The first refusal of this pass.
    refused: Option<String>,
}

thread_local! {
    static BUDGET: RefCell<Budget> = RefCell::new(Budget::default());
}

/// Replaces the growth-prone functions of `state` with guarded ones and
/// brackets its optimizer with the budget rules; `max_bytes` is the budget
/// of one optimizer pass.
pub fn guard(state: SessionState, max_bytes: usize) -> SessionState {
    let mut functions = Vec::new();
    for (name, growth) in GUARDED {
        if let Some(f) = state.scalar_functions().get(*name) {
            functions.push(Arc::new(ScalarUDF::new_from_impl(Guarded {
                inner: f.as_ref().clone(),
                growth: *growth,
                max_bytes,
            })));
        }
    }
    let mut rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![Arc::new(StartConstantBudget)];
    rules.extend(state.optimizers().iter().cloned());
    rules.push(Arc::new(RefuseOversizedConstants { max_bytes }));
    let mut state =
        datafusion::execution::session_state::SessionStateBuilder::new_from_existing(state)
            .with_optimizer_rules(rules)
            .build();
    for f in functions {
        // Registered under the same names and aliases: replaces the stock one.
        let _ = datafusion::execution::FunctionRegistry::register_udf(&mut state, f);
    }
    state
}

/// A growth-prone function that refuses to produce, in the gateway, a
/// result larger than the planning budget allows.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: ScalarUDF,
    growth: Growth,
    max_bytes: usize,
}

impl Guarded {
    /// Charges the result this call would produce, or refuses it.
    fn charge(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let Some(bytes) = estimate(self.growth, args, rows) else {
            return Ok(());
        };
        BUDGET.with(|b| {
            let mut b = b.borrow_mut();
            // Outside an optimizer pass only the size of this one result
            // counts (nothing would reset a running total).
            let total = if b.open {
                b.used.saturating_add(bytes)
            } else {
                bytes
            };
            if total > self.max_bytes {
                let why = format!(
                    "{}(…) would make a value of about {} MiB while the statement is planned; \
                     the gateway's planning budget is {} MiB",
                    self.inner.name(),
                    bytes.div_ceil(1024 * 1024),
                    self.max_bytes.div_ceil(1024 * 1024)
                );
                tracing::warn!(
                    function = self.inner.name(),
                    bytes,
                    "constant refused: {why}"
                );
                if b.open && b.refused.is_none() {
                    b.refused = Some(why.clone());
                }
                return Err(DataFusionError::ResourcesExhausted(why));
            }
            if b.open {
                b.used = total;
            }
            Ok(())
        })
    }
}

/// Bytes a call's result takes, from its arguments, when they say.
fn estimate(growth: Growth, args: &[ColumnarValue], rows: usize) -> Option<usize> {
    // Planning folds constants (scalars); a call over arrays is a real
    // execution, sized per row from its first row at worst-case widths.
    let scalar = |i: usize| -> Option<ScalarValue> {
        match args.get(i)? {
            ColumnarValue::Scalar(s) => Some(s.clone()),
            ColumnarValue::Array(a) => ScalarValue::try_from_array(a, 0).ok(),
        }
    };
    let rows = if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        1
    } else {
        rows.max(1)
    };
    let count = |i: usize| -> usize {
        scalar(i)
            .and_then(|s| s.cast_to(&DataType::Int64).ok())
            .and_then(|s| match s {
                ScalarValue::Int64(Some(n)) => Some(n.max(0) as usize),
                _ => None,
            })
            .unwrap_or(0)
    };
    let text = |i: usize| -> usize { scalar(i).map(|s| text_len(&s)).unwrap_or(0) };
    let one = match growth {
        Growth::Repeat => text(0).saturating_mul(count(1)),
        // Up to four bytes a character.
        Growth::Pad => count(1).saturating_mul(4),
        Growth::ArrayRepeat => count(1).saturating_mul(element_size(scalar(0)?)),
        Growth::ArrayResize => {
            count(1).saturating_mul(scalar(2).map(element_size).unwrap_or(16).max(16))
        }
        Growth::Replace => {
            let (s, to) = (text(0), text(2));
            s.saturating_add((s + 1).saturating_mul(to))
        }
        Growth::Concat => (0..args.len())
            .map(text)
            .fold(0usize, usize::saturating_add),
        Growth::Series => {
            series_len(&scalar(0)?, &scalar(1)?, scalar(2).as_ref()).saturating_mul(8)
        }
    };
    Some(one.saturating_mul(rows))
}

/// Bytes of a string-like scalar (0 for anything else).
fn text_len(s: &ScalarValue) -> usize {
    match s {
        ScalarValue::Utf8(Some(v))
        | ScalarValue::LargeUtf8(Some(v))
        | ScalarValue::Utf8View(Some(v)) => v.len(),
        ScalarValue::Binary(Some(v))
        | ScalarValue::LargeBinary(Some(v))
        | ScalarValue::BinaryView(Some(v)) => v.len(),
        _ => 0,
    }
}

/// Bytes one array element of this value takes.
fn element_size(s: ScalarValue) -> usize {
    s.data_type()
        .primitive_width()
        .unwrap_or_else(|| text_len(&s).max(s.size()))
        .max(1)
}

/// Elements of `range(start, stop, step)`, for numbers, dates and
/// timestamps (the step of a time series is an interval).
fn series_len(start: &ScalarValue, stop: &ScalarValue, step: Option<&ScalarValue>) -> usize {
    let nanos = |s: &ScalarValue| -> Option<i128> {
        let t = s
            .cast_to(&DataType::Timestamp(
                arrow::datatypes::TimeUnit::Nanosecond,
                None,
            ))
            .ok()?;
        match t {
            ScalarValue::TimestampNanosecond(Some(n), _) => Some(n as i128),
            _ => None,
        }
    };
    let int = |s: &ScalarValue| -> Option<i128> {
        match s.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(n)) => Some(n as i128),
            _ => None,
        }
    };
    let is_time = matches!(
        start.data_type(),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
    );
    let (a, b, step) = if is_time {
        const DAY: i128 = 86_400 * 1_000_000_000;
        let step = match step {
            Some(ScalarValue::IntervalMonthDayNano(Some(v))) => {
                v.months as i128 * 28 * DAY + v.days as i128 * DAY + v.nanoseconds as i128
            }
            Some(ScalarValue::IntervalDayTime(Some(v))) => {
                v.days as i128 * DAY + v.milliseconds as i128 * 1_000_000
            }
            Some(ScalarValue::IntervalYearMonth(Some(m))) => *m as i128 * 28 * DAY,
            _ => DAY,
        };
        match (nanos(start), nanos(stop)) {
            (Some(a), Some(b)) => (a, b, step),
            _ => return 0,
        }
    } else {
        match (int(start), int(stop)) {
            (Some(a), Some(b)) => (a, b, step.and_then(int).unwrap_or(1)),
            _ => return 0,
        }
    };
    if step == 0 {
        return 0;
    }
    let n = (b - a) / step;
    if n < 0 {
        0
    } else {
        usize::try_from(n + 1).unwrap_or(usize::MAX)
    }
}

// Delegates every method, so the function behaves exactly as the stock one.
impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[allow(deprecated)]
        self.inner.inner().is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.charge(&args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Guarded {
            inner,
            growth: self.growth,
            max_bytes: self.max_bytes,
        }))
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.inner().simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.inner().preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.inner().propagate_constraints(interval, inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.inner().struct_field_mapping(literal_args)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner().documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.inner().placement(args)
    }
}

/// First rule of every optimizer pass: opens this thread's budget.
#[derive(Debug)]
struct StartConstantBudget;

impl OptimizerRule for StartConstantBudget {
    fn name(&self) -> &str {
        "tarn_start_constant_budget"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        BUDGET.with(|b| {
            *b.borrow_mut() = Budget {
                open: true,
                ..Budget::default()
            }
        });
        Ok(Transformed::no(plan))
    }
}

/// Last rule of every optimizer pass: fails the statement if a guarded
/// function refused to fold, and closes the budget.
#[derive(Debug)]
struct RefuseOversizedConstants {
    max_bytes: usize,
}

impl OptimizerRule for RefuseOversizedConstants {
    fn name(&self) -> &str {
        "tarn_refuse_oversized_constants"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let refused = BUDGET.with(|b| std::mem::take(&mut *b.borrow_mut()).refused);
        match refused {
            None => Ok(Transformed::no(plan)),
            Some(why) => Err(DataFusionError::External(Box::new(
                TarnError::new(ErrorCode::MemoryLimitExceeded, why).with_fix(format!(
                    "build large values from table data rather than constants, or keep each \
                     constant under {} MiB (max_constant_bytes)",
                    self.max_bytes.div_ceil(1024 * 1024)
                )),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    fn ctx(max: usize) -> SessionContext {
        let ctx = SessionContext::new();
        SessionContext::new_with_state(guard(ctx.state(), max))
    }

    async fn optimize(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan> {
        ctx.sql(sql).await?.into_optimized_plan()
    }

    #[tokio::test]
    async fn small_constants_still_fold() {
        let ctx = ctx(1 << 20);
        let plan = optimize(&ctx, "SELECT length(repeat('ab', 1000)) AS n")
            .await
            .unwrap();
        assert!(
            plan.display_indent().to_string().contains("Int32(2000)"),
            "{}",
            plan.display_indent()
        );
        let rows = ctx
            .sql("SELECT lpad('x', 5, '-') AS s")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(rows[0].num_rows(), 1);
    }

    #[tokio::test]
    async fn a_huge_constant_is_refused_before_it_is_computed() {
        let ctx = ctx(1 << 20);
        for sql in [
            "SELECT length(repeat('x', 1500000000))",
            "SELECT repeat('x', 1500000 * 1000)",
            "SELECT lpad('x', 2000000000)",
            "SELECT cardinality(array_repeat(1, 1000000000))",
            "SELECT cardinality(range(1, 1000000000))",
            "SELECT cardinality(range(TIMESTAMP '1970-01-01', TIMESTAMP '2100-01-01', INTERVAL '1 second'))",
            // Each under the limit, together over it.
            "SELECT repeat('x', 700000) || repeat('y', 700000)",
        ] {
            let err = optimize(&ctx, sql).await.expect_err(sql);
            let t = crate::error::from_datafusion(&err);
            assert_eq!(t.code, ErrorCode::MemoryLimitExceeded, "{sql}: {t}");
        }
        // The budget is per pass: a later statement is not charged for it.
        optimize(&ctx, "SELECT repeat('x', 700000)").await.unwrap();
    }
}
