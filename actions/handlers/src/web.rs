//! Web action responses: the `{statusCode, headers, body}` shape OpenWhisk web actions return.

use serde_json::{Value, json};

use crate::error::ActionError;

/// An HTTP answer of a web action.
#[derive(Debug, Clone, PartialEq)]
pub struct WebResponse {
    /// Status code.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl WebResponse {
    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Self {
        WebResponse { status, body }
    }

    /// An Elasticsearch-style error answer: `{"error":{"type","reason"},"status"}`.
    pub fn error(status: u16, kind: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        WebResponse::json(
            status,
            json!({"error": {"type": kind, "reason": reason}, "status": status}),
        )
    }

    /// 400 `illegal_argument_exception`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        WebResponse::error(400, "illegal_argument_exception", reason)
    }

    /// The web action result OpenWhisk turns into the HTTP response.
    pub fn to_openwhisk(&self) -> Value {
        json!({"statusCode": self.status, "headers": {"content-type": "application/json"}, "body": self.body})
    }
}

impl From<ActionError> for WebResponse {
    fn from(e: ActionError) -> Self {
        WebResponse { status: e.status(), body: e.to_json() }
    }
}
