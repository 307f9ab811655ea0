//! `GET`/`POST /v2/logging`: the log settings (see [`crate::logging`]). A POST
//! changes the settings it names (a `null` value changes nothing) and answers
//! with all of them. As Triton does, every failure is answered with 400.

use super::body::{object, parse_json_body, read_body};
use super::{json_response, Shared};
use crate::error::{ErrorKind, Result, ServerError};
use crate::logging::{self, LogFormat, LogSettings, LogSettingsUpdate};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

fn settings_json(settings: &LogSettings) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "log_file": settings.log_file,
            "log_info": settings.log_info,
            "log_warning": settings.log_warning,
            "log_error": settings.log_error,
            "log_verbose_level": settings.log_verbose_level,
            "log_format": settings.log_format.name(),
        }),
    )
}

pub async fn get_settings() -> Response {
    settings_json(&logging::settings())
}

pub async fn update_settings(State(state): Shared, headers: HeaderMap, body: Body) -> Result<Response> {
    let bytes = read_body(&headers, body, state.max_input_size).await?;
    let request = parse_json_body(&bytes)?;
    let change = parse_update(object(&request, "the logging request")?)?;
    let settings = logging::update(&change).map_err(|e| ServerError::new(ErrorKind::InvalidArg, e.message))?;
    tracing::info!("log settings now: {settings:?}");
    Ok(settings_json(&settings))
}

/// The settings a request changes; unknown fields are ignored, as Triton does.
fn parse_update(request: &Map<String, Value>) -> Result<LogSettingsUpdate> {
    let field = |name: &str| request.get(name).filter(|v| !v.is_null());
    let flag = |name: &str| -> Result<Option<bool>> {
        field(name)
            .map(|v| v.as_bool().ok_or_else(|| ServerError::invalid(format!("'{name}' must be a boolean, not {v}"))))
            .transpose()
    };
    let log_verbose_level = field("log_verbose_level")
        .map(|v| {
            v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                ServerError::invalid(format!("'log_verbose_level' must be a non-negative integer, not {v}"))
            })
        })
        .transpose()?;
    let log_format = field("log_format")
        .map(|v| {
            v.as_str().and_then(LogFormat::parse).ok_or_else(|| {
                ServerError::invalid(format!(
                    "invalid argument for --log_format, got: {v} (expected \"default\" or \"ISO8601\")"
                ))
            })
        })
        .transpose()?;
    let log_file = field("log_file")
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| ServerError::invalid("'log_file' must be a string")))
        .transpose()?;
    Ok(LogSettingsUpdate {
        log_file,
        log_info: flag("log_info")?,
        log_warning: flag("log_warning")?,
        log_error: flag("log_error")?,
        log_verbose_level,
        log_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<LogSettingsUpdate> {
        parse_update(value.as_object().unwrap())
    }

    #[test]
    fn updates_parse_with_nulls_and_unknown_fields_ignored() {
        let change = parse(json!({"log_info": false, "log_verbose_level": 2, "log_format": "ISO8601",
            "log_error": null, "something_else": 1}))
        .unwrap();
        assert_eq!(
            change,
            LogSettingsUpdate {
                log_info: Some(false),
                log_verbose_level: Some(2),
                log_format: Some(LogFormat::Iso8601),
                ..Default::default()
            }
        );
        assert!(parse(json!({"log_info": "yes"})).unwrap_err().message.contains("'log_info'"));
        assert!(parse(json!({"log_verbose_level": -1})).unwrap_err().message.contains("'log_verbose_level'"));
        assert!(parse(json!({"log_format": "xml"})).unwrap_err().message.contains("--log_format"));
        assert_eq!(parse(json!({"log_file": "/tmp/l"})).unwrap().log_file.as_deref(), Some("/tmp/l"));
    }
}
