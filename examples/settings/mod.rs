//! The verifier settings shared by the example servers, read from the
//! environment (`INTROSPECTION_URL`, `CLIENT_ID`, `CLIENT_SECRET`,
//! `CLIENT_AUTH`, `TOKEN_URL`, `TOKEN_SCOPE`, `EXPECTED_ISSUER`,
//! `EXPECTED_AUDIENCE`, `JWT_ISSUER`, `JWKS_URL`, `JWT_PUBLIC_KEY_FILE`,
//! `JWT_PROFILE`, `JWT_ALGORITHMS`, `CACHE_MAX_TTL_SECS`,
//! `CACHE_NEGATIVE_TTL_SECS`, `ALLOW_INSECURE_HTTP`; see
//! `examples/resource_server.rs` for their meaning). Used by
//! `examples/mcp_server.rs` (all of it, with the resource its tokens must be
//! issued for) and `examples/resource_server.rs` (all but the introspector,
//! which it builds itself).

use std::env;
use std::time::Duration;

use tower_introspection::{
    jwt::{Algorithm, JwtProfile, JwtVerifier},
    Introspector, Verifier,
};

pub(crate) fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) fn required(name: &str) -> Result<String, String> {
    var(name).ok_or_else(|| format!("{name} is required"))
}

pub(crate) fn secs(name: &str) -> Result<Option<Duration>, String> {
    var(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{name} must be a whole number of seconds, got {v:?}"))
        })
        .transpose()
}

pub(crate) fn flag(name: &str) -> Result<bool, String> {
    match var(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(format!("{name} must be true or false, got {other:?}")),
    }
}

