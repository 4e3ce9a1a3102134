//! Human durations (`250ms`, `30s`, `1h30m`), sizes (`64MiB`, `10MB`) and rates
//! (`200`, `0.5/s`, `30/min`) in config.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};

/// A duration written as one or more `<number><unit>` parts: ms, s, m, h, d; at
/// most [`MAX_DURATION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// The longest duration a config may hold: a year. Every duration is added to "now"
/// somewhere (a deadline, a timer, a TTL), and a year is far beyond any sensible
/// setting while far from overflowing a clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The largest size a config may hold: 1 PiB, beyond any disk or memory rigtap meets.
pub(crate) const MAX_SIZE: u64 = 1 << 50;

/// A size in bytes written as `<number>[unit]`: B, KB, MB, GB (powers of 1000) or
/// KiB, MiB, GiB (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let hint =
            || format!("`{text}` is not a duration; write e.g. `500ms`, `30s`, `5m`, `1h30m`");
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(hint());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(hint)?;
            let number: f64 = rest[..digits].parse().map_err(|_| hint())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let seconds = match &rest[..unit_len] {
                "ms" => number / 1000.0,
                "s" => number,
                "m" => number * 60.0,
                "h" => number * 3600.0,
                "d" => number * 86400.0,
                _ => return Err(hint()),
            };
            total = Duration::try_from_secs_f64(seconds)
                .ok()
                .and_then(|part| total.checked_add(part))
                .filter(|total| *total <= MAX_DURATION)
                .ok_or_else(|| {
                    format!("`{text}` is longer than the longest duration rigtap takes, 365d")
                })?;
            rest = &rest[unit_len..];
        }
        Ok(HumanDuration(total))
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let hint =
            || format!("`{text}` is not a size; write e.g. `512KiB`, `64MiB`, `1GiB` or `10MB`");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(trimmed.len());
        let number: f64 = trimmed[..split]
            .replace('_', "")
            .parse()
            .map_err(|_| hint())?;
        let multiplier: u64 = match trimmed[split..].trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(hint()),
        };
        let bytes = number * multiplier as f64;
        if !bytes.is_finite() || bytes < 0.0 {
            return Err(hint());
        }
        if bytes > MAX_SIZE as f64 {
            return Err(format!(
                "`{text}` is larger than the largest size rigtap takes, 1024TiB"
            ));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A rate of events, written `<number>[/unit]`: `200` and `200/s` are per second,
/// `30/min` per minute, `90/h` per hour; decimals are allowed (`0.5/s`). Between
/// [`Rate::SLOWEST`] and [`Rate::FASTEST`] per second.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Rate {
    per_second: f64,
}

impl Rate {
    /// One an hour: slower would leave a governed call waiting past any deadline.
    pub(crate) const SLOWEST: f64 = 1.0 / 3600.0;
    /// A million a second: beyond any fleet, short of where the arithmetic of a
    /// governor's cell (one period in nanoseconds) loses its precision.
    pub(crate) const FASTEST: f64 = 1e6;

    fn per_second(n: f64) -> Result<Rate, String> {
        if !(Self::SLOWEST..=Self::FASTEST).contains(&n) {
            return Err(format!(
                "{n} a second is outside the rates rigtap takes, from `1/h` to `1000000/s`"
            ));
        }
        Ok(Rate { per_second: n })
    }

    pub(crate) fn as_per_second(self) -> f64 {
        self.per_second
    }

    /// The time between two events.
    pub(crate) fn period(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }

    /// How many events fit in `window` at this rate, at least one.
    pub(crate) fn events_in(self, window: Duration) -> u32 {
        (self.per_second * window.as_secs_f64()).clamp(1.0, f64::from(u32::MAX)) as u32
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let hint = || {
            format!("`{text}` is not a rate; write e.g. `200` or `200/s` (a second), `30/min`, `0.5/s`, `90/h`")
        };
        let (number, unit) = match text.trim().split_once('/') {
            Some((number, unit)) => (number.trim(), unit.trim()),
            None => (text.trim(), "s"),
        };
        let seconds = match unit {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(hint()),
        };
        let n: f64 = number.parse().map_err(|_| hint())?;
        if !n.is_finite() || n <= 0.0 {
            return Err(format!("{}; a rate is above zero", hint()));
        }
        Rate::per_second(n / seconds).map_err(|e| format!("`{text}`: {e}"))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.per_second >= 1.0 {
            write!(f, "{}/s", self.per_second)
        } else {
            write!(f, "{}/min", self.per_second * 60.0)
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_from_str(deserializer)
    }
}

/// Both types are written as strings; a duration always names its unit.
fn deserialize_from_str<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(de::Error::custom)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_from_str(deserializer)
    }
}

