//! What a JSON-RPC body asks for: the operations of one message or a batch
//! ([`operations`]), read with visitors that skip everything but `method`
//! and `params.name`.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What one JSON-RPC message asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Operation {
    pub(super) method: Option<Box<str>>,
    /// `params.name`, for `tools/call`.
    pub(super) tool: Option<Box<str>>,
}

/// The operations of a message or a batch; `None` when the body is not one.
pub(super) fn operations(body: &[u8]) -> Option<Vec<Operation>> {
    let parsed: Envelope = serde_json::from_slice(body).ok()?;
    Some(match parsed {
        Envelope::One(operation) => vec![operation],
        Envelope::Batch(operations) => operations,
    })
}

pub(super) enum Envelope {
    One(Operation),
    Batch(Vec<Operation>),
}

impl<'de> de::Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor;
        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message or batch")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Envelope, A::Error> {
                MessageVisitor.visit_map(map).map(Envelope::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope, A::Error> {
                let mut operations = Vec::new();
                while let Some(Message(operation)) = seq.next_element()? {
                    operations.push(operation);
                }
                Ok(Envelope::Batch(operations))
            }
        }
        deserializer.deserialize_any(EnvelopeVisitor)
    }
}

/// One message, as a JSON object only.
struct Message(Operation);

impl<'de> de::Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor).map(Message)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Operation;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Operation, A::Error> {
        let mut method: Option<Box<str>> = None;
        let mut params: Option<Params> = None;
        while let Some(key) = map.next_key::<Box<str>>()? {
            match &*key {
                "method" => {
                    if method.is_some() {
                        return Err(de::Error::duplicate_field("method"));
                    }
                    method = Some(map.next_value()?);
                }
                "params" => {
                    if params.is_some() {
                        return Err(de::Error::duplicate_field("params"));
                    }
                    params = Some(map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let tool = params.and_then(|p| p.name);
        Ok(Operation { method, tool })
    }
}

/// `params`: an object whose `name` (if any) is read, or an array (by-position
/// parameters, which carry no name).
struct Params {
    name: Option<Box<str>>,
}

impl<'de> de::Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON-RPC params (an object or an array)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut name: Option<Box<str>> = None;
                while let Some(key) = map.next_key::<Box<str>>()? {
                    if &*key == "name" {
                        if name.is_some() {
                            return Err(de::Error::duplicate_field("name"));
                        }
                        name = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Params { name })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Params { name: None })
            }
        }
        deserializer.deserialize_any(ParamsVisitor)
    }
}
