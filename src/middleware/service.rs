//! [`Introspection`]: the middleware service.

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::IntrospectionLayer;
use crate::binding::as_bearer_with;
use crate::error::{AuthError, ErrorKind};
use crate::rejection::JsonBody;
use crate::rejection::{reject, RejectionBody};
use crate::token::{without_query_token, BearerExtractor, ExtractToken, TokenSource};

/// Middleware that validates bearer tokens; see
/// [`IntrospectionLayer`](super::IntrospectionLayer).
#[derive(Clone)]
pub struct Introspection<S, E = BearerExtractor, R = JsonBody> {
    inner: S,
    layer: IntrospectionLayer<E, R>,
}

impl<S, E, R> Introspection<S, E, R> {
    pub(super) fn new(inner: S, layer: IntrospectionLayer<E, R>) -> Self {
        Self { inner, layer }
    }

    crate::macros::define_inner_service_accessors!();
}

/// Hands a cached outcome on: the principal to the inner service, checked
/// against the token's binding (a sender-constrained token needs its proof,
/// RFC 9449 §7.1, RFC 8705 §3), or the refusal. A macro so that both hit
/// paths in `call` get it inline: a shared method (even `#[inline(always)]`,
/// taking the request by value) measured 30–50 more instructions per hit.
macro_rules! answer_from_cache {
    ($service:ident, $layer:ident, $request:ident, $outcome:ident, $certificate:ident, $private:expr) => {
        match $outcome
            .and_then(|principal| as_bearer_with(principal, $certificate.as_ref(), $layer.binding_rules()))
        {
            Ok(mut principal) => {
                principal.set_realm($layer.realm.0.clone());
                #[cfg(feature = "jwt")]
                $layer.answer_scopes_in_dpop(&mut principal);
                $request.extensions_mut().insert(principal);
                ResponseFuture::calling($service.inner.call($request), $private)
            }
            Err(error) => ResponseFuture::rejected($service.reject(error)),
        }
    };
}

impl<S, E, R, ReqBody, ResBody> Service<Request<ReqBody>> for Introspection<S, E, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    E: ExtractToken,
    R: RejectionBody<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // With mutual TLS off: one branch here, and a flag test in the
        // binding check (about 11 instructions per cached request).
        #[cfg(feature = "jwt")]
        let certificate = match &self.layer.mtls {
            None => None,
            Some(mtls) => match mtls.presented(&mut request) {
                Ok(certificate) => certificate,
                Err(error) => return ResponseFuture::rejected(self.reject(error)),
            },
        };
        #[cfg(not(feature = "jwt"))]
        let certificate: Option<[u8; 32]> = None;
        // With DPoP off, this is the one branch DPoP adds to a request.
        #[cfg(feature = "jwt")]
        if self.layer.dpop.is_some() {
            request = match self.call_dpop(request, certificate) {
                Ok(future) => return future,
                Err(bearer) => bearer,
            };
        }
        let layer = &self.layer;
        // The hit path: a fresh cached answer, checked and handed on with no
        // boxed future, no clone of the inner service, no `await`, and no
        // grammar scan (a cached token passed it when it was loaded).
        let probed = cache_probe(&layer.extractor, &request);
        if let Some(token) = &probed {
            if let Some(outcome) = layer.verifier.cached(token.secret()) {
                layer.extractor.mark_sensitive(request.headers_mut());
                return answer_from_cache!(self, layer, request, outcome, certificate, false);
            }
        }
        let token = match layer.extractor.extract(&request) {
            Ok(Some(token)) => token,
            Ok(None) if layer.anonymous => {
                // No token, but the headers may still hold other credentials.
                layer.extractor.mark_sensitive(request.headers_mut());
                request.extensions_mut().insert(layer.realm.clone());
                #[cfg(feature = "jwt")]
                if let Some(dpop) = &layer.dpop {
                    request
                        .extensions_mut()
                        .insert(crate::dpop::LayerDpop(dpop.clone()));
                }
                return ResponseFuture::calling(self.inner.call(request), false);
            }
            Ok(None) => return ResponseFuture::rejected(self.reject(AuthError::missing_token())),
            Err(error) => return ResponseFuture::rejected(self.reject(error.into())),
        };
        // Inner layers that log requests must not print the token: mark the
        // headers it can travel in sensitive, and take it out of the URI.
        layer.extractor.mark_sensitive(request.headers_mut());
        let private = token.source() == TokenSource::Query;
        if private {
            match without_query_token(request.uri()) {
                Some(uri) => *request.uri_mut() = uri,
                None => {
                    let error = AuthError::new(ErrorKind::InvalidRequest, "malformed request URI");
                    return ResponseFuture::rejected(self.reject(error));
                }
            }
        }
        // The hit path again, for a token the probe could not read (from
        // the query, a cookie, another header); one it read has just missed.
        if probed.is_none_or(|probed| probed.secret() != token.secret()) {
            if let Some(outcome) = layer.verifier.cached(token.secret()) {
                return answer_from_cache!(self, layer, request, outcome, certificate, private);
            }
        }
        let verifier = layer.verifier.clone();
        let rules = layer.binding_rules();
        #[cfg(feature = "jwt")]
        let dpop = layer.dpop.clone();
        let principal = Box::pin(async move {
            // A `Bearer` request is never handed a DPoP nonce.
            let outcome = verifier
                .validate_any(token.secret())
                .await
                .and_then(|principal| as_bearer_with(principal, certificate.as_ref(), rules))
                .map(|principal| (principal, None));
            #[cfg(feature = "jwt")]
            let outcome = match dpop {
                Some(dpop) => match outcome {
                    Ok((mut principal, nonce)) => {
                        principal.set_dpop_answer(dpop.scope_answer(false));
                        Ok((principal, nonce))
                    }
                    Err(error) => Err(error.with_dpop(dpop.answer(false))),
                },
                None => outcome,
            };
            outcome
        });
        // Take the service that was driven to readiness; leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::validating(
            principal,
            request,
            inner,
            layer.realm.0.clone(),
            layer.body.clone(),
            private,
        )
    }
}

