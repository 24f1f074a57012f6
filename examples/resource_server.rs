//! A resource server protected by a real RFC 7662 authorization server,
//! configured from the environment.
//!
//! ```text
//! INTROSPECTION_URL=https://as.example/o/introspect/ CLIENT_ID=rs CLIENT_SECRET=… \
//!     cargo run --example resource_server
//! ```
//!
//! | variable | meaning |
//! |---|---|
//! | `INTROSPECTION_URL` | the introspection endpoint (required unless a JWT source is set) |
//! | `CLIENT_ID`, `CLIENT_SECRET` | the resource server's credentials |
//! | `CLIENT_AUTH` | `basic` (default), `post`, `bearer`, or `private_key_jwt` |
//! | `TOKEN_URL`, `TOKEN_SCOPE` | for `bearer`: where and with which scope the resource server gets its own token (client credentials grant) |
//! | `CLIENT_KEY_FILE` | for `private_key_jwt` (and `bearer` without `CLIENT_SECRET`): the private key, PKCS #8 PEM or a private JWK; never logged |
//! | `AS_ISSUER` | the authorization server's issuer: the `aud` of client assertions (default: the endpoint called) and the `iss` of signed answers |
//! | `SIGNED_INTROSPECTION` | `true` to ask for RFC 9701 signed answers and refuse unsigned ones (needs `AS_ISSUER`, `AS_JWKS_URL`); default `false` |
//! | `AS_JWKS_URL` | the JWK Set that signs introspection answers |
//! | `LISTEN_ADDR` | default `127.0.0.1:3000` |
//! | `REALM` | the challenge realm, default `api` |
//! | `EXPECTED_ISSUER`, `EXPECTED_AUDIENCE` | optional checks, comma-separated for several; the audience applies to JWTs too (for Passport: the accepted client ids) |
//! | `JWT_ISSUER` | verify JWT access tokens from this issuer locally: its metadata gives the JWKS, and `iss` is checked |
//! | `JWKS_URL` | verify JWTs with the keys at this JWK Set URL (with `JWT_ISSUER`: instead of the discovered one; without it, the first `EXPECTED_ISSUER` is the `iss` required) |
//! | `JWT_PUBLIC_KEY_FILE` | verify JWTs with this PEM public key (Laravel Passport's `storage/oauth-public.key`) |
//! | `JWT_PROFILE` | `rfc9068` (default), `passport` or `generic` |
//! | `JWT_ALGORITHMS` | accepted algorithms, comma-separated (default: what the keys declare) |
//! | `CACHE_MAX_TTL_SECS`, `CACHE_NEGATIVE_TTL_SECS` | cache lifetimes (0 disables) |
//! | `ALLOW_INSECURE_HTTP` | `1`/`true` to allow `http://` on non-loopback hosts |
//! | `REDIS_URL` | share introspection answers with the other replicas through this Redis (feature `redis`; needs `CACHE_SHARED_SECRET`) |
//! | `CACHE_SHARED_SECRET` | the fleet secret (at least 32 bytes, the same on every replica): names and seals the shared entries; never logged |
//! | `DPOP` | `off` (default), `allowed` (`DPoP` beside `Bearer`) or `required` (`DPoP` only): DPoP-bound tokens with proofs (RFC 9449); a bound token is never accepted as `Bearer` |
//! | `DPOP_EXTERNAL_URL` | the scheme and authority clients reach this server at (behind a proxy), which each proof's `htu` must name before the path |
//! | `DPOP_NONCE_SECS` | with `DPOP`: require server nonces in proofs (`use_dpop_nonce`, `DPoP-Nonce`), a new one every so many seconds (1 to 86400); unset: no nonces |
//! | `DPOP_NONCE_SECRET` | with `DPOP_NONCE_SECS`: the nonce secret (at least 32 bytes, the same on every replica) so that replicas accept each other's nonces; unset: one of this process's own; never logged |
//! | `CACHE_SHARED_SECRET_PREVIOUS` | during a rotation of the fleet secret: the previous one, still accepted for reading |
//! | `BACKCHANNEL_LOGOUT_PATH` | serve an OpenID Connect Back-Channel Logout receiver at this path (for example `/backchannel-logout`; off when unset): logout tokens revoke their session's cached tokens. The logout token's issuer and keys: `JWT_ISSUER` and `JWKS_URL` (else the issuer's metadata), or `AS_ISSUER` and `AS_JWKS_URL` |
//! | `LOGOUT_TOKEN_AUDIENCE` | the client ids a logout token's `aud` may name, comma-separated (default `CLIENT_ID`) |
//! | `SSF_PUSH_PATH` | serve a Shared Signals push receiver (RFC 8935) at this path (for example `/ssf/events`; off when unset): CAEP and RISC events revoke the cached tokens of the session or user they name |
//! | `SSF_ISSUER`, `SSF_JWKS_URL` | the transmitter's issuer (each SET's `iss`) and the JWK Set it signs with (both required with `SSF_PUSH_PATH`) |
//! | `SSF_AUDIENCE` | this receiver's audience in the stream, comma-separated for several (required with `SSF_PUSH_PATH`) |
//! | `SSF_PUSH_TOKEN` | the bearer token the transmitter must send (`Authorization: Bearer …`); unset: any caller may push (SETs must still be signed); never logged |
//! | `MTLS` | `off` (default), `allowed` or `required`: certificate-bound tokens (RFC 8705, `cnf.x5t#S256`) need the client certificate they are bound to; `required`: every token must be bound |
//! | `MTLS_CERT_HEADER` | with `MTLS`: the header format a TLS-terminating proxy forwards the client certificate in: `client-cert` (RFC 9440), `xfcc` (Envoy) or `nginx` (`$ssl_client_escaped_cert` in `X-SSL-Client-Cert`) |
//! | `MTLS_CERT_HEADER_NAME` | with `MTLS_CERT_HEADER`: another header name for it |
//! | `MTLS_TRUSTED_PROXIES` | with `MTLS_CERT_HEADER` (required): the proxies' networks, comma-separated CIDRs; the header from any other peer is ignored and removed |
//!
//! With `REDIS_URL`, a revocation (a logout token, a security event) made
//! on one replica reaches every replica, and replicas started later.
//!
//! With a JWT source and `INTROSPECTION_URL` both set, JWTs from the JWT
//! source are verified locally and every other token is introspected.
//!
//! Prints `listening on http://ADDR` once it accepts connections; logs with
//! `tracing` (`RUST_LOG`); exits non-zero with a message on bad configuration.

