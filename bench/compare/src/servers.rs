//! The four servers under test, each run as its own child process
//! (`compare serve <kind> ...`), with the same handler on `/bare` and on
//! `/protected`; only `/protected` carries the authentication layer.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

type BoxError = Box<dyn Error + Send + Sync>;

/// The handler every server uses on both routes.
async fn hello() -> &'static str {
    "hello"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// tower-introspection: `IntrospectionLayer` (moka cache, coalesced misses).
    Ti,
    /// zitadel: `IntrospectedUser` extractor with `InMemoryIntrospectionCache`.
    Zitadel,
    /// jwt-authorizer: RS256 JWTs checked locally against a JWKS (axum 0.7).
    Jwt,
    /// tower-introspection: the same RS256 JWTs verified locally by
    /// `JwtVerifier` (same JWKS), verified claims cached like introspection
    /// answers.
    TiJwt,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Ti, Kind::Zitadel, Kind::Jwt, Kind::TiJwt];

    /// Gets a JWT (checked locally, keys from the harness's JWKS) rather
    /// than an opaque token introspected at the test AS.
    pub fn is_jwt(self) -> bool {
        matches!(self, Kind::Jwt | Kind::TiJwt)
    }

    pub fn arg(self) -> &'static str {
        match self {
            Kind::Ti => "ti",
            Kind::Zitadel => "zitadel",
            Kind::Jwt => "jwt",
            Kind::TiJwt => "ti-jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.arg() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Ti => "tower-introspection 0.1.0",
            Kind::Zitadel => "zitadel 5.7.7 (introspection_cache)",
            Kind::Jwt => "jwt-authorizer 0.15.0 (RS256/JWKS)",
            Kind::TiJwt => "tower-introspection 0.1.0 JWT (RS256/JWKS)",
        }
    }

    pub fn axum(self) -> &'static str {
        match self {
            Kind::Ti | Kind::Zitadel | Kind::TiJwt => "0.8",
            Kind::Jwt => "0.7",
        }
    }
}

/// `compare serve KIND URL THREADS CPU`: builds the server, prints
/// `LISTENING <addr>` and serves until its standard input closes (the
/// orchestrator holds the other end, so a child never outlives it).
pub fn serve_main(args: &[String]) -> Result<(), BoxError> {
    let [kind, url, threads, cpu] = args else {
        return Err("usage: compare serve ti|zitadel|jwt|ti-jwt URL THREADS CPU|-".into());
    };
    let kind = Kind::parse(kind).ok_or("unknown server kind")?;
    let threads: usize = threads.parse()?;
    if cpu != "-" {
        // Set before the runtime starts: its threads inherit the mask.
        crate::pin_to_cpus(&[cpu.parse()?])?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.clamp(1, 64))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let serving = match kind {
            Kind::Ti => {
                let app = ti_app(url)?;
                tokio::spawn(async move { axum::serve(listener, app).await })
            }
            Kind::Zitadel => {
                let app = zitadel_app(url).await?;
                tokio::spawn(async move { axum::serve(listener, app).await })
            }
            Kind::Jwt => {
                let app = jwt_app(url).await?;
                tokio::spawn(async move { axum07::serve(listener, app).await })
            }
            Kind::TiJwt => {
                let app = ti_jwt_app(url)?;
                tokio::spawn(async move { axum::serve(listener, app).await })
            }
        };
        println!("LISTENING {addr}");
        // Serve until the parent closes our stdin (or dies).
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        serving.abort();
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<(), BoxError>(())
    })
}

/// tower-introspection against the test AS's introspection endpoint.
pub(crate) fn ti_app(introspection_url: &str) -> Result<axum::Router, BoxError> {
    use axum::routing::get;
    use tower_introspection::{IntrospectionLayer, Introspector};

    let introspector = Introspector::builder(introspection_url)
        .client_secret_basic("rs-client", "rs-secret")
        .build()?;
    Ok(axum::Router::new()
        .route("/protected", get(hello))
        .route_layer(IntrospectionLayer::new(introspector))
        .route("/bare", get(hello)))
}

/// tower-introspection verifying the harness's RS256 JWTs locally with a
/// `JwtVerifier` whose keys come from the same JWKS jwt-authorizer uses.
/// The token (see `sign_jwt`) is typed `JWT` and has no `aud`, so it does
/// not fit the RFC 9068 profile (`typ: at+jwt`, `aud` required): the
/// generic profile, which requires only `exp`, and no expected audience
/// (the verifier logs one warning about that at build). No issuer either:
/// like jwt-authorizer's default validation, signature and `exp` only.
pub(crate) fn ti_jwt_app(jwks_url: &str) -> Result<axum::Router, BoxError> {
    use axum::routing::get;
    use tower_introspection::{IntrospectionLayer, jwt::{JwtProfile, JwtVerifier}};

    let verifier = JwtVerifier::builder()
        .jwks_url(jwks_url)
        .profile(JwtProfile::Generic)
        .build()?;
    Ok(axum::Router::new()
        .route("/protected", get(hello))
        .route_layer(IntrospectionLayer::new(verifier))
        .route("/bare", get(hello)))
}

/// zitadel's `IntrospectedUser` extractor (run as a route layer so the
/// handler is the same), with its moka-backed `InMemoryIntrospectionCache`.
/// `authority` is the harness's discovery adapter, whose document points
/// `introspection_endpoint` at the test AS.
pub(crate) async fn zitadel_app(authority: &str) -> Result<axum::Router, BoxError> {
    use axum::routing::get;
    use zitadel::axum::introspection::{IntrospectedUser, IntrospectionStateBuilder};
    use zitadel::oidc::introspection::cache::in_memory::InMemoryIntrospectionCache;

    let state = IntrospectionStateBuilder::new(authority)
        .with_basic_auth("rs-client", "rs-secret")
        .with_introspection_cache(InMemoryIntrospectionCache::new())
        .build()
        .await
        .map_err(|e| format!("zitadel IntrospectionStateBuilder::build: {e}"))?;
    Ok(axum::Router::new()
        .route("/protected", get(hello))
        .route_layer(axum::middleware::from_extractor_with_state::<IntrospectedUser, _>(state))
        .route("/bare", get(hello)))
}

/// jwt-authorizer on axum 0.7: keys from the harness's JWKS endpoint,
/// default validation (signature, `exp`), `RegisteredClaims`.
pub(crate) async fn jwt_app(jwks_url: &str) -> Result<axum07::Router, BoxError> {
    use axum07::routing::get;
    use jwt_authorizer::{Authorizer, IntoLayer, JwtAuthorizer, RegisteredClaims};

    let auth: Authorizer<RegisteredClaims> = JwtAuthorizer::from_jwks_url(jwks_url)
        .build()
        .await
        .map_err(|e| format!("jwt-authorizer build: {e}"))?;
    Ok(axum07::Router::new()
        .route("/protected", get(hello))
        .route_layer(auth.into_layer())
        .route("/bare", get(hello)))
}
