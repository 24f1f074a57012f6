//! [`ProtectedResourceMetadataBuilder`]: the fields of RFC 9728 §2,
//! checked at `build()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use serde_json::{Map, Value};

use super::{Inner, ProtectedResourceMetadata, DEFAULT_METADATA_MAX_AGE, WELL_KNOWN_PATH};
use crate::error::ConfigError;
use crate::macros::setters;
use crate::resource::canonical_resource;

/// Builds a [`ProtectedResourceMetadata`]; see
/// [`ProtectedResourceMetadata::builder`]. Every setter adds one field of RFC
/// 9728 §2; `build()` checks them.
#[must_use]
pub struct ProtectedResourceMetadataBuilder {
    resource: String,
    fields: Map<String, Value>,
    urls: Vec<(&'static str, String)>,
    bearer_methods: Vec<String>,
    extra_refused: Option<String>,
    allow_insecure_http: bool,
    at_root: bool,
    max_age: Duration,
}

impl ProtectedResourceMetadataBuilder {
    pub(super) fn new(resource: String) -> Self {
        Self {
            resource,
            fields: Map::new(),
            urls: Vec::new(),
            bearer_methods: vec!["header".to_owned()],
            extra_refused: None,
            allow_insecure_http: false,
            at_root: false,
            max_age: DEFAULT_METADATA_MAX_AGE,
        }
    }

    /// Adds `values` to the array field `name`.
    fn strings(mut self, name: &'static str, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let entry = self
            .fields
            .entry(name)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(array) = entry {
            array.extend(values.into_iter().map(|value| Value::String(value.into())));
        }
        self
    }

    fn flag(mut self, name: &'static str, yes: bool) -> Self {
        self.fields.insert(name.to_owned(), Value::Bool(yes));
        self
    }

    fn url_field(mut self, name: &'static str, url: String) -> Self {
        self.urls.push((name, url.clone()));
        self.fields.insert(name.to_owned(), Value::String(url));
        self
    }

    /// `authorization_servers`: the issuer identifier (RFC 8414) of an
    /// authorization server whose tokens this resource accepts. Repeat for
    /// several. (MCP servers must name at least one.)
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.urls.push(("authorization_servers", issuer.clone()));
        self.strings("authorization_servers", [issuer])
    }

    /// `scopes_supported`: the scopes clients may request for this
    /// resource.
    pub fn scopes_supported(self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.strings("scopes_supported", scopes)
    }

    /// `bearer_methods_supported`: how the resource accepts tokens, among
    /// `header`, `body` and `query` (RFC 6750 §2). Default `["header"]`, the
    /// only one the layer reads without opting in; an empty list omits the
    /// field (which RFC 9728 reads as "no preference stated").
    pub fn bearer_methods_supported(mut self, methods: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.bearer_methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// `jwks_uri`: the resource's own public keys (for signed responses),
    /// not the authorization server's.
    pub fn jwks_uri(self, url: impl Into<String>) -> Self {
        self.url_field("jwks_uri", url.into())
    }

    /// `resource_signing_alg_values_supported`: JWS algorithms the resource
    /// signs responses with.
    pub fn resource_signing_alg_values_supported(
        self,
        algorithms: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.strings("resource_signing_alg_values_supported", algorithms)
    }

    /// `resource_name`: a human-readable name for end users.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.fields
            .insert("resource_name".to_owned(), Value::String(name.into()));
        self
    }

    /// `resource_documentation`: a page with developer documentation.
    pub fn resource_documentation(self, url: impl Into<String>) -> Self {
        self.url_field("resource_documentation", url.into())
    }

    /// `resource_policy_uri`: how data from the resource may be used.
    pub fn resource_policy_uri(self, url: impl Into<String>) -> Self {
        self.url_field("resource_policy_uri", url.into())
    }

    /// `resource_tos_uri`: the terms of service.
    pub fn resource_tos_uri(self, url: impl Into<String>) -> Self {
        self.url_field("resource_tos_uri", url.into())
    }

    /// `tls_client_certificate_bound_access_tokens` (RFC 8705).
    pub fn tls_client_certificate_bound_access_tokens(self, yes: bool) -> Self {
        self.flag("tls_client_certificate_bound_access_tokens", yes)
    }

    /// `authorization_details_types_supported` (RFC 9396).
    pub fn authorization_details_types_supported(
        self,
        types: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.strings("authorization_details_types_supported", types)
    }

    /// `dpop_signing_alg_values_supported` (RFC 9449).
    pub fn dpop_signing_alg_values_supported(
        self,
        algorithms: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.strings("dpop_signing_alg_values_supported", algorithms)
    }

    /// `dpop_bound_access_tokens_required` (RFC 9449).
    pub fn dpop_bound_access_tokens_required(self, yes: bool) -> Self {
        self.flag("dpop_bound_access_tokens_required", yes)
    }

