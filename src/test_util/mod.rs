//! An in-process OAuth 2.0 authorization server for tests.
//!
//! [`TestAuthServer`] listens on a real TCP port of `127.0.0.1`, serves in a
//! task on the current tokio runtime and keeps its state in memory:
//!
//! | endpoint | what it does |
//! | --- | --- |
//! | `POST /oauth2/token` | RFC 6749 `password` and `client_credentials` grants (RFC 8707 `resource` becomes `aud`) |
//! | `POST /oauth2/introspect` | RFC 7662 token introspection, in one of several [`AnswerShape`]s, with injectable [`Fault`]s |
//! | `POST /oauth2/revoke` | RFC 7009 token revocation |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata (also at `/.well-known/openid-configuration`), with `jwks_uri` |
//! | `GET /oauth2/jwks` | RFC 7517 JWK Set of the current signing keys (RSA, EC P-256, EC P-384, Ed25519), with injectable [`Fault`]s |
//!
//! Clients authenticate with HTTP Basic — `base64(urlencode(id):urlencode(secret))`
//! as RFC 6749 §2.3.1 requires, see [`client_secret_basic`] — or with
//! `client_id`/`client_secret` form fields, never both. The introspection
//! endpoint also accepts `Authorization: Bearer` with an active token whose
//! scope contains `introspection`.
//!
//! [`TestAuthServer::start`] registers the resource server's own client
//! ([`RS_CLIENT_ID`]/[`RS_CLIENT_SECRET`], allowed to introspect), a client
//! that obtains tokens ([`TEST_CLIENT_ID`]/[`TEST_CLIENT_SECRET`], grants
//! `password` and `client_credentials`, scopes `read write admin
//! introspection`) and the user [`TEST_USERNAME`]/[`TEST_PASSWORD`].
//!
//! The server also mints JWT access tokens
//! ([`mint_jwt`](TestAuthServer::mint_jwt) with a [`JwtSpec`]: RFC 9068,
//! Laravel Passport or bare, any [`JwtAlg`], `kid`, `typ`, claims, or a
//! broken signature) and rotates its keys
//! ([`rotate_keys`](TestAuthServer::rotate_keys)). Its RSA keys are three
//! RSA-2048 keys committed with the crate's source (`src/test_util/keys/`):
//! public test material, so a signature made with them proves nothing
//! outside tests. Its EC and Ed25519 keys are generated at start. JWTs are
//! not stored: the introspection endpoint does not know them.
//!
//! # Example
//!
//! ```rust
//! use std::time::Duration;
//! use tower_introspection::test_util::{
//!     TestAuthServer, TokenSpec, RS_CLIENT_ID, RS_CLIENT_SECRET,
//! };
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TestAuthServer::start().await?;
//! let token = server.mint_token("read write");
//! let audience_bound = server.mint(
//!     TokenSpec::new().scope("read").sub("bob").aud("https://api.example").exp_in(Duration::from_secs(60)),
//! );
//! assert_ne!(token, audience_bound);
//!
//! // What a resource server does with a bearer token it receives.
//! let answer: serde_json::Value = reqwest::Client::new()
//!     .post(server.introspection_url())
//!     .basic_auth(RS_CLIENT_ID, Some(RS_CLIENT_SECRET))
//!     .form(&[("token", token.as_str())])
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert_eq!(answer["active"], true);
//! assert_eq!(answer["scope"], "read write");
//! assert_eq!(answer["sub"], "alice");
//! assert_eq!(server.introspection_calls(), 1);
//!
//! server.revoke(&token);
//! let request = server.last_introspection_request().ok_or("nothing recorded")?;
//! assert_eq!(request.form_value("token"), Some(token.as_str()));
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod alg;
mod assertion;
mod auth;
mod dpop;
mod fault;
mod form;
mod introspect;
mod jwks;
mod jwt;
mod keys;
mod metadata;
mod random;
mod render;
mod reply;
mod revoke;
mod server;
mod spec;
mod state;
mod token;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;

