//! systemd time spans (systemd.time(7)): `30`, `30s`, `500ms`,
//! `2min 30s`, `infinity`; a bare number is seconds.

use std::time::Duration;

/// A parsed time span; `None` for `infinity`.
pub fn parse(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "infinity" {
        return Ok(None);
    }
    if text.is_empty() {
        return Err("empty time span".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: not a time span"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let seconds_per = match &rest[..unit_len] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 1e-3,
            "us" | "usec" => 1e-6,
            "ns" | "nsec" => 1e-9,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            unit => return Err(format!("{text:?}: unknown time unit {unit:?}")),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds_per)
            .map_err(|_| format!("{text:?}: out of range"))?;
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_spans() {
        let s = |t| parse(t).expect("valid");
        assert_eq!(s("30"), Some(Duration::from_secs(30)));
        assert_eq!(s("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(s("2min 30s"), Some(Duration::from_secs(150)));
        assert_eq!(s("1h5m"), Some(Duration::from_secs(3900)));
        assert_eq!(s("0"), Some(Duration::ZERO));
        assert_eq!(s("infinity"), None);
        assert!(parse("soon").is_err());
        assert!(parse("5 fortnights").is_err());
    }
}