    /// Another member, such as one registered after RFC 9728 or
    /// `signed_metadata`. `resource` cannot be set this way (`build()`
    /// refuses it): it is the identifier the document is published for.
    pub fn extra(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        if name == "resource" {
            self.extra_refused = Some(name.clone());
        }
        self.fields.insert(name, value.into());
        self
    }

    setters! {
        /// Allow `http://` URLs on hosts other than loopback (for the resource
        /// and every URL field). Default: refused.
        pub fn allow_insecure_http(allow: bool) => allow_insecure_http = allow;

        /// Also answer at the root form of the well-known URI,
        /// [`WELL_KNOWN_PATH`]. Only for a resource without a path, whose
        /// well-known URI that already is (RFC 9728 §3.1): `build()` refuses it
        /// for a resource with a path, because a client that fetched the root
        /// form must reject a document whose `resource` is not the bare origin
        /// (RFC 9728 §3.3). An MCP client that falls back to the root form
        /// finds nothing and uses the `resource_metadata` of the challenge.
        pub fn also_at_root(yes: bool) => at_root = yes;

        /// The `max-age` of `Cache-Control: public, max-age=…` (default one
        /// hour, at most a day).
        pub fn cache_max_age(max_age: Duration) => max_age = max_age;
    }

    /// Checks the fields and builds the document.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] or [`ConfigError::InsecureUrl`] for a
    /// resource that is not a resource identifier (RFC 8707 §2: absolute,
    /// `https` or loopback `http`, no fragment; this crate also refuses a
    /// query) or a URL field that is not a URL;
    /// [`ConfigError::InvalidSetting`] for an unknown bearer method or a
    /// `resource` set through [`extra`](Self::extra);
    /// [`ConfigError::OutOfRange`] for a `cache_max_age` over a day.
    pub fn build(mut self) -> Result<ProtectedResourceMetadata, ConfigError> {
        if self.extra_refused.is_some() {
            return Err(ConfigError::InvalidSetting(
                "`resource` is the identifier the metadata is published for (RFC 9728 §3.3); set it in `builder`",
            ));
        }
        if self.max_age > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::OutOfRange {
                setting: "cache_max_age",
                range: "at most one day",
            });
        }
        let resource = canonical_resource("resource", &self.resource, self.allow_insecure_http)?;
        for (name, url) in &self.urls {
            crate::resource::checked_url(name, url, self.allow_insecure_http)?;
        }
        if self
            .bearer_methods
            .iter()
            .any(|m| !matches!(m.as_str(), "header" | "body" | "query"))
        {
            return Err(ConfigError::InvalidSetting(
                "bearer_methods_supported takes `header`, `body` and `query` only (RFC 9728 §2)",
            ));
        }
        if !self.bearer_methods.is_empty() {
            let methods = self.bearer_methods.drain(..).map(Value::String).collect();
            self.fields
                .insert("bearer_methods_supported".to_owned(), Value::Array(methods));
        }
        let parsed = url::Url::parse(&resource).map_err(|e| ConfigError::InvalidUrl {
            what: "resource",
            reason: e.to_string(),
        })?;
        // RFC 9728 §3.1: the suffix goes between the host and the path; a
        // path of "/" alone adds nothing.
        let resource_path = parsed.path().trim_end_matches('/');
        // RFC 9728 §3.3: a client checks `resource` against the URL it
        // fetched, so the root form may only describe the host itself.
        if self.at_root && !resource_path.is_empty() {
            return Err(ConfigError::InvalidSetting(
                "also_at_root: a resource with a path cannot be described at the root well-known URI, whose clients expect `resource` to be the bare origin (RFC 9728 §3.3)",
            ));
        }
        let path = format!("{WELL_KNOWN_PATH}{resource_path}");
        let mut origin = parsed.origin().ascii_serialization();
        origin.push_str(&path);
        let url = origin;

        // `resource` first, for readers; the other members in name order.
        let mut document = format!("{{\"resource\":{}", Value::String(resource.clone()));
        for (name, value) in &self.fields {
            document.push(',');
            document.push_str(&Value::String(name.clone()).to_string());
            document.push(':');
            document.push_str(&value.to_string());
        }
        document.push('}');
        let document = Bytes::from(document);
        let cache_control = HeaderValue::from_str(&format!("public, max-age={}", self.max_age.as_secs()))
            .map_err(|_| ConfigError::InvalidSetting("cache_max_age"))?;
        Ok(ProtectedResourceMetadata {
            inner: Arc::new(Inner {
                resource,
                url,
                path,
                at_root: self.at_root,
                document,
                cache_control,
            }),
        })
    }
}

impl fmt::Debug for ProtectedResourceMetadataBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedResourceMetadataBuilder")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}
