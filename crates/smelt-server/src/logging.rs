//! The server's log output and its run-time settings (Triton's `logging`
//! extension: `GET`/`POST /v2/logging`).
//!
//! The settings are Triton's: `log_info`, `log_warning`, `log_error` switch each
//! level on or off independently; `log_verbose_level` 0 hides debug output, 1
//! shows Smelt's debug events, 2 and up its trace events too; `log_format` is
//! `"default"` (Triton's `MMDD hh:mm:ss.uuuuuu` stamp) or `"ISO8601"`;
//! `log_file` is always `""` (standard error) and cannot be changed over the
//! network, as in Triton.
//!
//! The subscriber is process-wide, so the settings are too: [`init`] installs a
//! subscriber whose filter and timestamp read them on every event, so
//! [`update`] takes effect at once, with no reload of the subscriber. The filter
//! reports every callsite as "sometimes" interesting so that tracing never
//! caches a decision that a later update would invalidate. `RUST_LOG`, when set
//! at startup, further restricts events by target and level.

use crate::error::{Result, ServerError};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::{Context, Filter};

/// How each log line's timestamp is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `I1121 19:53:55.123456`-style, as Triton's default (the level letter is
    /// written by the formatter separately).
    Default,
    /// `2026-11-21T19:53:55Z`.
    Iso8601,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Default => "default",
            LogFormat::Iso8601 => "ISO8601",
        }
    }

    pub fn parse(name: &str) -> Option<LogFormat> {
        match name {
            "default" => Some(LogFormat::Default),
            "ISO8601" => Some(LogFormat::Iso8601),
            _ => None,
        }
    }
}

/// The settings as `GET /v2/logging` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub log_file: String,
    pub log_info: bool,
    pub log_warning: bool,
    pub log_error: bool,
    pub log_verbose_level: u32,
    pub log_format: LogFormat,
}

/// A change to the settings; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettingsUpdate {
    pub log_file: Option<String>,
    pub log_info: Option<bool>,
    pub log_warning: Option<bool>,
    pub log_error: Option<bool>,
    pub log_verbose_level: Option<u32>,
    pub log_format: Option<LogFormat>,
}

/// The live settings; read by the filter and the timestamp on every event.
struct Switches {
    info: AtomicBool,
    warning: AtomicBool,
    error: AtomicBool,
    verbose: AtomicU32,
    iso8601: AtomicU8,
}

static SWITCHES: Switches = Switches {
    info: AtomicBool::new(true),
    warning: AtomicBool::new(true),
    error: AtomicBool::new(true),
    verbose: AtomicU32::new(0),
    iso8601: AtomicU8::new(0),
};

/// The current settings.
pub fn settings() -> LogSettings {
    LogSettings {
        log_file: String::new(),
        log_info: SWITCHES.info.load(Ordering::Relaxed),
        log_warning: SWITCHES.warning.load(Ordering::Relaxed),
        log_error: SWITCHES.error.load(Ordering::Relaxed),
        log_verbose_level: SWITCHES.verbose.load(Ordering::Relaxed),
        log_format: if SWITCHES.iso8601.load(Ordering::Relaxed) == 1 { LogFormat::Iso8601 } else { LogFormat::Default },
    }
}

/// Applies `change` (all of it, or nothing if it is refused) and returns the
/// settings now in force.
pub fn update(change: &LogSettingsUpdate) -> Result<LogSettings> {
    if change.log_file.is_some() {
        return Err(ServerError::unsupported("log file location can not be updated through network protocol"));
    }
    if let Some(on) = change.log_info {
        SWITCHES.info.store(on, Ordering::Relaxed);
    }
    if let Some(on) = change.log_warning {
        SWITCHES.warning.store(on, Ordering::Relaxed);
    }
    if let Some(on) = change.log_error {
        SWITCHES.error.store(on, Ordering::Relaxed);
    }
    if let Some(level) = change.log_verbose_level {
        SWITCHES.verbose.store(level, Ordering::Relaxed);
    }
    if let Some(format) = change.log_format {
        SWITCHES.iso8601.store(u8::from(format == LogFormat::Iso8601), Ordering::Relaxed);
    }
    Ok(settings())
}

/// Whether an event or span of `level` from `target` passes the settings.
fn passes(level: &Level, target: &str) -> bool {
    let verbose = || SWITCHES.verbose.load(Ordering::Relaxed);
    // Verbose output is Smelt's own; its dependencies' debug output would drown it.
    let ours = || target.starts_with("smelt");
    match *level {
        Level::ERROR => SWITCHES.error.load(Ordering::Relaxed),
        Level::WARN => SWITCHES.warning.load(Ordering::Relaxed),
        Level::INFO => SWITCHES.info.load(Ordering::Relaxed),
        Level::DEBUG => verbose() >= 1 && ours(),
        Level::TRACE => verbose() >= 2 && ours(),
    }
}

