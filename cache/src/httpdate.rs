//! HTTP dates (RFC 9110 §5.6.7): IMF-fixdate is what we send; the obsolete RFC 850 and asctime
//! forms are accepted, as a recipient must. Times are whole seconds since the Unix epoch.

use ringgate_model::calendar;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Parses an HTTP date into seconds since the epoch; `None` when it is not one.
pub fn parse(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (_, rest) = s.split_once(' ')?;
    let parts: Vec<&str> = rest.split([' ', '-']).filter(|p| !p.is_empty()).collect();
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" -> [06, Nov, 1994, 08:49:37, GMT]
    // RFC 850:     "Sunday, 06-Nov-94 08:49:37 GMT" -> [06, Nov, 94, 08:49:37, GMT]
    // asctime:     "Sun Nov  6 08:49:37 1994"      -> [Nov, 6, 08:49:37, 1994]
    let (day, month, year, clock) = match parts.as_slice() {
        [d, m, y, t, "GMT"] => (*d, *m, *y, *t),
        [m, d, t, y] => (*d, *m, *y, *t),
        _ => return None,
    };
    let day: u64 = digits(day, 1, 2)?;
    let month = MONTHS
        .iter()
        .position(|m| m.as_slice() == month.as_bytes())? as u64
        + 1;
    let mut year: u64 = digits(year, 2, 4)?;
    if year < 100 {
        // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = clock.split(':');
    let h: u64 = digits(hms.next()?, 2, 2)?;
    let mi: u64 = digits(hms.next()?, 2, 2)?;
    let se: u64 = digits(hms.next()?, 2, 2)?;
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

fn digits(s: &str, min: usize, max: usize) -> Option<u64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days from 1970-01-01 to the given date; `None` before 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    u64::try_from(calendar::days_from_civil(y as i64, m as i64, d as i64)).ok()
}

/// Formats seconds since the epoch as an IMF-fixdate.
pub fn format(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        std::str::from_utf8(MONTHS[(m - 1) as usize]).unwrap_or("Jan"),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let (y, m, d) = calendar::civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    (y as u64, m as u64, d as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_three_forms_of_rfc_9110_read_the_same() {
        let t = 784_111_777;
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse(b"Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(format(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        for bad in [
            &b""[..],
            b"0",
            b"Sun, 06 Nov 1994 08:49 GMT",
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_gives_the_time_back(t in 0u64..8_000_000_000) {
            prop_assert_eq!(parse(format(t).as_bytes()), Some(t));
        }

        #[test]
        fn any_bytes_parse_without_panicking(v in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse(&v);
        }
    }
}
