//! The one error type every request path returns: a kind (Triton's status codes)
//! and a message for the client.

use std::fmt;

/// Triton's error classes; each maps to one HTTP status (and, later, one gRPC code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A malformed or inconsistent request: 400.
    InvalidArg,
    /// An unknown model or version: 404.
    NotFound,
    /// The model exists but cannot serve now (unloaded, failed to load): 503.
    Unavailable,
    /// A feature Smelt does not have: 501.
    Unsupported,
    /// Something went wrong inside the server or the model: 500.
    Internal,
    /// The thing to create exists already: 400 over HTTP, as Triton answers.
    AlreadyExists,
}

impl ErrorKind {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArg => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Unavailable => 503,
            ErrorKind::Unsupported => 501,
            ErrorKind::Internal => 500,
            ErrorKind::AlreadyExists => 400,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ServerError {
        ServerError { kind, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> ServerError {
        ServerError::new(ErrorKind::InvalidArg, message)
    }

    pub fn not_found(message: impl Into<String>) -> ServerError {
        ServerError::new(ErrorKind::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ServerError {
        ServerError::new(ErrorKind::Unavailable, message)
    }

    pub fn unsupported(message: impl Into<String>) -> ServerError {
        ServerError::new(ErrorKind::Unsupported, message)
    }

    pub fn internal(message: impl Into<String>) -> ServerError {
        ServerError::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;
