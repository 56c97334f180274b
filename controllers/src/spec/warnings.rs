//! What is valid but likely not meant: said on stderr by `validate` and
//! `run` (exit 0), never stored.

use super::model::Unit;
use crate::fleet::reference;

/// One warning: the field it is about and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Dotted field path, as in errors (`spec.env[0].value`).
    pub field: String,
    /// Why it is likely not meant, and what to write instead.
    pub message: String,
}

/// Every warning about `unit`.
///
/// A `${NAME}` reference is filled in by systemd from the unit's
/// environment, which comes from `envFiles` (the manager's own environment
/// is nearly empty): without any, every reference becomes empty text.
pub fn warnings(unit: &Unit) -> Vec<Warning> {
    let s = &unit.spec;
    if !s.env_files.is_empty() {
        return Vec::new();
    }
    let mut fields: Vec<(String, &str)> = (s.env.iter().enumerate())
        .map(|(i, e)| (format!("spec.env[{i}].value"), e.value.as_str()))
        .collect();
    fields.extend(
        (s.docker_args.iter().enumerate())
            .map(|(i, a)| (format!("spec.dockerArgs[{i}]"), a.as_str())),
    );
    if let Some(cmd) = &s.cmd {
        fields.push(("spec.cmd".into(), cmd.as_str()));
    }
    fields
        .into_iter()
        .filter_map(|(field, value)| {
            let name = reference::references(value).next()?;
            Some(Warning {
                field,
                message: format!(
                    "${{{name}}} is filled in by systemd from the unit's environment, but spec.envFiles is empty, so it becomes empty text (write $${{{name}}} for the text itself)"
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::from_yaml;

    #[test]
    fn references_without_env_files_are_named() {
        let u = from_yaml(
            "name: w\nspec:\n  image: x\n  env:\n  - name: IP\n    value: '${COREOS_PRIVATE_IPV4}'\n  dockerArgs: ['-p ${IP}:80:80', '$${LITERAL}']\n",
            "w.yaml",
        )
        .unwrap();
        let w = warnings(&u);
        assert_eq!(
            w.iter().map(|w| w.field.as_str()).collect::<Vec<_>>(),
            ["spec.env[0].value", "spec.dockerArgs[0]"]
        );
        assert!(
            w[0].message
                .starts_with("${COREOS_PRIVATE_IPV4} is filled in")
        );
        assert!(
            w[0].message
                .ends_with("(write $${COREOS_PRIVATE_IPV4} for the text itself)")
        );
    }

    #[test]
    fn env_files_or_no_references_mean_no_warning() {
        let with_files = from_yaml(
            "name: w\nspec:\n  image: x\n  envFiles: [/etc/environment]\n  cmd: 'echo ${HOST}'\n",
            "w.yaml",
        )
        .unwrap();
        assert!(warnings(&with_files).is_empty());
        let literal = from_yaml(
            "name: w\nspec:\n  image: x\n  cmd: 'echo $HOME $${X}'\n",
            "w.yaml",
        )
        .unwrap();
        assert!(warnings(&literal).is_empty());
    }
}
