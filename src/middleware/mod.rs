//! The tower middleware: [`IntrospectionLayer`], [`Introspection`] and
//! [`ResponseFuture`], in tower-http's shape, and how its refusals are
//! answered ([`RejectionBody`], [`JsonBody`] by default, in the realm
//! [`DEFAULT_REALM`] unless the layer names another).

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::IntrospectionLayer;
pub use self::service::Introspection;
pub use crate::error::DEFAULT_REALM;
pub use crate::rejection::{JsonBody, RejectionBody};

pub(crate) use self::layer::LayerRealm;
