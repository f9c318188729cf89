//! How a resolver call ended, for metrics: answered, refused because of the request (a
//! client error, by its `errorType`), or failed on the server's side (a fault). The dev
//! server's `/metrics` and the functions' CloudWatch metrics count with this one rule.

use chat_domain::ErrorCode;

use crate::registry::ResolverError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The caller can fix it (or wait, for `Throttled`): every code but `Internal`.
    ClientError(ErrorCode),
    /// `Internal`, or an error type no client code names.
    Fault,
}

impl Outcome {
    /// The outcome of an answer with this `errorType`.
    pub fn of_error_type(error_type: &str) -> Outcome {
        match ErrorCode::ALL.iter().find(|c| c.as_str() == error_type) {
            Some(ErrorCode::Internal) | None => Outcome::Fault,
            Some(code) => Outcome::ClientError(*code),
        }
    }

    pub fn of<T>(result: &Result<T, ResolverError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::of_error_type(&error.error_type),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_and_unknown_types_are_faults_every_other_code_a_client_error() {
        assert_eq!(Outcome::of_error_type("Internal"), Outcome::Fault);
        assert_eq!(Outcome::of_error_type("Lambda:Unhandled"), Outcome::Fault);
        for code in ErrorCode::ALL
            .into_iter()
            .filter(|c| *c != ErrorCode::Internal)
        {
            assert_eq!(
                Outcome::of_error_type(code.as_str()),
                Outcome::ClientError(code)
            );
        }
        assert_eq!(Outcome::of::<()>(&Ok(())), Outcome::Ok);
        let throttled = ResolverError::new(ErrorCode::Throttled, "slow down");
        assert_eq!(
            Outcome::of::<()>(&Err(throttled)),
            Outcome::ClientError(ErrorCode::Throttled)
        );
    }
}
