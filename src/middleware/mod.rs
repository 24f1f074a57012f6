//! The tower middleware: [`IntrospectionLayer`], [`Introspection`] and
//! [`ResponseFuture`], in tower-http's shape.

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::IntrospectionLayer;
pub use self::service::Introspection;

pub(crate) use self::layer::LayerRealm;
