//! Request bodies in `application/x-www-form-urlencoded`.

use axum::http::HeaderMap;

/// The fields of a form body, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

/// Fields that RFC 8707 allows more than once.
const REPEATABLE: &[&str] = &["resource"];

impl Form {
    /// Decodes the body as a form, whatever the content type.
    pub(crate) fn parse(body: &[u8]) -> Self {
        Self {
            pairs: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// Decodes the body if the content type is a form, else no fields.
    pub(crate) fn from_request(headers: &HeaderMap, body: &[u8]) -> Self {
        if crate::form::is_form(headers) {
            Self::parse(body)
        } else {
            Self::default()
        }
    }

    /// The first value of a field.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of a field.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A field sent more than once (RFC 6749 §3.1: parameters MUST NOT be
    /// included more than once), except the repeatable `resource`.
    pub(crate) fn duplicate(&self) -> Option<&str> {
        self.pairs.iter().enumerate().find_map(|(i, (k, _))| {
            let repeated =
                !REPEATABLE.contains(&k.as_str()) && self.pairs[..i].iter().any(|(earlier, _)| earlier == k);
            repeated.then_some(k.as_str())
        })
    }

    /// The fields as owned pairs.
    pub(crate) fn into_pairs(self) -> Vec<(String, String)> {
        self.pairs
    }
}
