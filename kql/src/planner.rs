//! From the parsed query to a DataFusion logical plan.

use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;

use crate::ast::Script;
use crate::error::{ErrorKind, KqlError};
use crate::Options;

pub(crate) async fn plan(
    script: &Script,
    _state: &SessionState,
    _options: &Options,
) -> Result<LogicalPlan, KqlError> {
    Err(KqlError::at(ErrorKind::Unsupported, &script.text, 0, "KQL is not planned yet"))
}
