//! One introspection POST per call (RFC 7662 §2.1), under the rules of
//! [`fetch`](crate::fetch): bounded time, a bounded answer, no redirects.

use http::{header, HeaderValue, StatusCode};

use super::auth::ClientAuth;
use super::signed::SIGNED_ANSWER_TYPE;
use super::IntrospectionSource;
use crate::claims::{parse_answer, Answer};
use crate::fetch::{read_capped, AsFault};

/// One introspection call with the given client authentication. `bearer` is
/// the credential obtained beforehand in the client-credentials mode.
pub(super) async fn introspect(
    source: &IntrospectionSource,
    bearer: Option<HeaderValue>,
    token: &str,
) -> Result<Answer, AsFault> {
    let IntrospectionSource {
        http,
        endpoint,
        auth,
        signed,
        ..
    } = source;
    let response = send(source, bearer.clone(), token).await?;
    let response = match (response.status(), auth, bearer) {
        // Our token may have been revoked or expired early: fetch a new one,
        // once (and not again within a few seconds if it keeps happening).
        (
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN,
            ClientAuth::ClientCredentials(fetcher),
            Some(used),
        ) if fetcher.invalidate(&used) => {
            let fresh = fetcher.header(http).await?;
            send(source, Some(fresh), token).await?
        }
        _ => response,
    };
    if response.url() != endpoint {
        return Err(AsFault::Unusable(
            "the answer came from another URL (redirect)".into(),
        ));
    }
    match response.status() {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(AsFault::Misconfigured(format!(
                "the introspection endpoint refused the resource server's credentials (HTTP {})",
                response.status().as_u16()
            )))
        }
        // Some servers (node-oidc-provider for JWT access tokens) refuse to
        // introspect a kind of token they issue no answers for. The token is
        // then not one they vouch for: inactive, not an outage.
        StatusCode::BAD_REQUEST => {
            let body = read_capped(response, http.max_body).await?;
            if is_unsupported_token_type(&body) {
                return Ok(Answer::Inactive);
            }
            return Err(AsFault::from_status(
                "introspection endpoint",
                StatusCode::BAD_REQUEST,
            ));
        }
        status => return Err(AsFault::from_status("introspection endpoint", status)),
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_capped(response, http.max_body).await?;
    match signed {
        Some(signed) => signed.read(content_type.as_deref(), &body).await,
        None => parse_answer(&body).map_err(|e| AsFault::Unusable(e.to_string())),
    }
}

/// Whether a 400 answer is the OAuth error `unsupported_token_type`
/// (RFC 7009 §2.2.1, which servers also use for introspection).
fn is_unsupported_token_type(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct OAuthError {
        error: String,
    }
    serde_json::from_slice::<OAuthError>(body).is_ok_and(|e| e.error == "unsupported_token_type")
}

async fn send(
    source: &IntrospectionSource,
    bearer: Option<HeaderValue>,
    token: &str,
) -> Result<reqwest::Response, AsFault> {
    let IntrospectionSource {
        http,
        endpoint,
        auth,
        token_type_hint,
        ..
    } = source;
    let mut request = if source.signed.is_some() {
        http.post_accepting(endpoint.clone(), SIGNED_ANSWER_TYPE)
    } else {
        http.post(endpoint.clone())
    };
    // The serializer is not `Send`: finish the body before awaiting.
    let body = {
        let mut form = form_urlencoded::Serializer::new(String::with_capacity(token.len() + 64));
        form.append_pair("token", token);
        if *token_type_hint {
            form.append_pair("token_type_hint", "access_token");
        }
        match auth {
            ClientAuth::Basic { header, .. } | ClientAuth::StaticBearer(header) => {
                request = request.header(header::AUTHORIZATION, header.clone());
            }
            ClientAuth::Post { client_id, secret } => {
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", secret.expose());
            }
            ClientAuth::ClientCredentials(_) => {
                if let Some(header) = bearer {
                    request = request.header(header::AUTHORIZATION, header);
                }
            }
            #[cfg(feature = "jwt")]
            ClientAuth::PrivateKeyJwt(signer) => {
                form.append_pair("client_assertion_type", super::assertion::JWT_BEARER_ASSERTION);
                form.append_pair("client_assertion", &signer.assertion(endpoint.as_str())?);
            }
            ClientAuth::Unauthenticated => {}
        }
        form.finish()
    };
    request
        .body(body)
        .send()
        .await
        .map_err(|e| AsFault::transport("introspection endpoint", &e))
}