/// The token to look up among cached answers before the full extraction:
/// only with [`BearerExtractor`], whose probe skips the grammar scan (a
/// cached token passed it). The type test is resolved at compile time: a
/// layer with another extractor has no probe at all.
#[inline]
fn cache_probe<E: ExtractToken, B>(extractor: &E, request: &Request<B>) -> Option<crate::token::BearerToken> {
    let extractor: &dyn std::any::Any = extractor;
    extractor.downcast_ref::<BearerExtractor>()?.cache_probe(request)
}

impl<S, E, R> Introspection<S, E, R> {
    fn reject<B>(&self, error: AuthError) -> Response<B>
    where
        R: RejectionBody<B>,
    {
        let error = error.with_realm(Some(&self.layer.realm.0));
        #[cfg(feature = "jwt")]
        let error = match &self.layer.dpop {
            Some(dpop) => error.or_dpop(|| dpop.answer(false)),
            None => error,
        };
        reject(error, &self.layer.body)
    }
}

#[cfg(feature = "jwt")]
impl<S, E: ExtractToken, R> Introspection<S, E, R> {
    /// The slower path of a layer with DPoP: answers a request sent with
    /// the `DPoP` scheme (or without `DPoP` where it is required), and hands
    /// any other back (`Err`) to the usual `Bearer` path.
    #[allow(clippy::result_large_err)] // the request itself, handed back
    #[inline(never)]
    fn call_dpop<ReqBody, ResBody>(
        &mut self,
        mut request: Request<ReqBody>,
        certificate: Option<[u8; 32]>,
    ) -> Result<ResponseFuture<S, ReqBody, R>, Request<ReqBody>>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
        R: RejectionBody<ResBody>,
    {
        let Some(dpop) = self.layer.dpop.clone() else {
            return Err(request);
        };
        let presented = match dpop.presented(request.headers(), self.layer.extractor.max_length()) {
            Ok(Some(presented)) => presented,
            Ok(None) if dpop.required() => {
                // Whatever else the request carries, it is not what is required.
                crate::dpop::mark_sensitive(request.headers_mut());
                if self.layer.anonymous && matches!(self.layer.extractor.extract(&request), Ok(None)) {
                    // No credentials at all: anonymous, as without DPoP.
                    self.layer.extractor.mark_sensitive(request.headers_mut());
                    request.extensions_mut().insert(self.layer.realm.clone());
                    request
                        .extensions_mut()
                        .insert(crate::dpop::LayerDpop(dpop.clone()));
                    return Ok(ResponseFuture::calling(self.inner.call(request), false));
                }
                return Ok(ResponseFuture::rejected(self.reject(dpop.scheme_required())));
            }
            Ok(None) => return Err(request),
            Err(error) => {
                crate::dpop::mark_sensitive(request.headers_mut());
                return Ok(ResponseFuture::rejected(self.reject(error)));
            }
        };
        // One extraction for both schemes: whatever the extractor reads
        // (a cookie, a custom header) is marked sensitive here too, and a
        // token it finds besides the `DPoP` credentials is a second method
        // (RFC 6750 §2), as it would be beside a `Bearer` header; so is an
        // `access_token` query parameter, which therefore never reaches the
        // inner service.
        crate::dpop::mark_sensitive(request.headers_mut());
        self.layer.extractor.mark_sensitive(request.headers_mut());
        let also = match self.layer.extractor.extract(&request) {
            Ok(None) => None,
            Ok(Some(_)) => Some(AuthError::from(crate::token::TokenError::MultipleMethods)),
            Err(error) => Some(error.into()),
        };
        if let Some(error) = also {
            return Ok(ResponseFuture::rejected(
                self.reject(error.with_dpop(dpop.answer(true))),
            ));
        }
        let verification = dpop.verify(
            self.layer.verifier.clone(),
            presented,
            crate::binding::Checking {
                rules: self.layer.binding_rules(),
                certificate,
            },
            request.method(),
            crate::dpop::called_uri(&request),
            request.headers(),
        );
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Ok(ResponseFuture::validating(
            Box::pin(verification),
            request,
            inner,
            self.layer.realm.0.clone(),
            self.layer.body.clone(),
            false,
        ))
    }
}

impl<S: fmt::Debug, E: fmt::Debug, R> fmt::Debug for Introspection<S, E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use tower_layer::Layer;

    use super::*;
    use crate::Introspector;

    /// The default type parameters name the service of a plain
    /// `IntrospectionLayer::new`, and the accessors reach the inner service.
    #[test]
    fn default_type_parameters_and_accessors() {
        let introspector = Introspector::builder("https://as.example/introspect")
            .client_secret_basic("api", "secret")
            .build()
            .unwrap();
        let mut service: Introspection<u8> = IntrospectionLayer::new(introspector).layer(7);
        *service.get_mut() += 1;
        assert_eq!(*service.get_ref(), 8);
        assert_eq!(service.into_inner(), 8);
    }
}
