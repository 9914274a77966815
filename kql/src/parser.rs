//! Recursive descent over the lexer's tokens.

use crate::ast::Script;
use crate::error::{ErrorKind, KqlError};

pub(crate) fn parse(text: &str) -> Result<Script, KqlError> {
    Err(KqlError::at(ErrorKind::Unsupported, text, 0, "KQL is not parsed yet"))
}