mod common;
// The environment readers and the verifier's assembly, shared with
// `mcp_server`; the introspector is built here (private_key_jwt, signed
// answers, fleet), so the module's own `introspector` goes unused.
#[allow(dead_code)]
#[path = "settings/mod.rs"]
mod settings;

use std::env;
use std::net::SocketAddr;
use std::process::ExitCode;

use settings::{flag, list, required, secs, var};
use tower_introspection::{
    dpop::DpopConfig,
    introspection::{AssertionAudience, ClientKey},
    jwt::JwtVerifier,
    logout::BackChannelLogout,
    mtls::{CertificateHeader, MtlsConfig},
    ssf::SharedSignals,
    IntrospectionLayer, Introspector, Verifier,
};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("resource_server: {message}");
            ExitCode::from(2)
        }
    }
}

/// The private key in `CLIENT_KEY_FILE`: a JWK if it starts with `{`, else
/// PKCS #8 PEM. Errors name the file, never its content.
fn client_key() -> Result<ClientKey, String> {
    let path = required("CLIENT_KEY_FILE")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("CLIENT_KEY_FILE {path}: {e}"))?;
    let key = if text.trim_start().starts_with('{') {
        ClientKey::from_jwk(&text)
    } else {
        ClientKey::from_pkcs8_pem(&text)
    };
    key.map_err(|e| format!("CLIENT_KEY_FILE {path}: {e}"))
}

