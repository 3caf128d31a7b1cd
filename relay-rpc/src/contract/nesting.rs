//! A deserializer that refuses values nested deeper than a limit.
//!
//! bincode follows a message's nesting on the stack, with no limit of its own, so a frame of a
//! few megabytes holding `Some(Some(Some(...)))` for a recursive argument type would overflow a
//! host's stack and abort the process (and dropping, or printing, so deep a value would too).
//! [`Limited`] wraps a deserializer and counts the levels it goes down (an `Option`'s content, a
//! sequence's or map's elements, a struct's or tuple's fields, an enum's variant, a newtype's
//! content): one more than [`MAX_NESTING`] is an error, which the codec turns into an
//! "undecodable" answer like any other.

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};

/// The deepest a message may nest.
pub(crate) const MAX_NESTING: usize = 256;

/// `D`, with `left` more levels allowed below it.
pub(crate) struct Limited<D> {
    inner: D,
    left: usize,
}

impl<D> Limited<D> {
    pub(crate) fn new(inner: D, left: usize) -> Self {
        Self { inner, left }
    }
}

fn too_deep<E: de::Error>() -> E {
    E::custom(format_args!("the message nests more than {MAX_NESTING} levels deep"))
}

/// `V`, whose nested parts may go `left` more levels down.
struct LimitedVisitor<V> {
    inner: V,
    left: usize,
}

impl<V> LimitedVisitor<V> {
    /// One level further down, or an error.
    fn down<E: de::Error>(&self) -> Result<usize, E> {
        self.left.checked_sub(1).ok_or_else(too_deep)
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(LimitedVisitor { inner: visitor, left: self.left })
        })*
    };
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Limited<D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(name, LimitedVisitor { inner: visitor, left: self.left })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(name, LimitedVisitor { inner: visitor, left: self.left })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(len, LimitedVisitor { inner: visitor, left: self.left })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple_struct(name, len, LimitedVisitor { inner: visitor, left: self.left })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(name, fields, LimitedVisitor { inner: visitor, left: self.left })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(name, variants, LimitedVisitor { inner: visitor, left: self.left })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),*) => {
        $(fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        })*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for LimitedVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>)
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let left = self.down()?;
        self.inner.visit_some(Limited { inner: d, left })
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let left = self.down()?;
        self.inner.visit_newtype_struct(Limited { inner: d, left })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let left = self.down()?;
        self.inner.visit_seq(Limited { inner: seq, left })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let left = self.down()?;
        self.inner.visit_map(Limited { inner: map, left })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let left = self.down()?;
        self.inner.visit_enum(Limited { inner: data, left })
    }
}

/// A seed whose value is read with `left` levels allowed.
struct LimitedSeed<S> {
    inner: S,
    left: usize,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for LimitedSeed<S> {
    type Value = S::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Limited { inner: d, left: self.left })
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Limited<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(LimitedSeed { inner: seed, left: self.left })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Limited<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(LimitedSeed { inner: seed, left: self.left })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(LimitedSeed { inner: seed, left: self.left })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Limited<A> {
    type Error = A::Error;
    type Variant = Limited<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(LimitedSeed { inner: seed, left: self.left })?;
        Ok((value, Limited { inner: variant, left: self.left }))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Limited<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(LimitedSeed { inner: seed, left: self.left })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(len, LimitedVisitor { inner: visitor, left: self.left })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(fields, LimitedVisitor { inner: visitor, left: self.left })
    }
}

#[cfg(test)]
mod tests {
    use bincode::Options as _;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct List {
        head: u32,
        tail: Option<Box<List>>,
    }

    fn decode<T: de::DeserializeOwned>(bytes: &[u8], left: usize) -> bincode::Result<T> {
        let options = bincode::DefaultOptions::new();
        T::deserialize(Limited::new(&mut bincode::Deserializer::from_slice(bytes, options), left))
    }

    /// A list `len` long, as bincode encodes it (without building it: dropping one that long
    /// would overflow the stack too).
    fn encoded_list(len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(2 * len + 1);
        for _ in 0..len {
            bytes.extend_from_slice(&[7, 1]); // head 7, then Some
        }
        bytes[2 * len - 1] = 0; // the last tail is None
        bytes
    }

    #[test]
    fn values_within_the_limit_decode_as_without_it() {
        let list = List { head: 1, tail: Some(Box::new(List { head: 2, tail: None })) };
        let bytes = bincode::DefaultOptions::new().serialize(&list).unwrap();
        assert_eq!(decode::<List>(&bytes, MAX_NESTING).unwrap(), list);
        let nested: Vec<Vec<(u8, String)>> = vec![vec![(1, "a".into())], vec![]];
        let bytes = bincode::DefaultOptions::new().serialize(&nested).unwrap();
        assert_eq!(decode::<Vec<Vec<(u8, String)>>>(&bytes, MAX_NESTING).unwrap(), nested);
        // Each list node is two levels: the struct, then the `Option`.
        assert!(decode::<List>(&encoded_list(MAX_NESTING / 2 - 1), MAX_NESTING).is_ok());
    }

    #[test]
    fn deeper_values_are_an_error_not_a_stack_overflow() {
        for len in [MAX_NESTING, 100_000, 1_000_000] {
            let err = decode::<List>(&encoded_list(len), MAX_NESTING).unwrap_err();
            assert!(err.to_string().contains("nests more than"), "{err}");
        }
    }
}
