//! Parsing sizes (`500M`, `10G`) and durations (`30s`, `15m`, `2h`, `7d`)
//! given on the command line or in the store configuration.

use std::time::Duration;

/// Parses a byte count: a whole number with an optional binary suffix
/// K, M, G or T (optionally followed by `B` or `iB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
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
        format!("invalid size {text:?}: expected a whole number with an optional K, M, G or T suffix, e.g. 500M or 10G")
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration: a whole number with a unit s, m, h or d (`0` alone is
/// accepted too).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let err = || {
        format!(
            "invalid duration {text:?}: expected a whole number and a unit s, m, h or d, e.g. 30m or 7d"
        )
    };
    let (digits, unit) = t.split_at(t.len().saturating_sub(1));
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
    }
}