fn introspector(url: String, fleet: settings::Fleet) -> Result<Introspector, String> {
    let mut builder = Introspector::builder(url).allow_insecure_http(flag("ALLOW_INSECURE_HTTP")?);
    let auth = var("CLIENT_AUTH").unwrap_or_else(|| "basic".into());
    builder = match auth.as_str() {
        "basic" => builder.client_secret_basic(required("CLIENT_ID")?, required("CLIENT_SECRET")?),
        "post" => builder.client_secret_post(required("CLIENT_ID")?, required("CLIENT_SECRET")?),
        "private_key_jwt" => builder.private_key_jwt(required("CLIENT_ID")?, client_key()?),
        "bearer" => {
            let builder = match (var("CLIENT_SECRET"), var("CLIENT_KEY_FILE")) {
                (None, Some(_)) => builder.bearer_from_client_credentials_with_key(
                    required("TOKEN_URL")?,
                    required("CLIENT_ID")?,
                    client_key()?,
                ),
                _ => builder.bearer_from_client_credentials(
                    required("TOKEN_URL")?,
                    required("CLIENT_ID")?,
                    required("CLIENT_SECRET")?,
                ),
            };
            match var("TOKEN_SCOPE") {
                Some(scope) => builder.token_scope(scope),
                None => builder,
            }
        }
        other => {
            return Err(format!(
                "CLIENT_AUTH must be basic, post, bearer or private_key_jwt, got {other:?}"
            ))
        }
    };
    let uses_key = auth == "private_key_jwt" || (auth == "bearer" && var("CLIENT_SECRET").is_none());
    if let (Some(issuer), true) = (var("AS_ISSUER"), uses_key) {
        builder = builder.client_assertion_audience(AssertionAudience::Issuer(issuer));
    }
    if flag("SIGNED_INTROSPECTION")? {
        builder = builder.signed_answers(required("AS_ISSUER")?, required("AS_JWKS_URL")?);
    }
    for issuer in list("EXPECTED_ISSUER") {
        builder = builder.expected_issuer(issuer);
    }
    for audience in list("EXPECTED_AUDIENCE") {
        builder = builder.expected_audience(audience);
    }
    if let Some(ttl) = secs("CACHE_MAX_TTL_SECS")? {
        builder = builder.max_ttl(ttl);
    }
    if let Some(ttl) = secs("CACHE_NEGATIVE_TTL_SECS")? {
        builder = builder.negative_ttl(ttl);
    }
    #[cfg(feature = "redis")]
    if let Some(shared) = fleet {
        builder = builder.shared_cache(shared);
    }
    #[cfg(not(feature = "redis"))]
    let _ = fleet;
    builder.build().map_err(|e| e.to_string())
}

/// `DPOP`, `DPOP_EXTERNAL_URL`, `DPOP_NONCE_SECS` and `DPOP_NONCE_SECRET`.
/// The secret is read raw (not trimmed) and never printed.
fn dpop() -> Result<Option<DpopConfig>, String> {
    let nonce_secret = env::var_os("DPOP_NONCE_SECRET").filter(|v| !v.is_empty());
    let config = match var("DPOP").as_deref().map(str::trim) {
        None | Some("off") => {
            for name in ["DPOP_EXTERNAL_URL", "DPOP_NONCE_SECS", "DPOP_NONCE_SECRET"] {
                if var(name).is_some() {
                    return Err(format!("{name}: set DPOP to allowed or required"));
                }
            }
            return Ok(None);
        }
        Some("allowed") => DpopConfig::allowed(),
        Some("required") => DpopConfig::required(),
        Some(other) => return Err(format!("DPOP: `{other}` is not off, allowed or required")),
    };
    let config = match var("DPOP_EXTERNAL_URL") {
        Some(url) => config
            .external_url(url.trim())
            .map_err(|e| format!("DPOP_EXTERNAL_URL: {e}"))?,
        None => config,
    };
    let rotation = match secs("DPOP_NONCE_SECS")? {
        Some(rotation) if (1..=86_400).contains(&rotation.as_secs()) => Some(rotation),
        Some(_) => return Err("DPOP_NONCE_SECS must be between 1 and 86400".into()),
        None => None,
    };
    match (rotation, nonce_secret) {
        (None, None) => Ok(Some(config)),
        (Some(rotation), None) => Ok(Some(config.nonces(rotation))),
        (Some(rotation), Some(secret)) => config
            .shared_nonces(rotation, secret.as_encoded_bytes())
            .map(Some)
            .map_err(|e| format!("DPOP_NONCE_SECRET: {e}")),
        (None, Some(_)) => Err("DPOP_NONCE_SECRET is set but DPOP_NONCE_SECS is not".into()),
    }
}

