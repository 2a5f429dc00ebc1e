//! Proleptic Gregorian dates and day counts since 1970-01-01, for the few places that write or
//! read dates by hand (access-log times, API-key expiries, HTTP dates) without a date crate.
//!
//! The day count is shifted to start on 0000-03-01, so that the leap day is the last day of each
//! shifted year; a date then falls out of the 400-year cycle (146,097 days), the year within it,
//! and a month table that is linear in the day of the shifted year (months of 31 and 30 days
//! alternate from March, and 153 days make five months).

/// 719,468 days separate 0000-03-01 from 1970-01-01.
const SHIFT: i64 = 719_468;

/// Days since 1970-01-01 (negative before) of `year`-`month`-`day` (month 1-12).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - SHIFT
}

/// The date (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + SHIFT;
    let era = z.div_euclid(146_097);
    // Day within the 400-year cycle, 0..=146_096; the leap days (one each 4 years, none each
    // 100, one each 400) removed to count in 365-day years.
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counts_and_dates_go_both_ways_day_by_day() {
        let month_days = |y: i64, m: i64| match m {
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut days = 0;
        for y in 1970..2410 {
            for m in 1..=12 {
                for d in 1..=month_days(y, m) {
                    assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
                    assert_eq!(days_from_civil(y, m, d), days);
                    days += 1;
                }
            }
        }
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
