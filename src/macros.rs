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