/// `BACKCHANNEL_LOGOUT_PATH` and `LOGOUT_TOKEN_AUDIENCE`: the receiver and
/// where it is served, if configured.
async fn backchannel_logout(verifier: &Verifier) -> Result<Option<(String, BackChannelLogout)>, String> {
    let Some(path) = var("BACKCHANNEL_LOGOUT_PATH") else {
        return Ok(None);
    };
    if !path.starts_with('/') {
        return Err("BACKCHANNEL_LOGOUT_PATH must start with `/`".into());
    }
    let (issuer, jwks) = match (var("JWT_ISSUER"), var("AS_ISSUER")) {
        (Some(issuer), _) => (issuer, var("JWKS_URL")),
        (None, Some(issuer)) => (issuer, var("AS_JWKS_URL")),
        (None, None) => {
            return Err(
                "BACKCHANNEL_LOGOUT_PATH needs the logout token's issuer: JWT_ISSUER or AS_ISSUER".into(),
            )
        }
    };
    let keys = match jwks {
        Some(jwks) => JwtVerifier::builder().expected_issuer(issuer).jwks_url(jwks),
        None => JwtVerifier::discover(issuer)
            .await
            .map_err(|e| format!("BACKCHANNEL_LOGOUT_PATH: the issuer's metadata: {e}"))?,
    };
    let keys = keys
        .allow_insecure_http(flag("ALLOW_INSECURE_HTTP")?)
        .build()
        .map_err(|e| format!("BACKCHANNEL_LOGOUT_PATH: the logout token keys: {e}"))?;
    let mut audiences = list("LOGOUT_TOKEN_AUDIENCE");
    if audiences.is_empty() {
        audiences.push(required("CLIENT_ID").map_err(|_| {
            "LOGOUT_TOKEN_AUDIENCE (or CLIENT_ID) is required with BACKCHANNEL_LOGOUT_PATH".to_owned()
        })?);
    }
    let mut builder = BackChannelLogout::builder(keys, verifier.clone());
    for audience in audiences {
        builder = builder.audience(audience);
    }
    let logout = builder
        .build()
        .map_err(|e| format!("BACKCHANNEL_LOGOUT_PATH: {e}"))?;
    Ok(Some((path, logout)))
}

/// `SSF_PUSH_PATH`, `SSF_ISSUER`, `SSF_JWKS_URL`, `SSF_AUDIENCE` and
/// `SSF_PUSH_TOKEN`: the Shared Signals receiver and where it is served, if
/// configured. Subject identifiers without an issuer are taken as the
/// access tokens' issuer: `JWT_ISSUER`, `AS_ISSUER` or the first
/// `EXPECTED_ISSUER`, else the transmitter's.
fn shared_signals(verifier: &Verifier) -> Result<Option<(String, SharedSignals)>, String> {
    let Some(path) = var("SSF_PUSH_PATH") else {
        for name in ["SSF_ISSUER", "SSF_JWKS_URL", "SSF_AUDIENCE", "SSF_PUSH_TOKEN"] {
            if var(name).is_some() {
                return Err(format!("{name} is set but SSF_PUSH_PATH is not"));
            }
        }
        return Ok(None);
    };
    if !path.starts_with('/') {
        return Err("SSF_PUSH_PATH must start with `/`".into());
    }
    let transmitter = JwtVerifier::builder()
        .expected_issuer(required("SSF_ISSUER")?)
        .jwks_url(required("SSF_JWKS_URL")?)
        .allow_insecure_http(flag("ALLOW_INSECURE_HTTP")?)
        .build()
        .map_err(|e| format!("SSF_ISSUER, SSF_JWKS_URL: {e}"))?;
    let mut builder = SharedSignals::builder(transmitter, verifier.clone());
    let audiences = list("SSF_AUDIENCE");
    if audiences.is_empty() {
        return Err("SSF_AUDIENCE is required with SSF_PUSH_PATH".into());
    }
    for audience in audiences {
        builder = builder.audience(audience);
    }
    let token_issuer = var("JWT_ISSUER")
        .or_else(|| var("AS_ISSUER"))
        .or_else(|| list("EXPECTED_ISSUER").into_iter().next());
    if let Some(issuer) = token_issuer {
        builder = builder.token_issuer(issuer);
    }
    // Read raw and never printed.
    match env::var_os("SSF_PUSH_TOKEN").filter(|v| !v.is_empty()) {
        Some(token) => {
            let token = token
                .into_string()
                .map_err(|_| "SSF_PUSH_TOKEN is not UTF-8".to_owned())?;
            builder = builder.bearer_token(token);
        }
        None => tracing::warn!(
            "SSF_PUSH_TOKEN is not set: anyone who reaches SSF_PUSH_PATH may push (SETs must still be signed by the transmitter)"
        ),
    }
    let signals = builder.build().map_err(|e| format!("SSF_PUSH_PATH: {e}"))?;
    Ok(Some((path, signals)))
}

