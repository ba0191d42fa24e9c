//! Request bodies: read up to the configured limit (413 beyond it), then parsed as a
//! JSON object, a form, a change (either) or any JSON value, with a JSON error for each
//! failure.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::VaultError;

/// How long a client has to send its whole body once the request's head arrived.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest body the API accepts, in bytes.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A request body that fits the limit.
pub struct Body {
    bytes: web::BytesMut,
    form: bool,
}

impl FromRequest for Body {
    type Error = VaultError;
    type Future = Pin<Box<dyn Future<Output = Result<Body, VaultError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(crate::config::DEFAULT_MAX_BODY, |l| l.0);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > limit) {
                return Err(VaultError::PayloadTooLarge(limit));
            }
            let read = async {
                let mut bytes = web::BytesMut::new();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|_| VaultError::bad_request("request body could not be read"))?;
                    if bytes.len() + chunk.len() > limit {
                        return Err(VaultError::PayloadTooLarge(limit));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(bytes)
            };
            // A client that trickles its body (or stops sending it) does not hold the
            // request open for longer than this.
            let bytes = tokio::time::timeout(BODY_TIMEOUT, read).await.map_err(|_| VaultError::BodyTimeout)??;
            Ok(Body { bytes, form })
        })
    }
}

impl Body {
    /// Any JSON value.
    pub fn json(&self) -> Result<Value, VaultError> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(VaultError::bad_request("request body is empty"));
        }
        serde_json::from_slice(&self.bytes).map_err(|_| VaultError::bad_request("request body is not valid JSON"))
    }

    /// A JSON object, or a form (`application/x-www-form-urlencoded`) as an object of
    /// strings. Fields with empty names are refused.
    pub fn object(&self) -> Result<Map<String, Value>, VaultError> {
        // `curl -d '{...}'` labels JSON as a form; a body that is a JSON object is JSON.
        let json_object = || matches!(serde_json::from_slice(&self.bytes), Ok(Value::Object(_)));
        if self.form && !json_object() {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&self.bytes)
                .map_err(|_| VaultError::bad_request("malformed form body"))?;
            if pairs.is_empty() {
                return Err(VaultError::bad_request("request body is empty"));
            }
            if pairs.iter().any(|(name, _)| name.is_empty()) {
                return Err(VaultError::bad_request("form fields must have names"));
            }
            // The form decoder replaces bytes that are not UTF-8 with U+FFFD; refuse them
            // as JSON's parser does, instead of storing what the client did not send.
            let replaced = |text: &str| text.contains(char::REPLACEMENT_CHARACTER);
            if pairs.iter().any(|(name, value)| replaced(name) || replaced(value)) {
                return Err(VaultError::bad_request("form fields must be UTF-8"));
            }
            return Ok(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
        }
        match self.json()? {
            Value::Object(map) => Ok(map),
            _ => Err(VaultError::bad_request("request body must be a JSON object")),
        }
    }

    /// A change (`PUT`): a JSON merge object or JSON-patch array, or a form read as an
    /// object of strings (Databunker takes both). JSON labelled as a form is JSON.
    pub fn change(&self) -> Result<Value, VaultError> {
        if self.form && serde_json::from_slice::<Value>(&self.bytes).is_err() {
            return self.object().map(Value::Object);
        }
        self.json()
    }

    /// Like `object`, but an empty body is an empty object (routes whose fields are all
    /// optional).
    pub fn optional_object(&self) -> Result<Map<String, Value>, VaultError> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        self.object()
    }

    /// A typed JSON body.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, VaultError> {
        let value = self.json()?;
        serde_json::from_value(value).map_err(|e| VaultError::bad_request(format!("invalid request: {}", describe(&e))))
    }
}

/// A serde error's description without the offending input value.
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde_json messages look like `invalid type: string "x", expected ...`; keep the
    // shape and drop quoted input, which may be personal data.
    let mut out = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
            if quoted {
                out.push_str("\"…");
            } else {
                out.push('"');
            }
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn serde_messages_lose_their_input() {
        let error = serde_json::from_str::<Vec<u32>>(r#"["john@example.com"]"#).unwrap_err();
        let text = describe(&error);
        assert!(!text.contains("john"), "{text}");
        assert!(text.contains("expected"), "{text}");
    }
}