pub use alg::JwtAlg;
pub use auth::client_secret_basic;
pub use dpop::DpopKey;
pub use jwt::JwtSpec;
pub use spec::{AnswerShape, AuthFailure, ClientSpec, Fault, RecordedRequest, SignedAnswerFault, TokenSpec};

use keys::KeySet;
use server::Serving;
use state::{unix_now, unix_now_micros, ArmedFault, Shared};

/// Client id of the resource server's own client (allowed to introspect).
pub const RS_CLIENT_ID: &str = "rs-client";
/// Client secret of [`RS_CLIENT_ID`].
pub const RS_CLIENT_SECRET: &str = "rs-secret";
/// Client id of the client that obtains tokens (grants `password` and
/// `client_credentials`, scopes `read write admin introspection`).
pub const TEST_CLIENT_ID: &str = "test-client";
/// Client secret of [`TEST_CLIENT_ID`].
pub const TEST_CLIENT_SECRET: &str = "test-secret";
/// The registered user.
pub const TEST_USERNAME: &str = "alice";
/// The password of [`TEST_USERNAME`].
pub const TEST_PASSWORD: &str = "alice-password";

/// An in-process OAuth 2.0 authorization server for tests (see the
/// [module documentation](self)).
///
/// Cloning gives another handle to the same server. The server stops when
/// the last handle is dropped or on [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct TestAuthServer {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    shared: Arc<Shared>,
    serving: Mutex<Option<Serving>>,
}

impl Inner {
    fn serving(&self) -> MutexGuard<'_, Option<Serving>> {
        self.serving.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let serving = self.serving.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(serving) = serving {
            serving.abort();
        }
    }
}

impl fmt::Debug for TestAuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.shared.lock();
        f.debug_struct("TestAuthServer")
            .field("addr", &self.inner.addr)
            .field("issuer", &self.inner.shared.issuer(&state))
            .field("clients", &state.clients.len())
            .field("tokens", &state.tokens.len())
            .field("shape", &state.shape)
            .field("keys", &self.inner.shared.keys())
            .finish_non_exhaustive()
    }
}

