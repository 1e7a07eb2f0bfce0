//! The log subscriber: `LOG_FORMAT=json` writes one JSON object per line (with the fields of the
//! spans an event is in, such as a request's `request_id`), for a log collector; the default is
//! the human format, coloured only on a terminal. Rocket's own lines (it logs through the `log`
//! crate) come through the same subscriber, by the `log` bridge `try_init` installs.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT`: unset, empty or `human` (also `text`, `pretty`), or `json`; anything else
    /// is an error naming the variable, so a typo does not silently give the wrong format.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "human" | "text" | "pretty") => Ok(LogFormat::Human),
            Some("json") => Ok(LogFormat::Json),
            Some(_) => Err(format!(
                "LOG_FORMAT: {:?} is not one of human, json",
                value.unwrap_or_default().chars().take(40).collect::<String>()
            )),
        }
    }

    pub fn from_env() -> Result<LogFormat, String> {
        match std::env::var("LOG_FORMAT") {
            Ok(v) => LogFormat::parse(Some(&v)),
            Err(std::env::VarError::NotPresent) => LogFormat::parse(None),
            Err(std::env::VarError::NotUnicode(_)) => Err("LOG_FORMAT: is not valid UTF-8".into()),
        }
    }
}

/// Installs the process's subscriber with `filter`, in the format `LOG_FORMAT` asks for.
pub fn init(filter: EnvFilter) -> Result<(), String> {
    let format = LogFormat::from_env()?;
    let installed = match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            // The innermost span and the whole list: a request's id is in `spans` even when a
            // span of its own encloses the event.
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Human => tracing_subscriber::fmt()
            .with_env_filter(filter)
            // Escape codes only for a person at a terminal, never into a file or a pipe.
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
    installed.map_err(|e| format!("logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_values() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Human));
        assert_eq!(LogFormat::parse(Some("")), Ok(LogFormat::Human));
        assert_eq!(LogFormat::parse(Some("human")), Ok(LogFormat::Human));
        assert_eq!(LogFormat::parse(Some(" JSON ")), Ok(LogFormat::Json));
        let err = LogFormat::parse(Some("bogus")).unwrap_err();
        assert!(err.starts_with("LOG_FORMAT: ") && err.contains("bogus"), "{err}");
    }
}
