//! `GET /oauth2/jwks`: the JWK Set (RFC 7517 §5) of the server's current
//! signing keys.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Map;

use super::fault;
use super::reply;
use super::state::Shared;

pub(crate) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_calls.fetch_add(1, Ordering::SeqCst);
    let fault = shared.lock().jwks_fault.clone();
    if let Some(fault) = fault {
        if let Some(res) = fault::apply(fault, Map::new()).await {
            return res;
        }
    }
    let keys = shared.keys();
    reply::public_json(StatusCode::OK, keys.jwks())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
    use serde_json::Value;

    use crate::test_util::{Fault, JwtAlg, JwtSpec, TestAuthServer};

    async fn get(url: &str) -> (u16, Option<String>, Value) {
        let res = reqwest::get(url).await.unwrap();
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.bytes().await.unwrap();
        (
            status,
            content_type,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    fn kids(jwks: &Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Verifies an RS256 token with the RSA key the JWK Set lists under its kid.
    fn verifies(jwt: &str, jwks: &Value) -> bool {
        let (signing_input, sig) = jwt.rsplit_once('.').unwrap();
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(signing_input.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        let Some(jwk) = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
        else {
            return false;
        };
        let field = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
        RsaPublicKeyComponents {
            n: field("n"),
            e: field("e"),
        }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            signing_input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(sig).unwrap(),
        )
        .is_ok()
    }

    #[tokio::test]
    async fn jwks_is_served_announced_faulted_and_rotated() {
        let server = TestAuthServer::start().await.unwrap();
        assert_eq!(server.jwks_url(), format!("{}/oauth2/jwks", server.base_url()));
        for url in [server.metadata_url(), server.openid_configuration_url()] {
            let (status, _, metadata) = get(&url).await;
            assert_eq!(status, 200);
            assert_eq!(metadata["jwks_uri"], server.jwks_url().as_str());
        }

        let (status, content_type, jwks) = get(&server.jwks_url()).await;
        assert_eq!(status, 200);
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let current: Vec<String> = [JwtAlg::Rs256, JwtAlg::Es256, JwtAlg::Es384, JwtAlg::EdDsa]
            .iter()
            .map(|alg| server.current_kid(alg).unwrap())
            .collect();
        assert_eq!(kids(&jwks), current);
        assert_eq!(current, ["rsa-1", "p256-1", "p384-1", "ed25519-1"]);
        let shapes: Vec<(&str, &str, Option<&str>)> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["kty"].as_str().unwrap(),
                    k["alg"].as_str().unwrap(),
                    k["crv"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            shapes,
            [
                ("RSA", "RS256", None),
                ("EC", "ES256", Some("P-256")),
                ("EC", "ES384", Some("P-384")),
                ("OKP", "EdDSA", Some("Ed25519")),
            ]
        );
        assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k["use"] == "sig"));
        assert_eq!(server.jwks_calls(), 1);

        let old_token = server.mint_jwt(JwtSpec::rfc9068());
        assert!(verifies(&old_token, &jwks));
        assert!(!verifies(&server.mint_jwt(JwtSpec::rfc9068().tamper()), &jwks));

        server.set_jwks_fault(Some(Fault::Status(503)));
        let (status, _, body) = get(&server.jwks_url()).await;
        assert_eq!(
            (status, &body["error"]),
            (503, &Value::from("temporarily_unavailable"))
        );
        server.set_jwks_fault(Some(Fault::Html));
        let (status, content_type, _) = get(&server.jwks_url()).await;
        assert_eq!(
            (status, content_type.as_deref()),
            (200, Some("text/html; charset=utf-8"))
        );
        server.set_jwks_fault(None);
        assert_eq!(server.jwks_calls(), 3);

        let old_pem = server.rsa_public_key_pem();
        assert_eq!(server.rotate_keys(), "rsa-2");
        assert_eq!(server.current_kid(&JwtAlg::Ps512).as_deref(), Some("rsa-2"));
        assert_ne!(server.rsa_public_key_pem(), old_pem);
        let (status, _, rotated) = get(&server.jwks_url()).await;
        assert_eq!(status, 200);
        assert_eq!(kids(&rotated), ["rsa-2", "p256-2", "p384-2", "ed25519-2"]);
        assert!(!verifies(&old_token, &rotated), "the old kid is gone");
        let new_token = server.mint_jwt(JwtSpec::rfc9068());
        assert!(verifies(&new_token, &rotated));
        assert!(!verifies(&new_token, &jwks));

        assert_eq!(server.jwks_calls(), 4);
        server.reset_counters();
        assert_eq!(server.jwks_calls(), 0);
        assert!(format!("{server:?}").contains("rsa-2"));
    }

    #[tokio::test]
    async fn minted_tokens_carry_the_issuer_and_the_rsa_key_matches_its_pem() {
        let server = TestAuthServer::start().await.unwrap();
        server.set_issuer("https://issuer.example/");
        let jwt = server.mint_jwt(JwtSpec::new());
        let payload = jwt.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["iss"], "https://issuer.example/");

        let pem = server.rsa_public_key_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        assert_eq!(der, server.rsa_public_key_der());
        assert_eq!(server.current_kid(&JwtAlg::Hs256(der)), None);
        assert_eq!(server.current_kid(&JwtAlg::None), None);
    }
}
