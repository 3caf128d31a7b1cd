//! The serde accessors a traced impl reads compound values through: a sequence's, tuple's or
//! struct's elements, a map's entry, an enum's variant.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::{Error, ShapeError, Tracer, VariantNode};

/// The elements of a sequence, tuple or struct: `len` of them, at indexes `0..len`.
pub(super) struct Elements<'t, 'a> {
    tracer: &'t mut Tracer<'a>,
    next: u32,
    len: u32,
}

impl<'t, 'a> Elements<'t, 'a> {
    pub(super) fn new(tracer: &'t mut Tracer<'a>, len: u32) -> Self {
        Self { tracer, next: 0, len }
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if self.next == self.len {
            return Ok(None);
        }
        self.next += 1;
        seed.deserialize(self.tracer.at(self.next - 1)).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.len - self.next) as usize)
    }
}

/// One entry (key at index 0, value at 1), or none where the map is cut.
pub(super) struct Entries<'t, 'a> {
    pub(super) tracer: &'t mut Tracer<'a>,
    pub(super) left: bool,
}

impl<'de> de::MapAccess<'de> for Entries<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if !std::mem::take(&mut self.left) {
            return Ok(None);
        }
        seed.deserialize(self.tracer.at(0)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(self.tracer.at(1))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.left))
    }
}

/// The variant a pass takes at an enum: its content is at the enum's path plus its index.
pub(super) struct Choice<'t, 'a> {
    pub(super) tracer: &'t mut Tracer<'a>,
    pub(super) variant: u32,
}

impl<'de, 't, 'a> de::EnumAccess<'de> for Choice<'t, 'a> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let index: de::value::U32Deserializer<Error> = self.variant.into_deserializer();
        Ok((seed.deserialize(index)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for Choice<'_, '_> {
    type Error = Error;

    fn unit_variant(mut self) -> Result<(), Error> {
        self.record(VariantNode::Unit);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(mut self, seed: T) -> Result<T::Value, Error> {
        self.record(VariantNode::Newtype);
        seed.deserialize(self.tracer.at(self.variant))
    }

    fn tuple_variant<V: Visitor<'de>>(mut self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let len = u32::try_from(len).map_err(|_| self.tracer.state.fatal(ShapeError::TooLarge))?;
        self.record(VariantNode::Tuple(len));
        visitor.visit_seq(Elements::new(&mut self.tracer.at(self.variant), len))
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let len = u32::try_from(fields.len()).map_err(|_| self.tracer.state.fatal(ShapeError::TooLarge))?;
        self.record(VariantNode::Struct(fields));
        visitor.visit_seq(Elements::new(&mut self.tracer.at(self.variant), len))
    }
}

impl Choice<'_, '_> {
    fn record(&mut self, variant: VariantNode) {
        let tracer = &mut *self.tracer;
        tracer.state.record_variant(&tracer.path, self.variant, variant);
    }
}
