//! [`FormBodyToken`]: the service of [`FormBodyTokenLayer`].

use super::FormBodyTokenLayer;

crate::macros::define_guard_service! {
    /// The service of [`FormBodyTokenLayer`].
    pub struct FormBodyToken for FormBodyTokenLayer(guard);
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
