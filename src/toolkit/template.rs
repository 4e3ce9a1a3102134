//! `{name}` templates over a sample's fields: Parquet partition paths
//! (`kind={kind}/date={date}/`), Kafka topics (`miners.{site}.{kind}`) and keys.
//!
//! A template is parsed once, and each placeholder resolved then (a text column's
//! accessor, a label name, the date or hour), so rendering a sample looks nothing up by
//! name. How a value is written (escaped for a path, cleaned for a topic name) and what
//! stands for a missing one is the caller's choice.

use std::fmt;

use crate::toolkit::sample::{text_field, Sample, TextField};

#[derive(Clone, Debug)]
pub(crate) struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Date,
    Hour,
    /// A text column, and its accessor.
    Text(String, TextField),
    Label(String),
}

/// Which names, other than the sample's text columns, `date` and `hour`, are labels.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Labels<'a> {
    /// Only these (a sink that declares its label columns).
    Declared(&'a [String]),
    /// Any other name (a sink whose output carries whatever labels a sample has).
    Any,
}

impl Template {
    pub(crate) fn parse(text: &str, labels: Labels<'_>) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("`{text}`: a `{{` is never closed"))?;
            let name = &rest[open + 1..open + close];
            let declared = match labels {
                Labels::Declared(names) => names.iter().any(|l| l == name),
                Labels::Any => !name.is_empty(),
            };
            let part = match (name, text_field(name)) {
                ("date", _) => Part::Date,
                ("hour", _) => Part::Hour,
                (_, Some(get)) => Part::Text(name.to_string(), get),
                _ if declared => Part::Label(name.to_string()),
                _ => return Err(format!(
                    "`{text}`: unknown field `{{{name}}}`; use date, hour, kind, miner_id, state, miner_status, or a label declared in `labels`"
                )),
            };
            parts.push(part);
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The sample columns and labels the template reads.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Text(name, _) | Part::Label(name) => Some(name.as_str()),
            Part::Literal(_) | Part::Date | Part::Hour => None,
        })
    }

    /// Appends `sample`'s rendering to `out`: literals as written, each value through
    /// `write` (`None` when the sample has no such field or label).
    pub(crate) fn render_into(
        &self,
        sample: &Sample,
        out: &mut String,
        mut write: impl FnMut(&mut String, Option<&str>),
    ) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Date => write(out, Some(&sample.timestamp.format("%Y-%m-%d").to_string())),
                Part::Hour => write(out, Some(&sample.timestamp.format("%H").to_string())),
                Part::Text(name, get) => write(
                    out,
                    get(sample).or_else(|| sample.labels.get(name).map(String::as_str)),
                ),
                Part::Label(name) => write(out, sample.labels.get(name).map(String::as_str)),
            }
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::toolkit::sample::SampleKind;

    fn render(template: &Template, sample: &Sample) -> String {
        let mut out = String::new();
        template.render_into(sample, &mut out, |out, v| out.push_str(v.unwrap_or("?")));
        out
    }

    #[test]
    fn declared_labels_or_any_name() {
        let labels = Arc::new(BTreeMap::from([("site".to_string(), "north".to_string())]));
        let sample = Sample::new(SampleKind::Miner, "m-1".into(), labels);
        let declared = vec!["site".to_string()];
        let t = Template::parse("miners.{site}.{kind}", Labels::Declared(&declared)).unwrap();
        assert_eq!(render(&t, &sample), "miners.north.miner");
        assert_eq!(t.fields().collect::<Vec<_>>(), ["site", "kind"]);

        let e = Template::parse("miners.{site}", Labels::Declared(&[])).unwrap_err();
        assert!(e.contains("unknown field `{site}`"), "{e}");
        let any = Template::parse("{rack}/{state}", Labels::Any).unwrap();
        assert_eq!(render(&any, &sample), "?/?");
        assert!(Template::parse("{kind", Labels::Any)
            .unwrap_err()
            .contains("never closed"));
        let constant = Template::parse("miners", Labels::Any).unwrap();
        assert_eq!(render(&constant, &sample), "miners");
    }
}
