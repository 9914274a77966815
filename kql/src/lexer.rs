//! Tokens of KQL text.