/// The per-event filter over [`SWITCHES`].
struct SettingsFilter;

impl<S> Filter<S> for SettingsFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        passes(meta.level(), meta.target())
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
}

/// Writes the timestamp in the format the settings name.
struct SettingsTime;

impl FormatTime for SettingsTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let stamp = CivilTime::from_unix(since.as_secs());
        if SWITCHES.iso8601.load(Ordering::Relaxed) == 1 {
            write!(
                w,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second
            )
        } else {
            write!(
                w,
                "{:02}{:02} {:02}:{:02}:{:02}.{:06}",
                stamp.month,
                stamp.day,
                stamp.hour,
                stamp.minute,
                stamp.second,
                since.subsec_micros()
            )
        }
    }
}

/// A UTC calendar date and time of day.
#[derive(Debug, PartialEq, Eq)]
struct CivilTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl CivilTime {
    /// From seconds since 1970-01-01T00:00:00Z (the proleptic Gregorian
    /// calendar, computed by 400-year eras of 146,097 days).
    fn from_unix(secs: u64) -> CivilTime {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        CivilTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }
}

/// Installs the log output on standard error: `verbose` is the starting
/// `log_verbose_level`. Idempotent (a second call keeps the first subscriber
/// but still sets the level).
pub fn init(verbose: u32) {
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;

    SWITCHES.verbose.store(verbose, Ordering::Relaxed);
    // Colours only on a terminal, so log files hold plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_timer(SettingsTime);
    let env = std::env::var_os("RUST_LOG").and_then(|_| tracing_subscriber::EnvFilter::try_from_default_env().ok());
    let result = match env {
        Some(env) => tracing_subscriber::registry().with(output.with_filter(SettingsFilter.and(env))).try_init(),
        None => tracing_subscriber::registry().with(output.with_filter(SettingsFilter)).try_init(),
    };
    // Already installed (tests, a second server in one process): keep it.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_matches_known_dates() {
        let t = |year, month, day, hour, minute, second| CivilTime { year, month, day, hour, minute, second };
        assert_eq!(CivilTime::from_unix(0), t(1970, 1, 1, 0, 0, 0));
        // 2000-02-29T12:34:56Z, a leap day in a year divisible by 400.
        assert_eq!(CivilTime::from_unix(951_827_696), t(2000, 2, 29, 12, 34, 56));
        // 2026-11-21T19:53:55Z.
        assert_eq!(CivilTime::from_unix(1_795_290_835), t(2026, 11, 21, 19, 53, 55));
        // 2100-03-01, after a February of 28 days in a century year.
        assert_eq!(CivilTime::from_unix(4_107_542_400), t(2100, 3, 1, 0, 0, 0));
    }

    #[test]
    fn formats_parse_by_triton_names() {
        assert_eq!(LogFormat::parse("default"), Some(LogFormat::Default));
        assert_eq!(LogFormat::parse("ISO8601"), Some(LogFormat::Iso8601));
        assert_eq!(LogFormat::parse("iso8601"), None);
        assert_eq!(LogFormat::Iso8601.name(), "ISO8601");
    }

    /// One test changes the process-wide settings, so the checks run in order.
    #[test]
    fn updates_take_effect_and_refusals_change_nothing() {
        let before = settings();
        assert!(passes(&Level::INFO, "smelt_server"));
        let refused = update(&LogSettingsUpdate {
            log_file: Some("/tmp/x.log".into()),
            log_info: Some(false),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(refused.kind, crate::ErrorKind::Unsupported);
        assert_eq!(settings(), before);

        let now = update(&LogSettingsUpdate {
            log_info: Some(false),
            log_error: Some(false),
            log_verbose_level: Some(1),
            log_format: Some(LogFormat::Iso8601),
            ..Default::default()
        })
        .unwrap();
        assert!(!now.log_info && now.log_warning && !now.log_error);
        assert_eq!((now.log_verbose_level, now.log_format), (1, LogFormat::Iso8601));
        assert!(!passes(&Level::INFO, "smelt_server"));
        assert!(passes(&Level::WARN, "smelt_server"));
        assert!(!passes(&Level::ERROR, "smelt_server"));
        assert!(passes(&Level::DEBUG, "smelt_server::http"));
        assert!(!passes(&Level::DEBUG, "hyper::proto"));
        assert!(!passes(&Level::TRACE, "smelt_server"));
        update(&LogSettingsUpdate { log_verbose_level: Some(2), ..Default::default() }).unwrap();
        assert!(passes(&Level::TRACE, "smelt_server"));

        update(&LogSettingsUpdate {
            log_info: Some(before.log_info),
            log_warning: Some(before.log_warning),
            log_error: Some(before.log_error),
            log_verbose_level: Some(before.log_verbose_level),
            log_format: Some(before.log_format),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(settings(), before);
    }
}