impl TestAuthServer {
    /// Starts a server on `127.0.0.1:0` with the default clients and user
    /// (see the [module documentation](self)).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the server runs in a task spawned on it).
    pub async fn start() -> std::io::Result<TestAuthServer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a server on this address (for tests that stop a server and
    /// start another on the same port), with the default setup.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound, or (unlikely) the signing keys
    /// cannot be made (the system random number generator failed).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<TestAuthServer> {
        let keys = KeySet::first()?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(format!("http://{addr}"), keys));
        {
            let mut state = shared.lock();
            for client in [
                ClientSpec::new(RS_CLIENT_ID, RS_CLIENT_SECRET).can_introspect(true),
                ClientSpec::new(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
                    .grants(&["password", "client_credentials"])
                    .scopes("read write admin introspection"),
            ] {
                state.clients.insert(client.id.clone(), client);
            }
            state
                .users
                .insert(TEST_USERNAME.to_owned(), TEST_PASSWORD.to_owned());
        }
        let serving = Serving::spawn(listener, Arc::clone(&shared));
        Ok(TestAuthServer {
            inner: Arc::new(Inner {
                addr,
                shared,
                serving: Mutex::new(Some(serving)),
            }),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.inner.shared.base_url.clone()
    }

    /// The issuer: the base URL unless changed with [`set_issuer`](Self::set_issuer).
    pub fn issuer(&self) -> String {
        let state = self.inner.shared.lock();
        self.inner.shared.issuer(&state)
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.inner.shared.base_url, server::TOKEN_PATH)
    }

    /// The introspection endpoint.
    pub fn introspection_url(&self) -> String {
        format!("{}{}", self.inner.shared.base_url, server::INTROSPECTION_PATH)
    }

    /// The revocation endpoint.
    pub fn revocation_url(&self) -> String {
        format!("{}{}", self.inner.shared.base_url, server::REVOCATION_PATH)
    }

    /// The RFC 8414 metadata document.
    pub fn metadata_url(&self) -> String {
        format!("{}{}", self.inner.shared.base_url, server::METADATA_PATH)
    }

    /// `GET /oauth2/jwks`: the RFC 7517 JWK Set of every current public key,
    /// each with `kid`, `"use":"sig"` and `alg`: the RSA key (`kty` `RSA`,
    /// `n`, `e`, `alg` `RS256`, although it signs the `RS384`, `RS512` and
    /// `PS*` tokens too), the P-256 key (`EC`, `crv` `P-256`, `x`, `y`,
    /// `ES256`), the P-384 key (`ES384`) and the Ed25519 key (`OKP`, `crv`
    /// `Ed25519`, `x`, `EdDSA`). Announced as `jwks_uri` in the metadata
    /// documents. Served without `Cache-Control`.
    pub fn jwks_url(&self) -> String {
        format!("{}{}", self.inner.shared.base_url, server::JWKS_PATH)
    }

    /// The OpenID Connect discovery document (the same metadata).
    pub fn openid_configuration_url(&self) -> String {
        format!(
            "{}{}",
            self.inner.shared.base_url,
            server::OPENID_CONFIGURATION_PATH
        )
    }

    /// Stops the server: the listener is closed when this returns (new
    /// connections are refused) and open connections, idle keep-alive ones
    /// and those with a request in flight, are shut down. State and counters
    /// are kept; [`restart`](Self::restart) serves them again.
    pub async fn shutdown(&self) {
        let serving = self.inner.serving().take();
        if let Some(serving) = serving {
            serving.stop().await;
        }
    }

    /// Listens again on the same address with the same state (tokens,
    /// clients, faults, counters), after a [`shutdown`](Self::shutdown) or
    /// while running (which stops first).
    pub async fn restart(&self) -> std::io::Result<()> {
        self.shutdown().await;
        let listener = TcpListener::bind(self.inner.addr).await?;
        let serving = Serving::spawn(listener, Arc::clone(&self.inner.shared));
        let previous = self.inner.serving().replace(serving);
        if let Some(previous) = previous {
            previous.abort();
        }
        Ok(())
    }

    /// Whether the server is serving (not shut down).
    pub fn is_running(&self) -> bool {
        self.inner.serving().is_some()
    }

    /// Spoils every signed introspection answer (RFC 9701) this way from
    /// now on; `None` signs them properly again. The server signs an answer
    /// whenever the request's `Accept` asks for
    /// `application/token-introspection+jwt`, with its current RS256 key.
    pub fn set_signed_answer_fault(&self, fault: Option<SignedAnswerFault>) {
        self.inner.shared.lock().signed_answer_fault = fault;
    }

    /// Registers a client (replacing one with the same id).
    pub fn register_client(&self, client: ClientSpec) {
        self.inner.shared.lock().clients.insert(client.id.clone(), client);
    }

    /// Registers a user for the `password` grant (replacing one with the same name).
    pub fn register_user(&self, username: &str, password: &str) {
        self.inner
            .shared
            .lock()
            .users
            .insert(username.to_owned(), password.to_owned());
    }

    /// Mints a token as described by `spec` and returns it: 32 random bytes
    /// in base64url without padding (43 characters) unless
    /// [`TokenSpec::token_value`] chose it.
    pub fn mint(&self, spec: TokenSpec) -> String {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        let issuer = shared.issuer(&state);
        state.insert_token(spec, unix_now(), issuer)
    }

    /// Mints an active token with these scopes (space separated), expiring in
    /// an hour, for the user `alice` (`sub` and `username`) and the client
    /// `test-client`.
    pub fn mint_token(&self, scopes: &str) -> String {
        self.mint(
            TokenSpec::new()
                .scope(scopes)
                .sub(TEST_USERNAME)
                .username(TEST_USERNAME)
                .client_id(TEST_CLIENT_ID)
                .exp_in(Duration::from_secs(3600)),
        )
    }

    /// Signs `spec` with the server's current key for its algorithm and
    /// returns the compact JWS (`header.payload.signature`, base64url without
    /// padding). `iss` (unless set) is the issuer at this moment, see
    /// [`set_issuer`](Self::set_issuer). The token is not stored: the
    /// introspection endpoint does not know it.
    ///
    /// # Panics
    ///
    /// If `ring` fails to sign, which happens only when the system random
    /// number generator fails (ECDSA nonces, RSA blinding and PSS salts).
    pub fn mint_jwt(&self, spec: JwtSpec) -> String {
        let shared = &self.inner.shared;
        let issuer = {
            let state = shared.lock();
            shared.issuer(&state)
        };
        let keys = shared.keys();
        #[allow(clippy::expect_used)] // a failing system RNG, documented above: not request input
        spec.mint(&keys, &issuer, unix_now_micros())
            .expect("ring failed to sign a test JWT (system random number generator)")
    }

    /// Replaces every signing key by a new one, with new kids (`rsa-2`,
    /// `p256-2`, `p384-2`, `ed25519-2`, then `-3`…): the JWK Set then lists
    /// only the new keys, and tokens are signed with them. Returns the new
    /// RSA kid. The RSA key is the next of the three committed test keys
    /// (they cycle, so the fourth rotation brings the first key back under
    /// a new kid); the EC and Ed25519 keys are new.
    ///
    /// # Panics
    ///
    /// If the system random number generator fails.
    pub fn rotate_keys(&self) -> String {
        let mut keys = self.inner.shared.keys_lock();
        #[allow(clippy::expect_used)] // a failing system RNG, documented above: not request input
        let next = keys
            .rotated()
            .expect("cannot make test signing keys (system random number generator)");
        let kid = next.rsa_kid().to_owned();
        *keys = Arc::new(next);
        kid
    }

    /// The kid of the current key for this algorithm's family (the RSA key
    /// for `RS*` and `PS*`); `None` for `HS256` and `none`, which use no
    /// server key.
    pub fn current_kid(&self, alg: &JwtAlg) -> Option<String> {
        self.inner.shared.keys().kid(alg).map(str::to_owned)
    }

    /// The current RSA public key as an SPKI PEM (`-----BEGIN PUBLIC
    /// KEY-----`, 64 characters a line): what Laravel Passport keeps in
    /// `storage/oauth-public.key`.
    pub fn rsa_public_key_pem(&self) -> String {
        self.inner.shared.keys().rsa_spki_pem()
    }

    /// The current RSA public key as SPKI DER (X.509 `SubjectPublicKeyInfo`).
    pub fn rsa_public_key_der(&self) -> Vec<u8> {
        self.inner.shared.keys().rsa_spki_der()
    }

    /// Revokes a token: the introspection endpoint answers `{"active":false}`.
    pub fn revoke(&self, token: &str) {
        if let Some(t) = self.inner.shared.lock().tokens.get_mut(token) {
            t.revoked = true;
        }
    }

    /// Sets the token's `exp` a minute in the past (and drops
    /// [`TokenSpec::active_even_if_expired`]): the introspection endpoint
    /// answers `{"active":false}`.
    pub fn expire(&self, token: &str) {
        if let Some(t) = self.inner.shared.lock().tokens.get_mut(token) {
            t.exp = Some(unix_now() - 60);
            t.active_even_if_expired = false;
        }
    }

    /// Whether the server currently considers the token active.
    pub fn is_active(&self, token: &str) -> bool {
        self.inner.shared.lock().active_token(token, unix_now()).is_some()
    }

    /// How answers for active tokens are rendered (default [`AnswerShape::Full`]).
    pub fn set_shape(&self, shape: AnswerShape) {
        self.inner.shared.lock().shape = shape;
    }

    /// Applies the fault to every introspection request until
    /// [`clear_fault`](Self::clear_fault).
    pub fn set_fault(&self, fault: Fault) {
        self.inner.shared.lock().fault = Some(ArmedFault {
            fault,
            remaining: None,
        });
    }

    /// Applies the fault to the next `times` introspection requests only
    /// (`0` removes any fault).
    pub fn set_fault_times(&self, fault: Fault, times: usize) {
        self.inner.shared.lock().fault = (times > 0).then_some(ArmedFault {
            fault,
            remaining: Some(times),
        });
    }

    /// Removes the introspection fault.
    pub fn clear_fault(&self) {
        self.inner.shared.lock().fault = None;
    }

    /// Applies the fault to every token request (`None` removes it).
    pub fn set_token_endpoint_fault(&self, fault: Option<Fault>) {
        self.inner.shared.lock().token_fault = fault;
    }

    /// Applies the fault to every JWKS request (`None` removes it), like
    /// [`set_token_endpoint_fault`](Self::set_token_endpoint_fault).
    pub fn set_jwks_fault(&self, fault: Option<Fault>) {
        self.inner.shared.lock().jwks_fault = fault;
    }

    /// The next `n` metadata requests answer `503`.
    pub fn set_metadata_failures(&self, n: usize) {
        self.inner.shared.lock().metadata_failures = n;
    }

    /// The issuer announced in the metadata and put in tokens minted from
    /// now on (tokens minted earlier keep theirs).
    pub fn set_issuer(&self, issuer: &str) {
        self.inner.shared.lock().issuer = Some(issuer.to_owned());
    }

    /// How the introspection endpoint answers missing or bad caller credentials.
    pub fn set_auth_failure(&self, style: AuthFailure) {
        self.inner.shared.lock().auth_failure = style;
    }

    /// Requests that reached the introspection endpoint (including rejected
    /// and faulted ones, and other methods than POST).
    pub fn introspection_calls(&self) -> usize {
        self.inner.shared.introspection_calls.load(Ordering::SeqCst)
    }

    /// Requests that reached the token endpoint.
    pub fn token_calls(&self) -> usize {
        self.inner.shared.token_calls.load(Ordering::SeqCst)
    }

    /// Requests that reached the revocation endpoint.
    pub fn revocation_calls(&self) -> usize {
        self.inner.shared.revocation_calls.load(Ordering::SeqCst)
    }

    /// Requests that reached either metadata endpoint (including failed ones).
    pub fn metadata_calls(&self) -> usize {
        self.inner.shared.metadata_calls.load(Ordering::SeqCst)
    }

    /// Requests that reached the JWKS endpoint (including faulted ones).
    pub fn jwks_calls(&self) -> usize {
        self.inner.shared.jwks_calls.load(Ordering::SeqCst)
    }

    /// The most introspection requests in flight at once since the start or
    /// the last [`reset_counters`](Self::reset_counters).
    pub fn peak_concurrent_introspections(&self) -> usize {
        self.inner.shared.peak()
    }

    /// Introspection requests in flight now (in a `Delay` or `Hang` fault,
    /// for instance).
    pub fn in_flight_introspections(&self) -> usize {
        self.inner.shared.in_flight()
    }

    /// Zeroes the call counters, sets the peak to the requests in flight now
    /// and forgets the last recorded introspection request.
    pub fn reset_counters(&self) {
        self.inner.shared.reset_counters();
    }

    /// The last request that reached the introspection endpoint.
    pub fn last_introspection_request(&self) -> Option<RecordedRequest> {
        self.inner.shared.lock().last_introspection.clone()
    }
}

/// A fresh private key as PKCS #8 PEM, for
/// [`ClientKey::from_pkcs8_pem`](crate::introspection::ClientKey::from_pkcs8_pem) in tests:
/// EC P-256 (`alg` [`JwtAlg::Es256`]), Ed25519 ([`JwtAlg::EdDsa`]), or one of
/// the committed RSA-2048 test keys for any RSA algorithm (`index` 0 to 2
/// picks which; other algorithms ignore it). `None` for the others.
pub fn client_private_key_pem(alg: &JwtAlg, index: usize) -> Option<String> {
    use base64::Engine as _;
    let rng = ring::rand::SystemRandom::new();
    let der = match alg {
        JwtAlg::Es256 => ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .ok()?,
        JwtAlg::EdDsa => ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).ok()?,
        JwtAlg::Rs256 | JwtAlg::Rs384 | JwtAlg::Rs512 | JwtAlg::Ps256 | JwtAlg::Ps384 | JwtAlg::Ps512 => {
            return keys::rsa_pem(index).map(str::to_owned)
        }
        _ => return None,
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Some(pem)
}
