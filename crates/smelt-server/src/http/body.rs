//! Request and response bodies: the --http-max-input-size limit, gzip/deflate
//! Content-Encoding both ways, and JSON bodies of the control endpoints.

use crate::error::{ErrorKind, Result, ServerError};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use std::io::{Read, Write};

fn too_large(size: usize, limit: usize) -> ServerError {
    ServerError::invalid(format!(
        "request body of {size} bytes or more exceeds the server's --http-max-input-size of {limit} bytes"
    ))
}

/// Reads (and discards) what is left of a body, up to a bound, so that the client
/// finishes sending and reads the error rather than a reset connection.
pub async fn drain(mut body: Body, limit: usize) {
    let bound = limit.saturating_mul(4).max(256 << 20);
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, Bytes::len);
        if seen > bound {
            break;
        }
    }
}

/// The request body, size-limited and decompressed per Content-Encoding.
pub async fn read_body(headers: &HeaderMap, mut body: Body, limit: usize) -> Result<Bytes> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(size) = declared.filter(|&s| s > limit) {
        drain(body, limit).await;
        return Err(too_large(size, limit));
    }
    let mut collected = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ServerError::invalid(format!("failed to read the request body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if collected.len() + data.len() > limit {
                let size = collected.len() + data.len();
                drain(body, limit).await;
                return Err(too_large(size, limit));
            }
            collected.extend_from_slice(data);
        }
    }
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let decoded = match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => return Ok(Bytes::from(collected)),
        "gzip" | "x-gzip" => inflate(flate2::read::GzDecoder::new(&collected[..]), "gzip", limit)?,
        "deflate" => inflate(flate2::read::ZlibDecoder::new(&collected[..]), "deflate", limit)?,
        other => {
            return Err(ServerError::invalid(format!(
                "unsupported Content-Encoding '{other}' (supported: gzip, deflate, identity)"
            )))
        }
    };
    Ok(Bytes::from(decoded))
}

fn inflate(reader: impl Read, encoding: &str, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ServerError::invalid(format!("the request body is not valid {encoding} data: {e}")))?;
    if out.len() > limit {
        return Err(too_large(out.len(), limit));
    }
    Ok(out)
}

/// The compression a client accepts for the response, gzip preferred.
pub fn response_encoding(headers: &HeaderMap) -> Option<&'static str> {
    let accepted = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    let offered: Vec<String> = accepted
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let name = pieces.next()?.trim().to_ascii_lowercase();
            let refused = pieces.any(|p| p.trim().replace(' ', "").starts_with("q=0") && !p.contains("q=0."));
            (!refused).then_some(name)
        })
        .collect();
    if offered.iter().any(|e| e == "gzip") {
        Some("gzip")
    } else if offered.iter().any(|e| e == "deflate") {
        Some("deflate")
    } else {
        None
    }
}

pub fn compress(data: &[u8], encoding: &str) -> Result<Vec<u8>> {
    let failed = |e: std::io::Error| ServerError::internal(format!("compressing the response: {e}"));
    match encoding {
        "gzip" => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(data).map_err(failed)?;
            w.finish().map_err(failed)
        }
        _ => {
            let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(data).map_err(failed)?;
            w.finish().map_err(failed)
        }
    }
}

/// A control request's JSON body; an empty body is an empty object.
pub fn parse_json_body(bytes: &[u8]) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ServerError::new(ErrorKind::InvalidArg, format!("failed to parse the request JSON buffer: {e}")))
}

/// `value` as a JSON object, or an error naming `what`.
pub fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| ServerError::invalid(format!("{what} must be a JSON object")))
}

/// The `parameters` object of a request, input or output, if it has one.
pub fn parameters<'a>(value: &'a Map<String, Value>, what: &str) -> Result<Option<&'a Map<String, Value>>> {
    match value.get("parameters") {
        None | Some(Value::Null) => Ok(None),
        Some(p) => object(p, &format!("'parameters' of {what}")).map(Some),
    }
}

pub fn parameter_bool(params: Option<&Map<String, Value>>, key: &str, what: &str) -> Result<Option<bool>> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ServerError::invalid(format!("parameter '{key}' of {what} must be a boolean, not {other}"))),
    }
}

pub fn parameter_u64(params: Option<&Map<String, Value>>, key: &str, what: &str) -> Result<Option<u64>> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ServerError::invalid(format!("parameter '{key}' of {what} must be a non-negative integer, not {v}"))
        }),
    }
}

pub fn parameter_str<'a>(params: Option<&'a Map<String, Value>>, key: &str, what: &str) -> Result<Option<&'a str>> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ServerError::invalid(format!("parameter '{key}' of {what} must be a string, not {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn read(pairs: &[(&'static str, &'static str)], body: Vec<u8>, limit: usize) -> Result<Bytes> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(read_body(&headers(pairs), Body::from(body), limit))
    }

    #[test]
    fn bodies_inflate_and_respect_the_limit() {
        let text = b"{\"inputs\": []}".repeat(10);
        for encoding in ["gzip", "deflate"] {
            let packed = compress(&text, encoding).unwrap();
            let pairs = [("content-encoding", if encoding == "gzip" { "gzip" } else { "deflate" })];
            assert_eq!(read(&pairs, packed.clone(), 1000).unwrap(), text);
            // Small when compressed, too large when inflated.
            let e = read(&pairs, packed, 100).unwrap_err();
            assert!(e.message.contains("--http-max-input-size of 100 bytes"), "{e}");
        }
        assert!(read(&[], vec![b'x'; 101], 100).unwrap_err().message.contains("--http-max-input-size"));
        let e = read(&[("content-encoding", "gzip")], b"not gzip".to_vec(), 100).unwrap_err();
        assert!(e.message.contains("not valid gzip"), "{e}");
        let e = read(&[("content-encoding", "br")], b"x".to_vec(), 100).unwrap_err();
        assert!(e.message.contains("'br'"), "{e}");
    }

    #[test]
    fn accept_encoding_prefers_gzip_and_honours_q_zero() {
        assert_eq!(response_encoding(&headers(&[("accept-encoding", "deflate, gzip")])), Some("gzip"));
        assert_eq!(response_encoding(&headers(&[("accept-encoding", "deflate")])), Some("deflate"));
        assert_eq!(response_encoding(&headers(&[("accept-encoding", "gzip;q=0, deflate")])), Some("deflate"));
        assert_eq!(response_encoding(&headers(&[("accept-encoding", "gzip;q=0.5")])), Some("gzip"));
        assert_eq!(response_encoding(&headers(&[("accept-encoding", "br")])), None);
        assert_eq!(response_encoding(&HeaderMap::new()), None);
    }
}