pub(crate) fn list(name: &str) -> Vec<String> {
    var(name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn introspector(url: String, resource: Option<&str>) -> Result<Introspector, String> {
    let mut builder = Introspector::builder(url).allow_insecure_http(flag("ALLOW_INSECURE_HTTP")?);
    let auth = var("CLIENT_AUTH").unwrap_or_else(|| "basic".into());
    builder = match auth.as_str() {
        "basic" => builder.client_secret_basic(required("CLIENT_ID")?, required("CLIENT_SECRET")?),
        "post" => builder.client_secret_post(required("CLIENT_ID")?, required("CLIENT_SECRET")?),
        "bearer" => {
            let builder = builder.bearer_from_client_credentials(
                required("TOKEN_URL")?,
                required("CLIENT_ID")?,
                required("CLIENT_SECRET")?,
            );
            match var("TOKEN_SCOPE") {
                Some(scope) => builder.token_scope(scope),
                None => builder,
            }
        }
        other => {
            return Err(format!(
                "CLIENT_AUTH must be basic, post or bearer, got {other:?}"
            ))
        }
    };
    for issuer in list("EXPECTED_ISSUER") {
        builder = builder.expected_issuer(issuer);
    }
    for audience in list("EXPECTED_AUDIENCE") {
        builder = builder.expected_audience(audience);
    }
    if let Some(resource) = resource {
        builder = builder.expected_resource(resource);
    }
    if let Some(ttl) = secs("CACHE_MAX_TTL_SECS")? {
        builder = builder.max_ttl(ttl);
    }
    if let Some(ttl) = secs("CACHE_NEGATIVE_TTL_SECS")? {
        builder = builder.negative_ttl(ttl);
    }
    builder.build().map_err(|e| e.to_string())
}

/// The fleet tier (`REDIS_URL`, `CACHE_SHARED_SECRET`,
/// `CACHE_SHARED_SECRET_PREVIOUS`), if `REDIS_URL` is set. The secrets are
/// read raw (not trimmed) and never printed: errors name the variable, not
/// its value.
#[cfg(feature = "redis")]
#[allow(dead_code)] // mcp_server has no fleet
pub(crate) fn fleet() -> Result<Fleet, String> {
    let secret = |name: &str| env::var_os(name).filter(|v| !v.is_empty());
    match (var("REDIS_URL"), secret("CACHE_SHARED_SECRET")) {
        (None, None) => Ok(None),
        (Some(url), Some(current)) => {
            let mut shared =
                tower_introspection::fleet::SharedCache::builder(url, current.as_encoded_bytes());
            if let Some(previous) = secret("CACHE_SHARED_SECRET_PREVIOUS") {
                shared = shared.previous_secret(previous.as_encoded_bytes());
            }
            shared
                .build()
                .map(Some)
                .map_err(|e| format!("REDIS_URL, CACHE_SHARED_SECRET: {e}"))
        }
        (Some(_), None) => Err("REDIS_URL needs CACHE_SHARED_SECRET (the fleet secret)".into()),
        (None, Some(_)) => Err("CACHE_SHARED_SECRET is set but REDIS_URL is not".into()),
    }
}

#[cfg(not(feature = "redis"))]
#[allow(dead_code)] // mcp_server has no fleet
pub(crate) fn fleet() -> Result<Fleet, String> {
    match var("REDIS_URL") {
        Some(_) => Err(
            "REDIS_URL needs the `redis` feature: cargo run --features redis --example resource_server"
                .into(),
        ),
        None => Ok(None),
    }
}

/// The fleet tier, when there is one.
#[cfg(feature = "redis")]
pub(crate) type Fleet = Option<tower_introspection::fleet::SharedCache>;
/// No fleet tier without the `redis` feature.
#[cfg(not(feature = "redis"))]
pub(crate) type Fleet = Option<std::convert::Infallible>;

/// A JWT verifier, if `JWT_ISSUER`, `JWKS_URL` or `JWT_PUBLIC_KEY_FILE` is
/// set; in `fleet` for revocations, when there is one.
async fn jwt_verifier(resource: Option<&str>, fleet: &Fleet) -> Result<Option<JwtVerifier>, String> {
    let (issuer, jwks, key_file) = (var("JWT_ISSUER"), var("JWKS_URL"), var("JWT_PUBLIC_KEY_FILE"));
    if issuer.is_none() && jwks.is_none() && key_file.is_none() {
        return Ok(None);
    }
    let insecure = flag("ALLOW_INSECURE_HTTP")?;
    let mut builder = match (&issuer, &jwks) {
        (Some(issuer), None) => tower_introspection::Introspector::discover(issuer.clone())
            .allow_insecure_http(insecure)
            .jwt_verifier()
            .await
            .map_err(|e| format!("JWT_ISSUER: {e}"))?,
        (Some(issuer), Some(_)) => JwtVerifier::builder().expected_issuer(issuer.clone()),
        // Without JWT_ISSUER, EXPECTED_ISSUER (the first one) is the `iss`
        // JWTs must carry.
        (None, _) => match list("EXPECTED_ISSUER").into_iter().next() {
            Some(issuer) => JwtVerifier::builder().expected_issuer(issuer),
            None => JwtVerifier::builder(),
        },
    };
    builder = builder.allow_insecure_http(insecure);
    if let Some(url) = jwks {
        builder = builder.jwks_url(url);
    }
    if let Some(path) = key_file {
        let pem = std::fs::read_to_string(&path).map_err(|e| format!("JWT_PUBLIC_KEY_FILE {path}: {e}"))?;
        builder = builder.public_key_pem(pem);
    }
    builder = builder.profile(match var("JWT_PROFILE").as_deref() {
        None | Some("rfc9068") => JwtProfile::Rfc9068,
        Some("passport") => JwtProfile::Passport,
        Some("generic") => JwtProfile::Generic,
        Some(other) => {
            return Err(format!(
                "JWT_PROFILE must be rfc9068, passport or generic, got {other:?}"
            ))
        }
    });
    if var("JWT_ALGORITHMS").is_some() {
        let algorithms = list("JWT_ALGORITHMS")
            .iter()
            .map(|alg| {
                alg.parse::<Algorithm>()
                    .map_err(|_| format!("JWT_ALGORITHMS: unsupported algorithm {alg:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        builder = builder.algorithms(algorithms);
    }
    for audience in list("EXPECTED_AUDIENCE") {
        builder = builder.expected_audience(audience);
    }
    if let Some(resource) = resource {
        builder = builder.expected_resource(resource);
    }
    if let Some(ttl) = secs("CACHE_MAX_TTL_SECS")? {
        builder = builder.max_ttl(ttl);
    }
    #[cfg(feature = "redis")]
    if let Some(shared) = fleet {
        builder = builder.shared_cache(shared.clone());
    }
    #[cfg(not(feature = "redis"))]
    let _ = fleet;
    builder.build().map(Some).map_err(|e| e.to_string())
}

/// The verifier the environment describes; with `resource`, every token's
/// `aud` must name it (RFC 8707), whichever source verified the token and
/// whatever `EXPECTED_AUDIENCE` says (an extra condition, not an alternative).
pub(crate) async fn verifier(resource: Option<&str>) -> Result<Verifier, String> {
    verifier_with(resource, &None, |url| introspector(url, resource)).await
}

/// As [`verifier`], with the introspector (when `INTROSPECTION_URL` is set)
/// built by `introspector`, and the JWT verifier in `fleet`.
pub(crate) async fn verifier_with(
    resource: Option<&str>,
    fleet: &Fleet,
    introspector: impl FnOnce(String) -> Result<Introspector, String>,
) -> Result<Verifier, String> {
    let jwt = jwt_verifier(resource, fleet).await?;
    let introspector = match (var("INTROSPECTION_URL"), &jwt) {
        (Some(url), _) => Some(introspector(url)?),
        (None, Some(_)) => None,
        (None, None) => return Err(
            "INTROSPECTION_URL is required (or a JWT source: JWT_ISSUER, JWKS_URL or JWT_PUBLIC_KEY_FILE)"
                .into(),
        ),
    };
    match (jwt, introspector) {
        (Some(jwt), None) => Ok(jwt.into()),
        (None, Some(introspector)) => Ok(introspector.into()),
        (Some(jwt), Some(introspector)) => Verifier::builder()
            .jwt(jwt)
            .introspector(introspector)
            .build()
            .map_err(|e| e.to_string()),
        (None, None) => Err("no verifier configured".into()),
    }
}
