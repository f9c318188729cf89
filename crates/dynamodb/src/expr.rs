//! Expression placeholders collected as they are used: DynamoDB rejects unused names and
//! values, and many of our attribute names (`name`, `number`, `status`, `type`) are
//! reserved words, so every attribute goes through a `#name` placeholder.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

#[derive(Debug, Default)]
pub(crate) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `#attribute` (attribute names of this crate are alphanumeric).
    pub(crate) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names
            .entry(placeholder.clone())
            .or_insert_with(|| attribute.to_owned());
        placeholder
    }

    /// `:label`, bound to `value`.
    pub(crate) fn value(&mut self, label: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{label}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `#attribute = :label`.
    pub(crate) fn equals(&mut self, attribute: &str, label: &str, value: AttributeValue) -> String {
        format!("{} = {}", self.name(attribute), self.value(label, value))
    }

    pub(crate) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub(crate) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}
