//! Smelt's errors as gRPC statuses: each [`ErrorKind`] has one gRPC code, and the
//! message travels unchanged (tritonclient shows it after the code).

use crate::error::{ErrorKind, ServerError};
use tonic::{Code, Status};

/// The gRPC code of an error kind.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArg => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        Status::new(code(e.kind), e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code() {
        let cases = [
            (ErrorKind::InvalidArg, Code::InvalidArgument),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Unsupported, Code::Unimplemented),
            (ErrorKind::Internal, Code::Internal),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
        ];
        for (kind, expected) in cases {
            let status = Status::from(ServerError::new(kind, "model 'm': something"));
            assert_eq!(status.code(), expected, "{kind:?}");
            assert_eq!(status.message(), "model 'm': something");
        }
    }
}
