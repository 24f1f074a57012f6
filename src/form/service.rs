//! [`FormBodyToken`]: the service of [`FormBodyTokenLayer`].

use super::FormBodyTokenLayer;
use crate::rejection::JsonBody;

/// The service of [`FormBodyTokenLayer`].
#[derive(Clone)]
pub struct FormBodyToken<S, R = JsonBody> {
    pub(super) inner: S,
    pub(super) layer: FormBodyTokenLayer<R>,
}

impl<S, R> FormBodyToken<S, R> {
    crate::macros::define_inner_service_accessors!();
}

crate::buffered::impl_buffered_service!(FormBodyToken, guard);

#[cfg(test)]
mod tests {
    use tower_layer::Layer;

    use super::*;

    /// The accessors reach the inner service.
    #[test]
    fn accessors() {
        let mut service: FormBodyToken<u8> = FormBodyTokenLayer::new().layer(7);
        *service.get_mut() += 1;
        assert_eq!(*service.get_ref(), 8);
        assert_eq!(service.into_inner(), 8);
    }
}
