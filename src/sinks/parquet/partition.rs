//! Hive-style partition paths (`kind=miner/date=2026-11-22/hour=14/`) from a template
//! over sample fields, declared labels, and the sample's UTC date and hour, so DuckDB,
//! Spark, Trino and pandas prune by directory.

use std::fmt;

use crate::toolkit::sample::Sample;
use crate::toolkit::template::{Labels, Template};

/// What Hive (and every engine after it) writes for a missing partition value.
const MISSING: &str = "__HIVE_DEFAULT_PARTITION__";

#[derive(Clone, Debug)]
pub(crate) struct PartitionTemplate(Template);

impl PartitionTemplate {
    /// Parses `{name}` placeholders; `labels` are the label names the template may use.
    pub(super) fn parse(text: &str, labels: &[String]) -> Result<Self, String> {
        let template = Template::parse(text, Labels::Declared(labels))
            .map_err(|e| format!("partition {e}"))?;
        if text.starts_with('/') || text.split('/').any(|segment| segment == "..") {
            return Err(format!(
                "partition `{text}` must stay below `path`: no leading `/`, no `..`"
            ));
        }
        Ok(PartitionTemplate(template))
    }

    /// The sample columns the path carries; they are left out of the files, as Hive
    /// readers (Spark among them) refuse a column both in the path and in the file.
    pub(super) fn columns(&self) -> impl Iterator<Item = &str> {
        self.0.fields()
    }

    /// The directory (relative to `path`) where `sample` belongs.
    pub(crate) fn render(&self, sample: &Sample) -> String {
        let mut out = String::new();
        self.0.render_into(sample, &mut out, |out, value| {
            out.push_str(&escape(value.unwrap_or(MISSING)))
        });
        if out.len() > NAME_MAX {
            out = out.split('/').map(fit).collect::<Vec<_>>().join("/");
        }
        out
    }
}

/// The longest name of a directory (Linux's `NAME_MAX`, in bytes).
const NAME_MAX: usize = 255;

/// A directory name cut to [`NAME_MAX`] bytes if longer: its start (at a char, never
/// inside a `%XX`), `~`, and 8 hex digits of a checksum of the whole, so that two long
/// values stay two directories. A value that long (an inventory label, a 300-character
/// site name, tripled by escaping) otherwise failed every write of its partition.
fn fit(segment: &str) -> std::borrow::Cow<'_, str> {
    if segment.len() <= NAME_MAX {
        return segment.into();
    }
    let mut end = NAME_MAX - 9;
    while !segment.is_char_boundary(end) {
        end -= 1;
    }
    // An escape cut in two would read as a different value, or not at all.
    // (Bytes, not chars: `end - 2` may fall inside a character; `%` is one byte.)
    let tail = &segment.as_bytes()[end.saturating_sub(2)..end];
    if let Some(percent) = tail.iter().rposition(|&b| b == b'%') {
        end = end - tail.len() + percent;
    }
    format!(
        "{}~{:08x}",
        &segment[..end],
        crc32fast::hash(segment.as_bytes())
    )
    .into()
}

/// A value as Hive writes it in a path, so every Hive reader (Spark, DuckDB, pyarrow,
/// Trino) reads it back: control characters and `"#%'*/:=?\\[]^{}` become `%XX`, as
/// Hive's own `escapePathName` does; so does a leading `.`, which would hide the
/// directory from readers. A value can neither add a directory nor leave its own.
fn escape(value: &str) -> String {
    if value.is_empty() {
        return MISSING.to_string();
    }
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = c.is_control()
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '['
                    | ']'
                    | '^'
                    | '{'
                    | '}'
            )
            || (i == 0 && c == '.');
        if special {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for PartitionTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::DateTime;

    use super::*;
    use crate::toolkit::sample::SampleKind;

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
        assert_eq!(t.render(&sample("../etc")), "site=%2E.%2Fetc/");
        assert_eq!(t.render(&sample("a\nb=c/d%")), "site=a%0Ab%3Dc%2Fd%25/");
        assert_eq!(t.render(&sample("Zürich 1")), "site=Zürich 1/");
        assert_eq!(t.render(&sample("")), "site=__HIVE_DEFAULT_PARTITION__/");
        let state = PartitionTemplate::parse("state={state}/", &[]).unwrap();
        assert_eq!(
            state.render(&sample("x")),
            "state=__HIVE_DEFAULT_PARTITION__/"
        );
    }

    #[test]
    fn a_value_longer_than_a_file_name_is_cut_and_stays_distinct() {
        let t = PartitionTemplate::parse("site={site}/kind={kind}/", &["site".into()]).unwrap();
        // 300 characters, escaped to 900 bytes.
        let (a, b) = ("/".repeat(299) + "a", "/".repeat(299) + "b");
        let (ra, rb) = (t.render(&sample(&a)), t.render(&sample(&b)));
        assert_ne!(ra, rb);
        let segments: Vec<&str> = ra.split('/').collect();
        assert_eq!(segments.len(), 3, "{ra}");
        assert!(segments[0].len() <= NAME_MAX, "{}", segments[0].len());
        assert!(segments[0].starts_with("site=%2F%2F"));
        // Never inside an escape: the cut is whole `%2F`s, then `~` and the checksum.
        let (value, sum) = segments[0].rsplit_once('~').unwrap();
        assert!(value.ends_with("%2F") && sum.len() == 8, "{}", segments[0]);
        assert_eq!(segments[1], "kind=board");
        // Multi-byte characters (two, three and four bytes) are cut at a char.
        for c in ["é", "中", "€", "🦀"] {
            for n in 60..130 {
                let wide = t.render(&sample(&c.repeat(n)));
                assert!(wide.split('/').all(|s| s.len() <= NAME_MAX), "{wide}");
            }
        }
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
