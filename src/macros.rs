//! Macros the crate's services and builders share.

/// The accessors of a service wrapping `inner: S`, as tower-http's services
/// have them.
macro_rules! define_inner_service_accessors {
    () => {
        /// Gets a reference to the wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// Gets a mutable reference to the wrapped service.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the wrapped service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use define_inner_service_accessors;

/// Builder setters that only store their argument, one line each:
///
/// ```ignore
/// setters! {
///     /// Longest reuse of an answer.
///     pub fn max_ttl(ttl: Duration) => cache.max_ttl = ttl;
/// }
/// ```
///
/// is `pub fn max_ttl(mut self, ttl: Duration) -> Self` setting
/// `self.cache.max_ttl` and returning `self`, with its docs. Setters that
/// check or combine their arguments are written out.
macro_rules! setters {
    ($(
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),+) => $($field:ident).+ = $value:expr;
    )*) => {
        $(
            $(#[$attr])*
            $vis fn $name(mut self, $($arg: $ty),+) -> Self {
                self.$($field).+ = $value;
                self
            }
        )*
    };
}

pub(crate) use setters;

/// The service of a guard layer that holds its settings (in the named
/// field) and a rejection body `R` ([`RequireScope`], [`JsonRpcScopes`],
/// [`FormBodyTokenLayer`]): the service wrapping `inner: S` beside a copy
/// of the layer, its accessors, the layer's [`Layer`] impl and its
/// `rejection_body` setter.
///
/// [`RequireScope`]: crate::scope::RequireScope
/// [`JsonRpcScopes`]: crate::jsonrpc::JsonRpcScopes
/// [`FormBodyTokenLayer`]: crate::form::FormBodyTokenLayer
/// [`Layer`]: tower_layer::Layer
macro_rules! define_guard_service {
    ($(#[$attr:meta])* pub struct $service:ident for $layer:ident($settings:ident);) => {
        $(#[$attr])*
        #[derive(Clone)]
        pub struct $service<S, R = crate::rejection::JsonBody> {
            pub(super) inner: S,
            pub(super) layer: $layer<R>,
        }

        impl<S, R> $service<S, R> {
            crate::macros::define_inner_service_accessors!();
        }

        impl<R> $layer<R> {
            /// Replaces the body of this layer's refusals; see
            /// [`RejectionBody`](crate::middleware::RejectionBody). Pass the
            /// one given to
            /// [`IntrospectionLayer::rejection_body`](crate::IntrospectionLayer::rejection_body),
            /// so that every refusal reads alike.
            pub fn rejection_body<R2>(self, body: R2) -> $layer<R2> {
                $layer {
                    $settings: self.$settings,
                    body,
                }
            }
        }

        impl<S, R: Clone> tower_layer::Layer<S> for $layer<R> {
            type Service = $service<S, R>;

            fn layer(&self, inner: S) -> Self::Service {
                $service {
                    inner,
                    layer: self.clone(),
                }
            }
        }
    };
}

pub(crate) use define_guard_service;
