//! Log time stamps as 5.0.1 writes them: `EventTimeStamp` (default format
//! `%m/%d/%y %H:%M:%S`, or the strftime format given) and `EventPreciseTimeStamp` (`.uuuuuu`
//! appended). Times are UTC (no time-zone database is read).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// 5.0.1's default time-stamp format.
pub const DEFAULT_FORMAT: &str = "%m/%d/%y %H:%M:%S";

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A tracing timer printing 5.0.1-style time stamps.
#[derive(Debug, Clone)]
pub struct SpreadTime {
    /// strftime format (a subset: `%a %A %b %B %d %e %H %I %M %S %p %y %Y %m %j %T %D %F %R
    /// %s %Z %z %%`; anything else is copied).
    pub format: String,
    /// Append `.uuuuuu` microseconds.
    pub precise: bool,
}

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub min: u32,
    /// Second 0..=59.
    pub sec: u32,
    /// Day of week, 0 = Sunday.
    pub wday: u32,
    /// Day of year, 1..=366.
    pub yday: u32,
}

impl Tm {
    /// UTC time of `secs` seconds since 1970-01-01.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday =
            CUM[usize::try_from(month - 1).unwrap_or(0)] + day + i64::from(leap && month > 2);
        let n = |v: i64| u32::try_from(v).unwrap_or(0);
        Self {
            year,
            month: n(month),
            day: n(day),
            hour: n(rem / 3600),
            min: n(rem / 60 % 60),
            sec: n(rem % 60),
            wday: n((days + 4).rem_euclid(7)),
            yday: n(yday),
        }
    }
}

/// Formats `tm` with the strftime subset of [`SpreadTime::format`].
pub fn strftime(format: &str, tm: &Tm, unix: i64) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let day = DAYS.get(tm.wday as usize).copied().unwrap_or("?");
        let month = MONTHS
            .get(tm.month.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("?");
        let _ = match chars.next() {
            Some('a') => write!(out, "{}", &day[..3]),
            Some('A') => write!(out, "{day}"),
            Some('b' | 'h') => write!(out, "{}", &month[..3]),
            Some('B') => write!(out, "{month}"),
            Some('d') => write!(out, "{:02}", tm.day),
            Some('e') => write!(out, "{:2}", tm.day),
            Some('H') => write!(out, "{:02}", tm.hour),
            Some('I') => write!(out, "{:02}", (tm.hour + 11) % 12 + 1),
            Some('M') => write!(out, "{:02}", tm.min),
            Some('S') => write!(out, "{:02}", tm.sec),
            Some('p') => write!(out, "{}", if tm.hour < 12 { "AM" } else { "PM" }),
            Some('y') => write!(out, "{:02}", tm.year.rem_euclid(100)),
            Some('Y') => write!(out, "{}", tm.year),
            Some('m') => write!(out, "{:02}", tm.month),
            Some('j') => write!(out, "{:03}", tm.yday),
            Some('T') => write!(out, "{:02}:{:02}:{:02}", tm.hour, tm.min, tm.sec),
            Some('R') => write!(out, "{:02}:{:02}", tm.hour, tm.min),
            Some('D') => write!(
                out,
                "{:02}/{:02}/{:02}",
                tm.month,
                tm.day,
                tm.year.rem_euclid(100)
            ),
            Some('F') => write!(out, "{}-{:02}-{:02}", tm.year, tm.month, tm.day),
            Some('s') => write!(out, "{unix}"),
            Some('Z') => write!(out, "UTC"),
            Some('z') => write!(out, "+0000"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}

impl FormatTime for SpreadTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let text = strftime(&self.format, &Tm::from_unix(secs), secs);
        if self.precise {
            write!(w, "{text}.{:06}", now.subsec_micros())
        } else {
            write!(w, "{text}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2026-11-25 14:30:09 UTC, a Wednesday, day 329.
        let t = Tm::from_unix(1_795_617_009);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.min, t.sec, t.wday, t.yday),
            (2026, 11, 25, 14, 30, 9, 3, 329)
        );
        assert_eq!(strftime(DEFAULT_FORMAT, &t, 0), "11/25/26 14:30:09");
        assert_eq!(
            strftime("[%a %d %b %Y %H:%M:%S] %j %% %q", &t, 0),
            "[Wed 25 Nov 2026 14:30:09] 329 % %q"
        );
        let epoch = Tm::from_unix(0);
        assert_eq!(
            strftime("%F %T %A", &epoch, 0),
            "1970-01-01 00:00:00 Thursday"
        );
        let leap = Tm::from_unix(951_782_400); // 2000-02-29
        assert_eq!((leap.month, leap.day, leap.yday), (2, 29, 60));
    }
}
