//! [`ProtectedResourceMetadataService`]: the document at its well-known
//! URL.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use super::{Inner, ProtectedResourceMetadata, WELL_KNOWN_PATH};

/// The tower service of [`ProtectedResourceMetadata::service`].
#[derive(Clone, Debug)]
pub struct ProtectedResourceMetadataService {
    pub(super) metadata: ProtectedResourceMetadata,
}

impl<B> Service<Request<B>> for ProtectedResourceMetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.answer(request.method(), request.uri().path())))
    }
}

impl ProtectedResourceMetadataService {
    pub(super) fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let inner = &self.metadata.inner;
        let ours = path == inner.path || (inner.at_root && path == WELL_KNOWN_PATH);
        let mut response = Response::new(Full::new(Bytes::new()));
        if !ours {
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let (status, body) = Self::fill(&mut parts.headers, method, inner, body);
        parts.status = status;
        Response::from_parts(parts, body)
    }

    fn fill(
        headers: &mut http::HeaderMap,
        method: &Method,
        inner: &Inner,
        empty: Full<Bytes>,
    ) -> (StatusCode, Full<Bytes>) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        match *method {
            Method::GET | Method::HEAD => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(header::CACHE_CONTROL, inner.cache_control.clone());
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(inner.document.len()));
                if *method == Method::GET {
                    return (StatusCode::OK, Full::new(inner.document.clone()));
                }
                (StatusCode::OK, empty)
            }
            Method::OPTIONS => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("*"),
                );
                headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(86_400u32));
                (StatusCode::NO_CONTENT, empty)
            }
            _ => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
                (StatusCode::METHOD_NOT_ALLOWED, empty)
            }
        }
    }
}