/// `MTLS`, `MTLS_CERT_HEADER`, `MTLS_CERT_HEADER_NAME` and
/// `MTLS_TRUSTED_PROXIES`.
fn mtls() -> Result<Option<MtlsConfig>, String> {
    let config = match var("MTLS").as_deref().map(str::trim) {
        None | Some("off") => {
            for name in [
                "MTLS_CERT_HEADER",
                "MTLS_CERT_HEADER_NAME",
                "MTLS_TRUSTED_PROXIES",
            ] {
                if var(name).is_some() {
                    return Err(format!("{name}: set MTLS to allowed or required"));
                }
            }
            return Ok(None);
        }
        Some("allowed") => MtlsConfig::allowed(),
        Some("required") => MtlsConfig::required(),
        Some(other) => return Err(format!("MTLS: `{other}` is not off, allowed or required")),
    };
    let format = match var("MTLS_CERT_HEADER").as_deref().map(str::trim) {
        Some("client-cert") => CertificateHeader::ClientCert,
        Some("xfcc") => CertificateHeader::Xfcc,
        Some("nginx") => CertificateHeader::Nginx,
        Some(other) => {
            return Err(format!(
                "MTLS_CERT_HEADER: `{other}` is not client-cert, xfcc or nginx"
            ))
        }
        None => {
            return Err(
                "MTLS needs MTLS_CERT_HEADER: the client certificate comes from a TLS-terminating proxy"
                    .into(),
            )
        }
    };
    let config = match var("MTLS_CERT_HEADER_NAME") {
        Some(name) => {
            let name = http::HeaderName::try_from(name.trim())
                .map_err(|_| format!("MTLS_CERT_HEADER_NAME: `{name}` is not a header name"))?;
            config.forwarded_in(format, name)
        }
        None => config.forwarded_by(format),
    };
    let proxies = list("MTLS_TRUSTED_PROXIES");
    if proxies.is_empty() {
        return Err(
            "MTLS_CERT_HEADER needs MTLS_TRUSTED_PROXIES: the networks of the proxies that forward it".into(),
        );
    }
    config
        .trusted_proxies(proxies)
        .map(Some)
        .map_err(|e| format!("MTLS_TRUSTED_PROXIES: {e}"))
}

async fn run() -> Result<(), String> {
    let listen: SocketAddr = var("LISTEN_ADDR")
        .unwrap_or_else(|| "127.0.0.1:3000".into())
        .parse()
        .map_err(|e| format!("LISTEN_ADDR: {e}"))?;
    let fleet = settings::fleet()?;
    let verifier = settings::verifier_with(None, &fleet, |url| introspector(url, fleet.clone())).await?;
    let logout = backchannel_logout(&verifier).await?;
    let signals = shared_signals(&verifier)?;
    let mut layer = IntrospectionLayer::new(verifier);
    if let Some(realm) = var("REALM") {
        layer = layer.realm(realm).map_err(|e| format!("REALM: {e}"))?;
    }
    if let Some(dpop) = dpop()? {
        layer = layer.dpop(dpop);
    }
    if let Some(mtls) = mtls()? {
        layer = layer.mtls(mtls);
    }
    let mut app = common::app(layer);
    if let Some((path, logout)) = logout {
        // Outside the layer: the authorization server sends no access token.
        app = app.route(&path, axum::routing::post_service(logout));
    }
    if let Some((path, signals)) = signals {
        // Outside the layer too: the transmitter authenticates its own way.
        app = app.route(&path, axum::routing::post_service(signals));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    // The peer address: whether a forwarded certificate comes from a
    // trusted proxy.
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(common::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
