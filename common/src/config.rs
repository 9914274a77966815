//! Configuration loading: defaults, then a TOML file, then environment
//! variables, then command-line flags (applied by the caller).
//!
//! Environment variables are `TARN_<SECTION>__<KEY>` in upper case, e.g.
//! `TARN_GATEWAY__FLIGHT_ADDR=0.0.0.0:50060`; they override the file because
//! Helm sets the environment.

use serde::de::DeserializeOwned;
use std::path::Path;

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The merged configuration does not match the options.
    #[error("invalid configuration for [{section}]: {message}")]
    Invalid {
        /// The section.
        section: String,
        /// What is wrong.
        message: String,
    },
}

/// Loads section `section` of type `T`: defaults ← file ← `TARN_<SECTION>__*`.
pub fn load<T: DeserializeOwned + serde::Serialize + Default>(
    section: &str,
    file: Option<&Path>,
) -> Result<T, ConfigError> {
    load_with_sources(section, file).map(|(t, _)| t)
}

/// Where an effective setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The configuration file.
    File(String),
    /// An environment variable.
    Env(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "file {p}"),
            Source::Env(v) => write!(f, "environment {v}"),
        }
    }
}

/// [`load`], also saying where each top-level key's value came from.
pub fn load_with_sources<T: DeserializeOwned + serde::Serialize + Default>(
    section: &str,
    file: Option<&Path>,
) -> Result<(T, std::collections::BTreeMap<String, Source>), ConfigError> {
    let mut value = toml::Value::try_from(T::default()).map_err(|e| ConfigError::Invalid {
        section: section.into(),
        message: e.to_string(),
    })?;
    let mut sources: std::collections::BTreeMap<String, Source> = match &value {
        toml::Value::Table(t) => t.keys().map(|k| (k.clone(), Source::Default)).collect(),
        _ => Default::default(),
    };
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let parsed: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    section: section.into(),
                    message: e.to_string(),
                })?;
        if let Some(toml::Value::Table(t)) = parsed.get(section) {
            for k in t.keys() {
                sources.insert(k.clone(), Source::File(path.display().to_string()));
            }
            merge(&mut value, toml::Value::Table(t.clone()));
        }
    }
    let prefix = format!("TARN_{}__", section.to_uppercase());
    for (k, v) in std::env::vars() {
        if let Some(key) = k.strip_prefix(&prefix) {
            let key = key.to_lowercase();
            let parsed = parse_scalar(&v);
            if let toml::Value::Table(t) = &mut value {
                sources.insert(key.clone(), Source::Env(k.clone()));
                t.insert(key, parsed);
            }
        }
    }
    let t = value
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            section: section.into(),
            message: e.to_string(),
        })?;
    Ok((t, sources))
}

fn parse_scalar(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_string())
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}
