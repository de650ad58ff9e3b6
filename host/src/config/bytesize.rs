//! Sizes in config files: `512MiB`, `1GiB`, `64KiB`, or a number of bytes.

use serde::de::{self, Deserialize, Deserializer};
use std::fmt;

/// A size in bytes, written with a binary unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let help = "use a number and a unit (`B`, `KiB`, `MiB`, `GiB`), like `512MiB`";
        let t = text.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        if digits == 0 {
            return Err(format!("invalid size `{text}`: {help}"));
        }
        let n: u64 = t[..digits]
            .parse()
            .map_err(|_| format!("size `{text}` is too large"))?;
        let unit: u64 = match t[digits..].trim() {
            "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "" => return Err(format!("size `{text}` has no unit: {help}")),
            other => return Err(format!("unknown unit `{other}` in size `{text}`: {help}")),
        };
        n.checked_mul(unit)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b >= 1 << 30 && b.is_multiple_of(1 << 30) => write!(f, "{} GiB", b >> 30),
            b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => write!(f, "{} MiB", b >> 20),
            b if b >= 1 << 10 && b.is_multiple_of(1 << 10) => write!(f, "{} KiB", b >> 10),
            b => write!(f, "{b} B"),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ByteSize::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_units_and_explains_mistakes() {
        assert_eq!(ByteSize::parse("512MiB").unwrap().bytes(), 512 << 20);
        assert_eq!(ByteSize::parse("1 GiB").unwrap().bytes(), 1 << 30);
        assert_eq!(ByteSize::parse("4096B").unwrap().bytes(), 4096);
        assert_eq!(ByteSize(512 << 20).to_string(), "512 MiB");
        assert!(ByteSize::parse("512").unwrap_err().contains("no unit"));
        assert!(ByteSize::parse("512MB")
            .unwrap_err()
            .contains("unknown unit `MB`"));
        assert!(ByteSize::parse("lots")
            .unwrap_err()
            .contains("invalid size"));
    }
}