impl fmt::Display for HumanDuration {
    /// The largest units that divide it: `90s` is `1m30s`, `1500ms` is `1s500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_from_str(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(d("30").unwrap_err().contains("not a duration"));
        assert!(d("5 minutes").is_err());
        assert!(d("").is_err());
        assert_eq!(d("365d"), Ok(MAX_DURATION));
        assert!(d("366d")
            .unwrap_err()
            .contains("longest duration rigtap takes, 365d"));
        // Overflowing `Duration` itself is refused, not a panic.
        let huge = d("10000000000000000000s10000000000000000000s").unwrap_err();
        assert!(huge.contains("longest duration"), "{huge}");
        assert_eq!(
            HumanDuration(Duration::from_secs(5400)).to_string(),
            "1h30m"
        );
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1s500ms"
        );
    }

    #[test]
    fn sizes() {
        let s = |t: &str| t.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(s("64MiB"), Ok(64 << 20));
        assert_eq!(s("10MB"), Ok(10_000_000));
        assert_eq!(s("1_024"), Ok(1024));
        assert_eq!(s("1.5KiB"), Ok(1536));
        assert!(s("64 bananas").unwrap_err().contains("not a size"));
        assert!(s("2000TiB").unwrap_err().contains("largest size"));
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    }

    #[test]
    fn rates() {
        let r = |t: &str| t.parse::<Rate>().map(Rate::as_per_second);
        assert_eq!(r("200"), Ok(200.0));
        assert_eq!(r("200/s"), Ok(200.0));
        assert_eq!(r("30/min"), Ok(0.5));
        assert_eq!(r("0.5/s"), Ok(0.5));
        assert_eq!(r("90/h"), Ok(0.025));
        assert_eq!(r("2.5"), Ok(2.5));
        assert!(r("0").unwrap_err().contains("above zero"));
        assert!(r("-3/s").unwrap_err().contains("above zero"));
        assert!(r("NaN").unwrap_err().contains("above zero"));
        assert!(r("1e-20").unwrap_err().contains("from `1/h`"));
        assert!(r("1e12").unwrap_err().contains("from `1/h`"));
        assert!(r("5/fortnight").unwrap_err().contains("not a rate"));
        let rate: Rate = "30/min".parse().unwrap();
        assert_eq!(rate.period(), Duration::from_secs(2));
        assert_eq!(rate.to_string(), "30/min");
        assert_eq!(rate.events_in(Duration::from_millis(100)), 1);
        assert_eq!(
            "2000/s"
                .parse::<Rate>()
                .unwrap()
                .events_in(Duration::from_millis(100)),
            200
        );
    }

    proptest! {
        #[test]
        fn size_display_round_trips(bytes in 0u64..(1 << 50)) {
            let shown = ByteSize(bytes).to_string();
            prop_assert_eq!(shown.parse::<ByteSize>().unwrap().0, bytes);
        }

        #[test]
        fn duration_ms_round_trips(ms in 0u64..10_000_000) {
            let parsed: HumanDuration = format!("{ms}ms").parse().unwrap();
            prop_assert_eq!(parsed.0, Duration::from_millis(ms));
            let shown = parsed.to_string();
            prop_assert_eq!(shown.parse::<HumanDuration>().unwrap(), parsed);
        }

        /// Any text either parses to a duration within the maximum or is refused;
        /// never a panic.
        #[test]
        fn any_duration_text_is_parsed_or_refused(text in "[0-9.]{0,25}(ms|s|m|h|d)?([0-9.]{0,25}(ms|s|m|h|d))?") {
            if let Ok(d) = text.parse::<HumanDuration>() {
                prop_assert!(d.0 <= MAX_DURATION);
            }
        }
    }
}
