//! Store configuration: the file `config` at the store root.
//!
//! ```text
//! # comments and blank lines are ignored
//! gc.max-size = 10G
//! gc.max-age = 30d
//! ```
//!
//! One `key = value` per line. Known keys ([`KEYS`]) are checked when set
//! and when read; an unknown key or a bad value is refused with the line
//! number, so a typo never silently disables a size cap. The file is
//! replaced atomically on every change. Command-line flags override it.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::publish::{self, Access, Durability, SyncQueue};

/// The keys a store configuration may hold, with what each means.
pub const KEYS: [(&str, &str); 5] = [
    (
        "gc.max-size",
        "evict least-recently-used entries until objects total at most this (e.g. 10G)",
    ),
    (
        "gc.max-age",
        "evict entries not used for this long (e.g. 30d)",
    ),
    (
        "gc.grace",
        "keep unreachable objects younger than this (default 1h)",
    ),
    (
        "gc.reflog-keep",
        "reflog entries newer than this keep what they name (default 1d)",
    ),
    (
        PACK_MAX_KEY,
        "objects up to this size go to packs, larger ones to loose files (default 64K; 0: loose only)",
    ),
];

/// The key setting how large an object the command line packs (the
/// library's [`crate::StoreOptions::pack_max`]).
pub const PACK_MAX_KEY: &str = "objects.pack-max";

/// A parsed configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreConfig {
    entries: Vec<(String, String)>,
}

impl StoreConfig {
    /// Reads the configuration of the store at `layout` (empty if there is none).
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the line of an unknown key or a bad value.
    pub fn read(layout: &Layout) -> Result<StoreConfig> {
        let path = layout.config();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StoreConfig::default()),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let mut config = StoreConfig::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| {
                Error::corrupt(
                    "store configuration",
                    &path,
                    format!("line {}: {reason}", n + 1),
                )
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad("expected `key = value`".into()))?;
            config
                .set(key.trim(), value.trim())
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(config)
    }

    /// Sets `key` to `value` after checking both.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an unknown key or a bad value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        check(key, value)?;
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.entries.push((key.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// Removes `key`; true if it was set.
    pub fn unset(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        self.entries.len() != before
    }

    /// The value of `key`, as written.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every key and value, in the order they were set.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A size-valued key, parsed.
    pub fn size(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| parse_size(v).ok())
    }

    /// A duration-valued key, parsed.
    pub fn duration(&self, key: &str) -> Option<Duration> {
        self.get(key).and_then(|v| parse_duration(v).ok())
    }

    /// Writes the configuration atomically.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn write(&self, layout: &Layout) -> Result<()> {
        let mut text = String::from("# rask-store configuration: `rask-store config --help`\n");
        for (k, v) in &self.entries {
            let _ = writeln!(text, "{k} = {v}");
        }
        let mut temp = publish::temp_file(layout.tmp_dir(), "config-")?;
        temp.write_all(text.as_bytes()).at("write", temp.path())?;
        publish::publish(
            temp,
            &layout.config(),
            Access::Replaceable,
            Durability::Full,
            &SyncQueue::default(),
        )
    }
}

fn check(key: &str, value: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidConfig {
        key: key.to_string(),
        reason,
    };
    match key {
        "gc.max-size" | PACK_MAX_KEY => parse_size(value).map(drop).map_err(invalid),
        "gc.max-age" | "gc.grace" | "gc.reflog-keep" => {
            parse_duration(value).map(drop).map_err(invalid)
        }
        _ => {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            Err(invalid(format!(
                "unknown key; known keys: {}",
                known.join(", ")
            )))
        }
    }
}

/// Parses a byte count: a whole number with an optional binary suffix
/// K, M, G or T (optionally followed by `B` or `iB`).
///
/// # Errors
/// A message saying what is expected.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "invalid size {text:?}: expected a whole number with an optional K, M, G or T \
             suffix, e.g. 500M or 10G"
        )
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration: a whole number with a unit s, m, h or d (`0` alone is
/// accepted too).
///
/// # Errors
/// A message saying what is expected.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let err = || {
        format!(
            "invalid duration {text:?}: expected a whole number and a unit s, m, h or d, \
             e.g. 30m or 7d"
        )
    };
    if !t.is_ascii() || t.is_empty() {
        return Err(err());
    }
    let (digits, unit) = t.split_at(t.len() - 1);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("1.5G").unwrap_err().contains("whole number"));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("10").unwrap_err().contains("unit"));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("é").is_err());
    }

    #[test]
    fn configuration_round_trips_and_refuses_typos() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        fs::create_dir_all(layout.tmp_dir()).unwrap();
        let mut config = StoreConfig::read(&layout).unwrap();
        config.set("gc.max-size", "10G").unwrap();
        config.set("gc.max-age", "30d").unwrap();
        let err = config.set("gc.maxsize", "1G").unwrap_err().to_string();
        assert!(
            err.contains("unknown key") && err.contains("gc.max-size"),
            "{err}"
        );
        assert!(config.set("gc.max-age", "soon").is_err());
        config.write(&layout).unwrap();
        let back = StoreConfig::read(&layout).unwrap();
        assert_eq!(back.size("gc.max-size"), Some(10 << 30));
        assert_eq!(
            back.duration("gc.max-age"),
            Some(Duration::from_secs(30 * 86_400))
        );
        fs::write(layout.config(), "gc.max-size = 10G\ngc.max-sise = 1G\n").unwrap();
        let err = StoreConfig::read(&layout).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("unknown key"),
            "{err}"
        );
    }
}
