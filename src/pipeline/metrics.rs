//! What a component publishes for `/metrics`: its own series, by family name.
//!
//! Each component writes its series into an [`Exposition`] when `/metrics` is scraped
//! (a `bos` source its pool gauges, a Kafka sink its client's retries); series of the
//! same name from several components are gathered into one family, as the format
//! requires, and encoded by the Prometheus project's client library (OpenMetrics
//! text). Values are read from the components' own atomics at scrape time, so the hot
//! paths pay nothing for being observed.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::toolkit::histogram::{LatencyHistogram, BOUNDS_MS};

/// The series of one scrape, gathered by family.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    series: Vec<(Vec<(&'static str, String)>, Value)>,
}

enum Value {
    Counter(u64),
    /// A counter of seconds (CPU time), not a whole number.
    Seconds(f64),
    Gauge(f64),
    /// Per-bucket counts (with their upper bounds in seconds) and the sum.
    Histogram(Vec<(f64, u64)>, f64),
}

impl Exposition {
    /// A counter; `name` without its `_total` suffix, which the encoding adds.
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: u64,
    ) {
        self.add(
            name,
            help,
            MetricType::Counter,
            labels,
            Value::Counter(value),
        );
    }

    /// A counter of seconds, such as CPU time; `name` without `_total`.
    pub fn seconds(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.add(
            name,
            help,
            MetricType::Counter,
            labels,
            Value::Seconds(value),
        );
    }

    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.add(name, help, MetricType::Gauge, labels, Value::Gauge(value));
    }

    /// A latency histogram in seconds, if anything was recorded in it.
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        histogram: &LatencyHistogram,
    ) {
        if histogram.count() == 0 {
            return;
        }
        let bounds = BOUNDS_MS
            .iter()
            .map(|ms| *ms as f64 / 1000.0)
            .chain([f64::INFINITY]);
        let buckets = bounds.zip(histogram.counts()).collect();
        let value = Value::Histogram(buckets, histogram.sum_seconds());
        self.add(name, help, MetricType::Histogram, labels, value);
    }

    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        labels: &[(&'static str, &str)],
        value: Value,
    ) {
        let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        match self.families.iter_mut().find(|f| f.name == name) {
            Some(family) => family.series.push((labels, value)),
            None => self.families.push(Family {
                name,
                help,
                kind,
                series: vec![(labels, value)],
            }),
        }
    }

    /// Writes every family through the client library's encoder.
    pub fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        for family in &self.families {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (labels, value) in &family.series {
                let series = metric.encode_family(labels)?;
                value.encode(series)?;
            }
        }
        Ok(())
    }
}

impl Value {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        match self {
            Value::Counter(n) => ConstCounter::new(*n).encode(encoder),
            Value::Seconds(x) => ConstCounter::new(*x).encode(encoder),
            // Whole numbers (most gauges are counts) print as integers: `3`, not `3.0`.
            Value::Gauge(x) if x.fract() == 0.0 && x.abs() < 2f64.powi(53) => {
                ConstGauge::new(*x as i64).encode(encoder)
            }
            Value::Gauge(x) => ConstGauge::new(*x).encode(encoder),
            Value::Histogram(buckets, sum) => {
                let count = buckets.iter().map(|(_, n)| n).sum();
                encoder.encode_histogram::<NoLabelSet>(*sum, count, buckets, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
            let mut out = Exposition::default();
            out.counter("c", "A counter.", &[("component", "a")], 1);
            out.gauge("g", "A gauge.", &[("component", "a\"b\\c\nd")], 2.5);
            out.counter("c", "A counter.", &[("component", "b")], 3);
            let latency = LatencyHistogram::default();
            latency.record(Duration::from_millis(3));
            out.histogram("h_seconds", "A histogram.", &[("method", "m")], &latency);
            out.histogram("empty", "Never shown.", &[], &LatencyHistogram::default());
            out.encode(&mut encoder)
        }
    }

    #[test]
    fn series_of_one_name_form_one_family_and_values_are_escaped() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.starts_with("# HELP c A counter.\n# TYPE c counter\nc_total{component=\"a\"} 1\nc_total{component=\"b\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("g{component=\"a\\\"b\\\\c\\nd\"} 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{le=\"0.002\",method=\"m\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{le=\"0.005\",method=\"m\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{le=\"+Inf\",method=\"m\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_count{method=\"m\"} 1\n"), "{text}");
        assert!(!text.contains("empty"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
