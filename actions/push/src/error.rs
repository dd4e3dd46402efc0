//! Elasticsearch-style HTTP errors: `{"error":{"type","reason",...},"status"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kappa_actions::ActionError;
use kappa_actions::web::WebResponse;
use serde_json::{Value, json};

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Status code.
    pub status: u16,
    /// Elasticsearch-style body.
    pub body: Value,
}

impl ApiError {
    /// An error of `kind` (`illegal_argument_exception`, ...) with `reason`.
    pub fn new(status: u16, kind: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError {
            status,
            body: json!({"error": {"type": kind, "reason": reason}, "status": status}),
        }
    }

    /// 400 `illegal_argument_exception`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        ApiError::new(400, "illegal_argument_exception", reason)
    }

    /// 404 `resource_not_found_exception` for a query, view or route.
    pub fn not_found(reason: impl Into<String>) -> Self {
        ApiError::new(404, "resource_not_found_exception", reason)
    }

    /// 413 `content_too_long_exception`.
    pub fn too_large(what: &str, limit: usize) -> Self {
        ApiError::new(
            413,
            "content_too_long_exception",
            format!("{what} exceeds the limit of {limit} bytes"),
        )
    }

    /// A backend failure.
    pub fn internal(reason: impl std::fmt::Display) -> Self {
        ApiError::new(500, "exception", reason.to_string())
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        ApiError { status: e.status(), body: e.to_json() }
    }
}

impl From<WebResponse> for ApiError {
    fn from(r: WebResponse) -> Self {
        ApiError { status: r.status, body: r.body }
    }
}

impl From<kappa_core::ports::PortError> for ApiError {
    fn from(e: kappa_core::ports::PortError) -> Self {
        ActionError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// A JSON answer with `status`.
pub fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body.clone())).into_response()
}

/// A handler's web answer as an HTTP response.
pub fn web(r: WebResponse) -> Response {
    json_response(r.status, &r.body)
}
