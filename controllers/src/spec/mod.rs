//! The unit spec (docs/design.md §2): YAML from the CLI, JSON from etcd, one model.

mod decode;
mod error;
mod model;
mod node;
pub mod rules;
mod warnings;

pub use decode::{
    MAX_PROGRESS_DEADLINE_SECS, MAX_PULL_TIMEOUT_SECS, MAX_REPLICAS, MAX_STARTUP_DELAY_SECS,
};
pub use error::{Pos, SpecError, SpecErrors};
pub use model::{
    DEFAULT_PULL_TIMEOUT_SECS, EnvVar, Layout, OnFailure, PullPolicy, RolloutPolicy, Spec, Unit,
    UpdateOrder, Volume,
};
pub use node::MAX_DOCUMENT_BYTES;
pub use warnings::{Warning, warnings};

/// Parses and validates a YAML unit document. `source` (a file path) prefixes
/// every error.
pub fn from_yaml(text: &str, source: &str) -> Result<Unit, SpecErrors> {
    let root = node::from_yaml(text, source)?;
    decode::Decoder::new(source).unit(&root)
}

/// Parses and validates a JSON unit document (the form stored in etcd).
/// `source` (the etcd key) prefixes every error.
pub fn from_json(text: &str, source: &str) -> Result<Unit, SpecErrors> {
    let root = node::from_json(text, source)?;
    decode::Decoder::new(source).unit(&root)
}

/// Reads bytes from etcd: anything that is not UTF-8 is an error, not a panic.
pub fn from_json_bytes(bytes: &[u8], source: &str) -> Result<Unit, SpecErrors> {
    match std::str::from_utf8(bytes) {
        Ok(text) => from_json(text, source),
        Err(e) => Err(SpecErrors::single(
            source,
            "",
            None,
            format!("value is not UTF-8: {e}"),
        )),
    }
}

/// Reads the unit stored at `key` (`/kaylee/units/<name>`): its `name` must
/// be the key's, or one unit could render (and fight over) another's fleet
/// units.
pub fn from_stored(bytes: &[u8], key: &str, name: &str) -> Result<Unit, SpecErrors> {
    let unit = from_json_bytes(bytes, key)?;
    if unit.name != name {
        return Err(SpecErrors::single(
            key,
            "name",
            None,
            format!("is `{}` but the unit is stored under `{name}`", unit.name),
        ));
    }
    Ok(unit)
}

#[cfg(test)]
mod tests;
