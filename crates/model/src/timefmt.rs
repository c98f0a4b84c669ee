//! Timestamps as PlanetScale's API writes them: ISO-8601 UTC with milliseconds, `2023-01-10T23:31:01.573Z`.

use time::{format_description::well_known::Rfc3339, OffsetDateTime, UtcOffset};

/// Milliseconds since the Unix epoch, the unit the catalog stores.
pub fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601(millis: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an RFC 3339 timestamp into epoch milliseconds.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_673_393_461_573), "2023-01-10T23:31:01.573Z");
        assert_eq!(
            parse_iso8601("2023-01-10T23:31:01.573Z"),
            Some(1_673_393_461_573)
        );
        assert_eq!(parse_iso8601("yesterday"), None);
    }

    #[test]
    fn round_trips() {
        let now = now_millis();
        assert_eq!(parse_iso8601(&iso8601(now)), Some(now));
    }
}
