//! A plugin's own table from `pipeline.toml`, with errors that name the key and say what to write.

/// A config value; nested tables and arrays are rejected by the host before a plugin sees them.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

/// The `[stages.NAME.config]` table of the stage running this plugin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    entries: Vec<(String, ConfigValue)>,
}

impl Config {
    pub fn new(entries: Vec<(String, ConfigValue)>) -> Self {
        Config { entries }
    }

    /// Builds a config in native tests: `Config::from_pairs(&[("field", "streams".into())])`.
    pub fn from_pairs(pairs: &[(&str, ConfigValue)]) -> Self {
        Config {
            entries: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&ConfigValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str, String> {
        match self.get(key) {
            Some(ConfigValue::Text(s)) => Ok(s),
            Some(other) => Err(format!(
                "config key `{key}` must be a string, found {}",
                kind(other)
            )),
            None => Err(format!(
                "missing config key `{key}`: add `{key} = \"...\"` to the stage's config table"
            )),
        }
    }

    /// An optional string with a default.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, String> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.str(key),
        }
    }

    /// A required number; integers are accepted.
    pub fn f64(&self, key: &str) -> Result<f64, String> {
        match self.get(key) {
            Some(ConfigValue::Float(f)) => Ok(*f),
            Some(ConfigValue::Integer(i)) => Ok(*i as f64),
            Some(other) => Err(format!(
                "config key `{key}` must be a number, found {}",
                kind(other)
            )),
            None => Err(format!(
                "missing config key `{key}`: add `{key} = <number>` to the stage's config table"
            )),
        }
    }

    /// An optional number with a default.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.f64(key),
        }
    }

    /// A required integer; a float is refused rather than rounded.
    pub fn i64(&self, key: &str) -> Result<i64, String> {
        match self.get(key) {
            Some(ConfigValue::Integer(i)) => Ok(*i),
            Some(other) => Err(format!(
                "config key `{key}` must be an integer, found {}",
                kind(other)
            )),
            None => Err(format!(
                "missing config key `{key}`: add `{key} = <integer>` to the stage's config table"
            )),
        }
    }

    /// An optional integer with a default.
    pub fn i64_or(&self, key: &str, default: i64) -> Result<i64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.i64(key),
        }
    }

    /// A required boolean (`true` or `false`).
    pub fn bool(&self, key: &str) -> Result<bool, String> {
        match self.get(key) {
            Some(ConfigValue::Boolean(b)) => Ok(*b),
            Some(other) => Err(format!(
                "config key `{key}` must be `true` or `false`, found {}",
                kind(other)
            )),
            None => Err(format!(
                "missing config key `{key}`: add `{key} = true` or `false` to the stage's config table"
            )),
        }
    }

    /// An optional boolean with a default.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.bool(key),
        }
    }

    /// Rejects keys the plugin does not know, so a typo is an error rather than a silent default.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        for (k, _) in &self.entries {
            if !known.contains(&k.as_str()) {
                return Err(format!(
                    "unknown config key `{k}`; this plugin takes: {}",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }
}

fn kind(v: &ConfigValue) -> &'static str {
    match v {
        ConfigValue::Boolean(_) => "a boolean",
        ConfigValue::Integer(_) => "an integer",
        ConfigValue::Float(_) => "a float",
        ConfigValue::Text(_) => "a string",
    }
}

impl From<&str> for ConfigValue {
    fn from(s: &str) -> Self {
        ConfigValue::Text(s.to_string())
    }
}
impl From<f64> for ConfigValue {
    fn from(f: f64) -> Self {
        ConfigValue::Float(f)
    }
}
impl From<i64> for ConfigValue {
    fn from(i: i64) -> Self {
        ConfigValue::Integer(i)
    }
}
impl From<bool> for ConfigValue {
    fn from(b: bool) -> Self {
        ConfigValue::Boolean(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let c = Config::from_pairs(&[("factor", "big".into()), ("field", "streams".into())]);
        assert_eq!(c.str("field").unwrap(), "streams");
        assert!(c
            .f64("factor")
            .unwrap_err()
            .contains("`factor` must be a number, found a string"));
        assert!(c
            .str("missing")
            .unwrap_err()
            .contains("add `missing = \"...\"`"));
        assert!(c
            .only(&["field"])
            .unwrap_err()
            .contains("unknown config key `factor`"));
        assert_eq!(
            Config::from_pairs(&[("n", 3i64.into())]).f64("n").unwrap(),
            3.0
        );
        let c = Config::from_pairs(&[("k", 3i64.into()), ("on", true.into()), ("x", 1.5.into())]);
        assert_eq!(c.i64("k").unwrap(), 3);
        assert_eq!(c.i64_or("missing", 7).unwrap(), 7);
        assert!(c
            .i64("x")
            .unwrap_err()
            .contains("`x` must be an integer, found a float"));
        assert!(c.bool("on").unwrap());
        assert!(!c.bool_or("missing", false).unwrap());
        assert!(c
            .bool("k")
            .unwrap_err()
            .contains("`k` must be `true` or `false`, found an integer"));
        assert!(c.bool("none").unwrap_err().contains("add `none = true`"));
    }
}
