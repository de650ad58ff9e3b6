//! Durations in config files: `250ms`, `30s`, `1m`, `1h30m`.

use serde::de::{self, Deserialize, Deserializer};
use std::fmt;

/// A span of time written with units, stored in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub i64);

impl Duration {
    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        let help =
            "use a number and a unit (`ms`, `s`, `m`, `h`, `d`), like `1m`, `30s` or `250ms`";
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(format!("empty duration: {help}"));
        }
        let mut total: i64 = 0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("invalid duration `{text}`: {help}"));
            }
            let n: i64 = rest[..digits]
                .parse()
                .map_err(|_| format!("duration `{text}` is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match rest[..unit_len].trim() {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(format!("duration `{text}` has no unit: {help}")),
                other => {
                    return Err(format!(
                        "unknown unit `{other}` in duration `{text}`: {help}"
                    ))
                }
            };
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("duration `{text}` is too large"))?;
            rest = &rest[unit_len..];
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(Duration::parse("1m").unwrap().millis(), 60_000);
        assert_eq!(Duration::parse("250ms").unwrap().millis(), 250);
        assert_eq!(Duration::parse("1h30m").unwrap().millis(), 5_400_000);
        assert_eq!(Duration::parse("0s").unwrap().millis(), 0);
        assert!(Duration::parse("1 minute")
            .unwrap_err()
            .contains("unknown unit `minute`"));
        assert!(Duration::parse("60").unwrap_err().contains("has no unit"));
        assert!(Duration::parse("").is_err());
    }
}
