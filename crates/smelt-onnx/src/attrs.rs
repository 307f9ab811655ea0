//! Typed access to a node's attributes, with errors that name the node, the op and
//! the attribute, and a check that every attribute the model sets was understood.

use crate::proto::{attribute_proto::AttributeType, AttributeProto, TensorProto};
use crate::OnnxError;
use std::cell::Cell;

/// A node's attributes. Each getter marks the attribute as read; [`NodeAttrs::finish`]
/// then refuses attributes nobody read, because an attribute Smelt does not know
/// may change what the node computes.
pub(crate) struct NodeAttrs<'a> {
    node: &'a str,
    op: &'a str,
    attrs: &'a [AttributeProto],
    read: Vec<Cell<bool>>,
}

impl<'a> NodeAttrs<'a> {
    pub fn new(node: &'a str, op: &'a str, attrs: &'a [AttributeProto]) -> Self {
        NodeAttrs { node, op, attrs, read: attrs.iter().map(|_| Cell::new(false)).collect() }
    }

    /// An error about attribute `attribute` of this node.
    pub fn error(&self, attribute: &str, message: impl Into<String>) -> OnnxError {
        OnnxError::BadAttribute {
            node: self.node.to_string(),
            op: self.op.to_string(),
            attribute: attribute.to_string(),
            message: message.into(),
        }
    }

    /// The attribute called `name`, checked to have type `want`. Models written
    /// before the IR had a type field leave it UNDEFINED; those are taken on trust.
    fn get(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>, OnnxError> {
        let Some(i) = self.attrs.iter().position(|a| a.name == name) else {
            return Ok(None);
        };
        self.read[i].set(true);
        let attr = &self.attrs[i];
        if attr.r#type != want as i32 && attr.r#type != AttributeType::Undefined as i32 {
            let found = AttributeType::try_from(attr.r#type).map(|t| t.as_str_name()).unwrap_or("an unknown type");
            return Err(self.error(name, format!("must be {}, found {found}", want.as_str_name())));
        }
        Ok(Some(attr))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, OnnxError> {
        Ok(self.get(name, AttributeType::Int)?.map(|a| a.i))
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn required_int(&self, name: &str) -> Result<i64, OnnxError> {
        self.int(name)?.ok_or_else(|| self.error(name, "is required"))
    }

    /// A 0/1 flag.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, OnnxError> {
        match self.int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.error(name, format!("must be 0 or 1, found {v}"))),
        }
    }

    /// A non-negative integer (sizes, counts).
    pub fn usize(&self, name: &str) -> Result<Option<usize>, OnnxError> {
        match self.int(name)? {
            None => Ok(None),
            Some(v) => {
                usize::try_from(v).map(Some).map_err(|_| self.error(name, format!("must not be negative, found {v}")))
            }
        }
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>, OnnxError> {
        Ok(self.get(name, AttributeType::Float)?.map(|a| a.f))
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn ints(&self, name: &str) -> Result<Option<&'a [i64]>, OnnxError> {
        Ok(self.get(name, AttributeType::Ints)?.map(|a| a.ints.as_slice()))
    }

    pub fn required_ints(&self, name: &str) -> Result<&'a [i64], OnnxError> {
        self.ints(name)?.ok_or_else(|| self.error(name, "is required"))
    }

    /// A list of non-negative integers (strides, pads, kernel sizes, permutations).
    pub fn usizes(&self, name: &str) -> Result<Option<Vec<usize>>, OnnxError> {
        match self.ints(name)? {
            None => Ok(None),
            Some(v) => v
                .iter()
                .map(|&x| usize::try_from(x))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
                .map_err(|_| self.error(name, format!("must not hold negative values, found {v:?}"))),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<&'a [f32]>, OnnxError> {
        Ok(self.get(name, AttributeType::Floats)?.map(|a| a.floats.as_slice()))
    }

    pub fn string(&self, name: &str) -> Result<Option<&'a str>, OnnxError> {
        match self.get(name, AttributeType::String)? {
            None => Ok(None),
            Some(a) => std::str::from_utf8(&a.s).map(Some).map_err(|_| self.error(name, "is not valid UTF-8")),
        }
    }

    pub fn string_or(&self, name: &str, default: &'a str) -> Result<&'a str, OnnxError> {
        Ok(self.string(name)?.unwrap_or(default))
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, OnnxError> {
        match self.get(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => a.t.as_ref().map(Some).ok_or_else(|| self.error(name, "holds no tensor")),
        }
    }

    /// Marks attributes as understood that do not change inference results
    /// (training-only knobs, accumulation precision hints, random seeds).
    pub fn ignore(&self, names: &[&str]) {
        for (attr, read) in self.attrs.iter().zip(&self.read) {
            if names.contains(&attr.name.as_str()) {
                read.set(true);
            }
        }
    }

    /// Fails on the first attribute no getter asked for.
    pub fn finish(&self) -> Result<(), OnnxError> {
        match self.attrs.iter().zip(&self.read).find(|(_, read)| !read.get()) {
            None => Ok(()),
            Some((attr, _)) => Err(self.error(&attr.name, "is not an attribute of this operator in the model's opset")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
    }

    #[test]
    fn typed_getters_and_defaults() {
        let attrs = [
            int("axis", -1),
            AttributeProto { name: "alpha".into(), r#type: AttributeType::Float as i32, f: 0.5, ..Default::default() },
            AttributeProto {
                name: "perm".into(),
                r#type: AttributeType::Ints as i32,
                ints: vec![1, 0],
                ..Default::default()
            },
            AttributeProto {
                name: "mode".into(),
                r#type: AttributeType::String as i32,
                s: b"CRD".to_vec(),
                ..Default::default()
            },
        ];
        let a = NodeAttrs::new("n", "Op", &attrs);
        assert_eq!(a.int_or("axis", 0).unwrap(), -1);
        assert_eq!(a.int_or("missing", 7).unwrap(), 7);
        assert_eq!(a.float_or("alpha", 1.0).unwrap(), 0.5);
        assert_eq!(a.usizes("perm").unwrap(), Some(vec![1, 0]));
        assert_eq!(a.string("mode").unwrap(), Some("CRD"));
        a.finish().unwrap();
    }

    #[test]
    fn wrong_type_and_unread_attributes_are_errors() {
        let attrs = [int("alpha", 1), int("bogus", 0), int("flag", 2)];
        let a = NodeAttrs::new("n1", "Elu", &attrs);
        let err = a.float("alpha").unwrap_err().to_string();
        assert!(
            err.contains("'n1'") && err.contains("Elu") && err.contains("'alpha'") && err.contains("FLOAT"),
            "{err}"
        );
        assert!(a.flag_or("flag", false).unwrap_err().to_string().contains("0 or 1"));
        let err = a.finish().unwrap_err().to_string();
        assert!(err.contains("'bogus'"), "{err}");
        a.ignore(&["bogus"]);
        a.finish().unwrap();
    }

    #[test]
    fn negative_sizes_are_errors() {
        let attrs = [AttributeProto { name: "pads".into(), r#type: 7, ints: vec![1, -1], ..Default::default() }];
        let a = NodeAttrs::new("n", "Conv", &attrs);
        assert!(a.usizes("pads").unwrap_err().to_string().contains("negative"));
    }
}
