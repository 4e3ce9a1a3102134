//! `${VAR}` and `${VAR:-default}` in config values, from the environment.
//!
//! Only values are interpolated, never keys, so the shape of a pipeline cannot change
//! with the environment. `$$` writes a literal `$`. An unset variable without a default
//! is an error at its position rather than a silent empty string.

use super::decode::DecodeError;
use super::node::{Node, Value};

/// Replaces variables in every scalar value of the tree, collecting all errors.
pub(crate) fn interpolate(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<DecodeError>,
) {
    match &mut node.value {
        Value::Scalar { text, .. } => match expand(text, lookup) {
            Ok(expanded) => *text = expanded,
            Err(message) => errors.push(DecodeError {
                mark: Some(node.mark),
                message,
                unknown_field: None,
            }),
        },
        Value::Seq(items) => items
            .iter_mut()
            .for_each(|item| interpolate(item, lookup, errors)),
        Value::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, value)| interpolate(value, lookup, errors)),
    }
}

/// Expands one string.
pub(crate) fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                // The value is not repeated: it may be a secret with a stray `$`.
                "this value has an unclosed `${`; close it with `}` or write `$$` for a literal `$`"
                    .to_string()
            })?;
            let (name, default) = match after[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&after[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err("this value has a `${...}` that is not a variable reference; names use letters, digits and `_` (write `$$` for a literal `$`)".to_string());
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set; set it, or give a default with `${{{name}:-value}}`"
                    ))
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SITE" => Some("north".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_and_default() {
        assert_eq!(expand("site=${SITE}", &env).unwrap(), "site=north");
        assert_eq!(expand("${MISSING:-x}/${SITE}", &env).unwrap(), "x/north");
        assert_eq!(expand("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("cost $$5 and $x", &env).unwrap(), "cost $5 and $x");
    }

    #[test]
    fn unset_without_default_is_an_error() {
        let err = expand("${MISSING}", &env).unwrap_err();
        assert!(err.contains("`MISSING` is not set"), "{err}");
        assert!(expand("${SITE", &env).unwrap_err().contains("unclosed"));
        assert!(expand("${a b}", &env)
            .unwrap_err()
            .contains("not a variable"));
        // A secret with a stray `$` is never repeated in the error.
        for secret in ["hunter2${SECRET", "hunter2${not a name}x"] {
            let err = expand(secret, &env).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn errors_carry_positions() {
        let mut node = super::super::node::parse("a: ok\nb: ${MISSING}\n").unwrap();
        let mut errors = Vec::new();
        interpolate(&mut node, &env, &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].mark.unwrap().line, 2);
    }
}
