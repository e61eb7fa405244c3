//! Configuration problems, and the helpers that strategies and the daemon share to read their
//! TOML tables the same way: serde types that mirror the file, every problem collected with its
//! TOML path before anything is returned.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// One thing wrong with a configuration file, located by its TOML path
/// (`resources.user.strategies.password.hash.memory_kib`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one file; validation keeps going after the first so that an operator
/// fixes a file in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found, the problems otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Reads serde types out of a TOML value, reporting the failing key with its full TOML path.
pub struct TableReader;

impl TableReader {
    /// Deserializes `value` (found at `path` in the file) into `T`. Every unknown key is
    /// reported, each with its full path, beside the first value of a wrong type (after which
    /// serde cannot go on). Types that must refuse unknown keys by themselves (internally
    /// tagged enums, whose fields serde buffers) keep `#[serde(deny_unknown_fields)]`.
    ///
    /// Every problem found is added to `problems`; the value is returned whenever it could be
    /// read (unknown keys do not stop the checks that follow).
    pub fn read<T: DeserializeOwned>(
        path: &str,
        value: toml::Value,
        problems: &mut Problems,
    ) -> Option<T> {
        let mut unknown = Vec::new();
        let mut record = |ignored: serde_ignored::Path<'_>| {
            // serde_ignored writes `?` for the inside of an `Option`: not a TOML key.
            let key: Vec<String> = ignored
                .to_string()
                .split('.')
                .filter(|part| *part != "?")
                .map(str::to_string)
                .collect();
            // Array positions as TOML paths write them: `keys[1].colour`, not `keys.1.colour`.
            let mut path = String::new();
            for part in key {
                if part.parse::<usize>().is_ok() && !path.is_empty() {
                    path.push_str(&format!("[{part}]"));
                } else {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&part);
                }
            }
            unknown.push(path);
        };
        let outcome = serde_path_to_error::deserialize::<_, T>(serde_ignored::Deserializer::new(
            value,
            &mut record,
        ));
        for key in unknown {
            problems.push(join_path(path, &key), "unknown key");
        }
        match outcome {
            Ok(v) => Some(v),
            Err(err) => {
                let inner = err.path().to_string();
                let full = join_path(path, if inner == "." { "" } else { &inner });
                // serde's message names the key already for unknown and missing fields.
                problems.push(full, without_value(err.into_inner().message()));
                None
            }
        }
    }
}

/// serde's message with the offending value taken out: a problem names the key and what is
/// wrong, never what was there (a secret pasted into the wrong key must not reach a log).
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            // `found` is `string "..."`, `integer `7``: keep its kind only.
            let kind = found.split([' ', '`', '"']).next().unwrap_or("value");
            return format!("{}{kind}, expected {expected}", prefix);
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ")
        && let Some((_, expected)) = rest.split_once(", expected ")
    {
        return format!("unknown value, expected {expected}");
    }
    message.to_string()
}

/// `a` + `.` + `b`, either side possibly empty.
pub fn join_path(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}.{b}"),
    }
}

/// Parses a lifetime or window: a duration of whole seconds, at least one (tokens carry
/// their times in seconds, so `"500ms"` would expire the moment it is issued).
///
/// # Errors
/// A message for the operator when the string is not such a duration.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return Err("must be a whole number of seconds, at least 1s".to_string());
    }
    Ok(d)
}

/// Parses a human duration (`"60s"`, `"15m"`, `"3d"`) as written in the TOML file.
///
/// # Errors
/// A message for the operator when the string is not a duration or is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!(
            "is not a duration ({e}); write for example \"60s\", \"15m\", \"3d\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        cost: u32,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        hash: Inner,
    }

    #[test]
    fn reader_reports_full_path_of_nested_key() {
        let value: toml::Value =
            toml::from_str("hash = { cost = \"x\" }").unwrap_or_else(|e| panic!("{e}"));
        let mut problems = Problems::default();
        let read = TableReader::read::<Outer>("resources.user.strategies.pw", value, &mut problems);
        assert!(read.is_none());
        assert_eq!(problems.0[0].path, "resources.user.strategies.pw.hash.cost");
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Lenient {
        a: u32,
        #[serde(default)]
        inner: Option<Nested>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Nested {
        b: u32,
    }

    #[test]
    fn reader_reports_every_unknown_key_at_once() {
        let value: toml::Value = toml::from_str("a = 1\nx = 2\ny = 3\ninner = { b = 1, z = 4 }")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut problems = Problems::default();
        let read = TableReader::read::<Lenient>("t", value, &mut problems);
        assert!(read.is_some(), "unknown keys do not stop the reading");
        let paths: Vec<_> = problems.0.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["t.inner.z", "t.x", "t.y"], "{problems}");
    }

    #[test]
    fn problems_never_echo_the_value() {
        let value: toml::Value = toml::from_str("hash = { cost = \"sk_live_secret\" }")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut problems = Problems::default();
        let _ = TableReader::read::<Outer>("p", value, &mut problems);
        let text = problems.to_string();
        assert!(!text.contains("sk_live_secret"), "{text}");
        assert!(text.contains("expected u32"), "{text}");
        assert_eq!(
            without_value("invalid value: integer `300`, expected u8"),
            "invalid value: integer, expected u8"
        );
        assert_eq!(
            without_value("unknown variant `hs999`, expected one of `a`, `b`"),
            "unknown value, expected one of `a`, `b`"
        );
        assert_eq!(without_value("missing field `url`"), "missing field `url`");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_lifetime("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_lifetime("500ms").is_err());
        assert!(parse_lifetime("1500ms").is_err());
    }
}
