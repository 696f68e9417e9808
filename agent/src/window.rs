//! Maintenance windows. Pure: the time is an argument (unix seconds).
//!
//! Time zones are fixed UTC offsets only (`UTC`, `Z`, `+02:00`, `-0530`): named zones would
//! need a tz database in the agent's static image, and a fixed offset means a window never
//! moves under a rollout because of a daylight-saving change. The arithmetic is written by
//! hand because it is a few lines of integer maths on a fixed offset.

use crate::crd::WindowSpec;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WindowError {
    #[error("window day {0:?} is not one of mon, tue, wed, thu, fri, sat, sun")]
    Day(String),
    #[error("window time {0:?} is not HH:MM (00:00 to 23:59)")]
    Time(String),
    #[error("window timeZone {0:?} is not UTC or a fixed offset like +02:00")]
    Zone(String),
}

/// 0 = Monday .. 6 = Sunday.
fn parse_day(s: &str) -> Result<u8, WindowError> {
    let lower = s.trim().to_ascii_lowercase();
    let names = [
        ("mon", "monday"),
        ("tue", "tuesday"),
        ("wed", "wednesday"),
        ("thu", "thursday"),
        ("fri", "friday"),
        ("sat", "saturday"),
        ("sun", "sunday"),
    ];
    names
        .iter()
        .position(|(short, long)| lower == *short || lower == *long)
        .map(|i| i as u8)
        .ok_or_else(|| WindowError::Day(s.to_string()))
}

/// Minutes after midnight.
fn parse_hhmm(s: &str) -> Result<i64, WindowError> {
    let err = || WindowError::Time(s.to_string());
    let (h, m) = s.trim().split_once(':').ok_or_else(err)?;
    let h: i64 = h.parse().map_err(|_| err())?;
    let m: i64 = m.parse().map_err(|_| err())?;
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(err());
    }
    Ok(h * 60 + m)
}

/// Offset from UTC in seconds.
fn parse_zone(s: &str) -> Result<i64, WindowError> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(0);
    }
    let err = || WindowError::Zone(s.to_string());
    let rest = t
        .strip_prefix("UTC")
        .or_else(|| t.strip_prefix("utc"))
        .unwrap_or(t);
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'+') => (1, &rest[1..]),
        Some(b'-') => (-1, &rest[1..]),
        _ => return Err(err()),
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() == 4 => digits.split_at(2),
        None => (digits, "0"),
    };
    let h: i64 = h.parse().map_err(|_| err())?;
    let m: i64 = m.parse().map_err(|_| err())?;
    if h > 14 || m >= 60 {
        return Err(err());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Check a window for errors without evaluating it.
pub fn validate(w: &WindowSpec) -> Result<(), WindowError> {
    for d in &w.days {
        parse_day(d)?;
    }
    parse_hhmm(&w.start_time)?;
    parse_hhmm(&w.end_time)?;
    parse_zone(&w.time_zone)?;
    Ok(())
}

/// Is `now` (unix seconds) inside the window? A window whose end is before its start runs
/// over midnight and belongs to the day it opened on. Equal start and end means all day.
pub fn is_open(w: &WindowSpec, now: i64) -> Result<bool, WindowError> {
    let days: Vec<u8> = w
        .days
        .iter()
        .map(|d| parse_day(d))
        .collect::<Result<_, _>>()?;
    let start = parse_hhmm(&w.start_time)?;
    let end = parse_hhmm(&w.end_time)?;
    let local = now + parse_zone(&w.time_zone)?;
    let day_index = local.div_euclid(86_400);
    let minute = local.rem_euclid(86_400) / 60;
    // 1970-01-01 was a Thursday (3 when Monday is 0).
    let weekday = |day: i64| ((day + 3).rem_euclid(7)) as u8;
    let day_ok = |day: i64| days.is_empty() || days.contains(&weekday(day));
    Ok(if start == end {
        day_ok(day_index)
    } else if start < end {
        day_ok(day_index) && minute >= start && minute < end
    } else if minute >= start {
        day_ok(day_index)
    } else if minute < end {
        day_ok(day_index - 1)
    } else {
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(days: &[&str], start: &str, end: &str, tz: &str) -> WindowSpec {
        WindowSpec {
            days: days.iter().map(|s| s.to_string()).collect(),
            start_time: start.into(),
            end_time: end.into(),
            time_zone: tz.into(),
        }
    }

    // 2024-01-01 was a Monday; 00:00 UTC.
    const MON: i64 = 1_704_067_200;
    const H: i64 = 3600;

    #[test]
    fn same_day_window() {
        let win = w(&["mon", "Wednesday"], "02:00", "04:00", "UTC");
        assert!(!is_open(&win, MON + H).unwrap());
        assert!(is_open(&win, MON + 2 * H).unwrap());
        assert!(is_open(&win, MON + 3 * H + 59 * 60).unwrap());
        assert!(!is_open(&win, MON + 4 * H).unwrap());
        // Tuesday
        assert!(!is_open(&win, MON + 24 * H + 3 * H).unwrap());
        // Wednesday
        assert!(is_open(&win, MON + 48 * H + 3 * H).unwrap());
    }

    #[test]
    fn over_midnight_belongs_to_opening_day() {
        let win = w(&["sun"], "22:00", "02:00", "UTC");
        let sun = MON + 6 * 24 * H;
        assert!(is_open(&win, sun + 23 * H).unwrap());
        // Monday 01:00 is still Sunday's window.
        assert!(is_open(&win, sun + 25 * H).unwrap());
        assert!(!is_open(&win, sun + 26 * H).unwrap());
        // Monday 23:00 is not a window day.
        assert!(!is_open(&win, MON + 23 * H).unwrap());
        // Sunday 01:00 belongs to Saturday, not a window day.
        assert!(!is_open(&win, sun + H).unwrap());
    }

    #[test]
    fn fixed_offset_shifts_the_day() {
        // Monday 23:30 UTC is Tuesday 01:30 at +02:00.
        let win = w(&["tue"], "01:00", "02:00", "+02:00");
        assert!(is_open(&win, MON + 23 * H + 30 * 60).unwrap());
        let utc = w(&["tue"], "01:00", "02:00", "UTC");
        assert!(!is_open(&utc, MON + 23 * H + 30 * 60).unwrap());
        let west = w(&[], "20:00", "21:00", "-0530");
        // 01:45 UTC = 20:15 the previous day at -05:30.
        assert!(is_open(&west, MON + H + 45 * 60).unwrap());
    }

    #[test]
    fn all_day_and_every_day() {
        let win = w(&[], "00:00", "00:00", "Z");
        assert!(is_open(&win, MON + 13 * H).unwrap());
    }

    #[test]
    fn bad_windows_are_clear_errors() {
        assert_eq!(
            is_open(&w(&["funday"], "01:00", "02:00", "UTC"), MON),
            Err(WindowError::Day("funday".into()))
        );
        assert_eq!(
            validate(&w(&[], "25:00", "02:00", "UTC")),
            Err(WindowError::Time("25:00".into()))
        );
        assert_eq!(
            validate(&w(&[], "01:00", "2", "UTC")),
            Err(WindowError::Time("2".into()))
        );
        assert_eq!(
            validate(&w(&[], "01:00", "02:00", "Europe/Paris")),
            Err(WindowError::Zone("Europe/Paris".into()))
        );
        assert!(validate(&w(&["sat"], "01:00", "02:00", "UTC+01:00")).is_ok());
    }
}
