//! Typed access to a resolver's `arguments` object. GraphQL validation already checked
//! types on both AppSync and the dev server; these checks are the second line (a Lambda can
//! be invoked directly) and turn anything odd into BadInput, never a panic.

use chat_domain::{DomainError, Result};
use serde_json::{Map, Value};

pub struct Args<'a>(pub &'a Map<String, Value>);

impl<'a> Args<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(DomainError::bad_input(format!("{name} must be a string"))),
        }
    }

    pub fn str(&self, name: &str) -> Result<&'a str> {
        self.opt_str(name)?
            .ok_or_else(|| DomainError::bad_input(format!("{name} is required")))
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|n| i32::try_from(*n).is_ok())
                .map(Some)
                .ok_or_else(|| DomainError::bad_input(format!("{name} must be a 32-bit integer"))),
            Some(_) => Err(DomainError::bad_input(format!("{name} must be an integer"))),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64> {
        self.opt_int(name)?
            .ok_or_else(|| DomainError::bad_input(format!("{name} is required")))
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(DomainError::bad_input(format!("{name} must be a boolean"))),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool> {
        self.opt_bool(name)?
            .ok_or_else(|| DomainError::bad_input(format!("{name} is required")))
    }

    /// An input object argument (`None` when absent or null).
    pub fn opt_object(&self, name: &str) -> Result<Option<Args<'a>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Args(map))),
            Some(_) => Err(DomainError::bad_input(format!("{name} must be an object"))),
        }
    }

    /// Distinguishes an absent argument (`None`) from an explicit null (`Some(None)`).
    pub fn nullable_str(&self, name: &str) -> Result<Option<Option<&'a str>>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s))),
            Some(_) => Err(DomainError::bad_input(format!("{name} must be a string"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ints_outside_graphql_int_are_bad_input() {
        let map = json!({"a": 2147483648i64, "b": 5, "c": "x", "d": 1.5})
            .as_object()
            .unwrap()
            .clone();
        let args = Args(&map);
        assert!(args.int("a").is_err());
        assert_eq!(args.int("b").unwrap(), 5);
        assert!(args.int("c").is_err());
        assert!(args.int("d").is_err());
        assert!(args.int("missing").is_err());
        assert_eq!(args.opt_int("missing").unwrap(), None);
    }

    #[test]
    fn nullable_distinguishes_absent_from_null() {
        let map = json!({"s": null, "t": "x"}).as_object().unwrap().clone();
        let args = Args(&map);
        assert_eq!(args.nullable_str("s").unwrap(), Some(None));
        assert_eq!(args.nullable_str("t").unwrap(), Some(Some("x")));
        assert_eq!(args.nullable_str("u").unwrap(), None);
    }
}
