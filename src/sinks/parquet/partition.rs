//! Hive-style partition paths (`kind=miner/date=2026-11-22/hour=14/`) from a template
//! over sample fields, declared labels, and the sample's UTC date and hour, so DuckDB,
//! Spark, Trino and pandas prune by directory.

use std::fmt;

use crate::sample::{text_field, Sample, TextField};

/// What Hive (and every engine after it) writes for a missing partition value.
const MISSING: &str = "__HIVE_DEFAULT_PARTITION__";

#[derive(Clone, Debug)]
pub struct PartitionTemplate {
    text: String,
    parts: Vec<Part>,
}

/// A piece of the template, resolved when it is parsed so that rendering a sample
/// looks nothing up by name.
#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Date,
    Hour,
    /// A text column, and its accessor.
    Text(String, TextField),
    Label(String),
}

impl PartitionTemplate {
    /// Parses `{name}` placeholders; `labels` are the label names the template may use.
    pub fn parse(text: &str, labels: &[String]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("partition `{text}`: a `{{` is never closed"))?;
            let name = &rest[open + 1..open + close];
            let part = match (name, text_field(name)) {
                ("date", _) => Part::Date,
                ("hour", _) => Part::Hour,
                (_, Some(get)) => Part::Text(name.to_string(), get),
                _ if labels.iter().any(|l| l == name) => Part::Label(name.to_string()),
                _ => return Err(format!(
                    "partition `{text}`: unknown field `{{{name}}}`; use date, hour, kind, miner_id, state, miner_status, or a label declared in `labels`"
                )),
            };
            parts.push(part);
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        if text.starts_with('/') || text.split('/').any(|segment| segment == "..") {
            return Err(format!(
                "partition `{text}` must stay below `path`: no leading `/`, no `..`"
            ));
        }
        Ok(PartitionTemplate {
            text: text.to_string(),
            parts,
        })
    }

    /// The sample columns the path carries; they are left out of the files, as Hive
    /// readers (Spark among them) refuse a column both in the path and in the file.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Text(name, _) | Part::Label(name) => Some(name.as_str()),
            Part::Literal(_) | Part::Date | Part::Hour => None,
        })
    }

    /// The directory (relative to `path`) where `sample` belongs.
    pub fn render(&self, sample: &Sample) -> String {
        let mut out = String::new();
        for part in &self.parts {
            let value = match part {
                Part::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Part::Date => sample.timestamp.format("%Y-%m-%d").to_string(),
                Part::Hour => sample.timestamp.format("%H").to_string(),
                Part::Text(name, get) => get(sample)
                    .or_else(|| sample.labels.get(name).map(String::as_str))
                    .unwrap_or(MISSING)
                    .to_string(),
                Part::Label(name) => sample
                    .labels
                    .get(name)
                    .map_or(MISSING, String::as_str)
                    .to_string(),
            };
            out.push_str(&escape(&value));
        }
        out
    }
}

/// A value may not add directories or hide a file: `/`, `\`, and a leading `.` go.
fn escape(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if cleaned.is_empty() => MISSING.to_string(),
        None => cleaned,
    }
}

impl fmt::Display for PartitionTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::DateTime;

    use super::*;
    use crate::sample::SampleKind;

    fn sample(site: &str) -> Sample {
        let labels = Arc::new(BTreeMap::from([("site".to_string(), site.to_string())]));
        let mut s = Sample::new(SampleKind::Board, "m-1".into(), labels);
        s.timestamp = DateTime::from_timestamp_millis(1_763_820_000_123).unwrap();
        s
    }

    #[test]
    fn renders_fields_labels_date_and_hour() {
        let labels = vec!["site".to_string()];
        let t =
            PartitionTemplate::parse("site={site}/kind={kind}/date={date}/hour={hour}/", &labels)
                .unwrap();
        assert_eq!(
            t.render(&sample("north")),
            "site=north/kind=board/date=2025-11-22/hour=14/"
        );
        assert_eq!(t.columns().collect::<Vec<_>>(), ["site", "kind"]);
    }

    #[test]
    fn values_cannot_escape_their_directory() {
        let labels = vec!["site".to_string()];
        let t = PartitionTemplate::parse("site={site}/", &labels).unwrap();
        assert_eq!(t.render(&sample("../etc")), "site=_._etc/");
        assert_eq!(t.render(&sample("")), "site=__HIVE_DEFAULT_PARTITION__/");
        let state = PartitionTemplate::parse("state={state}/", &[]).unwrap();
        assert_eq!(
            state.render(&sample("x")),
            "state=__HIVE_DEFAULT_PARTITION__/"
        );
    }

    #[test]
    fn unknown_names_and_escapes_are_errors() {
        let e = PartitionTemplate::parse("site={site}/", &[]).unwrap_err();
        assert!(e.contains("unknown field `{site}`"), "{e}");
        assert!(PartitionTemplate::parse("kind={kind", &[])
            .unwrap_err()
            .contains("never closed"));
        assert!(PartitionTemplate::parse("../{kind}", &[]).is_err());
        assert!(PartitionTemplate::parse("/{kind}", &[]).is_err());
    }
}
