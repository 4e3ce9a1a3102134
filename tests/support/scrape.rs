//! Scraping a running rigtap's API with an independent client: Python's urllib and the
//! Prometheus project's text-format parser (tests/py/scrape.py).

use std::time::{Duration, Instant};

use super::python::run_script;

/// `/metrics` parsed (family -> type and samples) and `/health` (code and body).
pub fn scrape(base: &str) -> serde_json::Value {
    serde_json::from_slice(&run_script("scrape.py", &[base])).expect("JSON from scrape.py")
}

/// The value of the sample `name` whose labels include `labels`.
pub fn value(
    scraped: &serde_json::Value,
    family: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    scraped["metrics"][family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no family {family}"))
        .iter()
        .find(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][k] == *v))
        .and_then(|s| s[2].as_f64())
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {family}"))
}

/// Scrapes until `done` holds (bounded), returning the last scrape.
pub fn scrape_until(
    base: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let scraped = scrape(base);
        if done(&scraped) {
            return scraped;
        }
        assert!(
            Instant::now() < deadline,
            "not reached within {limit:?}: {}",
            scraped["health"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
