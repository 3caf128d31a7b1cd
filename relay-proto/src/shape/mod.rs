//! The shape of a serde type: what its encoding carries, field by field, recursively, learnt
//! from its `Deserialize` impl alone.
//!
//! A contract's fingerprints hash the shapes of every method's arguments and result, so two
//! programs whose types disagree in any way the wire would notice (a field added, removed,
//! renamed, reordered or retyped; a variant added or moved; `u32` against `i32`) refuse each
//! other when a channel opens, instead of decoding garbage.
//!
//! [`Shape::of`] traces a type by running its `Deserialize` impl against a deserializer that
//! records every request the impl makes (`deserialize_struct("Rec", ["x", "y"])`,
//! `deserialize_u32`, ...) and answers each with a sample value. Enums are traced once per
//! variant, over as many passes as needed; a recursive type is unfolded twice and
//! then cut at an `Option`, a sequence, a map or an enum variant, where the shape records
//! [`Shape::Recursive`]. Because the shape comes from what serde actually does, attributes like
//! `#[serde(rename)]`, `skip` or `with` count exactly as they change the wire.
//!
//! ```
//! use relay_proto::shape::Shape;
//!
//! #[derive(serde::Deserialize)]
//! struct Rec { x: u32, y: Option<String> }
//!
//! let shape = Shape::of::<Rec>()?;
//! assert_eq!(shape.to_string(), "Rec{x:u32,y:Option<String>}");
//! # Ok::<(), relay_proto::shape::ShapeError>(())
//! ```

mod trace;

use std::fmt;

pub use trace::ShapeError;

use crate::fnv::{FNV_OFFSET, Fnv};

/// A primitive serde type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Primitive {
    Bool,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    /// A string (`&str` or `String`).
    String,
    /// A byte string (`serde_bytes` and the like; a plain `Vec<u8>` is a sequence of `u8`).
    Bytes,
    /// `()`.
    Unit,
}

impl Primitive {
    fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::I8 => "i8",
            Self::I16 => "i16",
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::I128 => "i128",
            Self::U8 => "u8",
            Self::U16 => "u16",
            Self::U32 => "u32",
            Self::U64 => "u64",
            Self::U128 => "u128",
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::Char => "char",
            Self::String => "String",
            Self::Bytes => "bytes",
            Self::Unit => "()",
        }
    }
}

/// The shape of a serde type, as its `Deserialize` impl reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A primitive.
    Primitive(Primitive),
    /// `Option<T>`.
    Option(Box<Shape>),
    /// A sequence (`Vec<T>`, sets, ...).
    Seq(Box<Shape>),
    /// A map.
    Map(Box<Shape>, Box<Shape>),
    /// A tuple or fixed-size array.
    Tuple(Vec<Shape>),
    /// `struct Name;`
    UnitStruct(&'static str),
    /// `struct Name(T);`
    Newtype(&'static str, Box<Shape>),
    /// `struct Name(A, B, ...);`
    TupleStruct(&'static str, Vec<Shape>),
    /// `struct Name { a: A, ... }`
    Struct(&'static str, Vec<(&'static str, Shape)>),
    /// `enum Name { ... }`: every variant, in the order of their wire indexes.
    Enum(&'static str, Vec<(&'static str, Variant)>),
    /// The container of this name that encloses this point: a recursive type, cut here.
    Recursive(&'static str),
    /// A type the tracer could not follow (its `Deserialize` impl needs a self-describing format,
    /// or refuses every sample value): known only by its Rust type name.
    Opaque(&'static str),
}

/// One variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variant {
    /// `A`
    Unit,
    /// `A(T)`
    Newtype(Shape),
    /// `A(T, U, ...)`
    Tuple(Vec<Shape>),
    /// `A { x: T, ... }`
    Struct(Vec<(&'static str, Shape)>),
    /// A variant that leads back to an enclosing container of this name, cut here.
    Recursive(&'static str),
}

/// A named type within a shape, with the fingerprint of its own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedType {
    /// Its serde name (the Rust name unless renamed).
    pub name: &'static str,
    /// [`fingerprint`] of its shape.
    pub fingerprint: u64,
    /// Its shape one level deep: its fields' and variants' types, named but not expanded.
    pub outline: String,
}

impl Shape {
    /// Traces the shape of `T`.
    pub fn of<T: serde::de::DeserializeOwned>() -> Result<Self, ShapeError> {
        trace::trace::<T>()
    }

    /// Traces the shape of `T`, or gives [`Shape::Opaque`] with its Rust type name if it cannot
    /// be traced.
    pub fn of_or_opaque<T: serde::de::DeserializeOwned>() -> Self {
        Self::of::<T>().unwrap_or(Self::Opaque(std::any::type_name::<T>()))
    }

    /// The container's name, if this is a struct or an enum.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Self::UnitStruct(n)
            | Self::Newtype(n, _)
            | Self::TupleStruct(n, _)
            | Self::Struct(n, _)
            | Self::Enum(n, _) => Some(n),
            _ => None,
        }
    }

    /// Every named type within this shape, itself included, innermost first (a type comes after
    /// every type it contains); a type reached twice with the same shape is listed once.
    pub fn named_types(&self) -> Vec<NamedType> {
        let mut out = Vec::new();
        self.collect_named(&mut out);
        out
    }

    fn collect_named(&self, out: &mut Vec<NamedType>) {
        self.for_each_child(&mut |child| child.collect_named(out));
        if let Some(name) = self.name() {
            let fingerprint = fingerprint(self);
            if !out.iter().any(|t| t.name == name && t.fingerprint == fingerprint) {
                let mut outline = String::new();
                self.write(&mut outline, 1).expect("writing to a String");
                out.push(NamedType { name, fingerprint, outline });
            }
        }
    }

    fn for_each_child(&self, f: &mut impl FnMut(&Shape)) {
        match self {
            Self::Primitive(_) | Self::UnitStruct(_) | Self::Recursive(_) | Self::Opaque(_) => {}
            Self::Option(s) | Self::Seq(s) | Self::Newtype(_, s) => f(s),
            Self::Map(k, v) => {
                f(k);
                f(v);
            }
            Self::Tuple(items) | Self::TupleStruct(_, items) => items.iter().for_each(f),
            Self::Struct(_, fields) => fields.iter().for_each(|(_, s)| f(s)),
            Self::Enum(_, variants) => {
                for (_, variant) in variants {
                    match variant {
                        Variant::Unit | Variant::Recursive(_) => {}
                        Variant::Newtype(s) => f(s),
                        Variant::Tuple(items) => items.iter().for_each(&mut *f),
                        Variant::Struct(fields) => fields.iter().for_each(|(_, s)| f(s)),
                    }
                }
            }
        }
    }

    /// Writes the shape, expanding named types `depth` levels deep (`usize::MAX`: all).
    fn write(&self, w: &mut impl fmt::Write, depth: usize) -> fmt::Result {
        if depth == 0
            && let Some(name) = self.name()
        {
            return w.write_str(name);
        }
        let inner = depth.saturating_sub(1);
        match self {
            Self::Primitive(p) => w.write_str(p.name()),
            Self::Option(s) => {
                w.write_str("Option<")?;
                s.write(w, depth)?;
                w.write_char('>')
            }
            Self::Seq(s) => {
                w.write_char('[')?;
                s.write(w, depth)?;
                w.write_char(']')
            }
            Self::Map(k, v) => {
                w.write_str("Map<")?;
                k.write(w, depth)?;
                w.write_char(',')?;
                v.write(w, depth)?;
                w.write_char('>')
            }
            Self::Tuple(items) => write_tuple(w, items, depth),
            Self::UnitStruct(name) => w.write_str(name),
            Self::Newtype(name, s) => {
                w.write_str(name)?;
                w.write_char('(')?;
                s.write(w, inner)?;
                w.write_char(')')
            }
            Self::TupleStruct(name, items) => {
                w.write_str(name)?;
                write_tuple(w, items, inner)
            }
            Self::Struct(name, fields) => {
                w.write_str(name)?;
                write_fields(w, fields, inner)
            }
            Self::Enum(name, variants) => {
                write!(w, "enum {name}{{")?;
                for (i, (variant, shape)) in variants.iter().enumerate() {
                    if i > 0 {
                        w.write_char(',')?;
                    }
                    w.write_str(variant)?;
                    match shape {
                        Variant::Unit => {}
                        Variant::Newtype(s) => {
                            w.write_char('(')?;
                            s.write(w, inner)?;
                            w.write_char(')')?;
                        }
                        Variant::Tuple(items) => write_tuple(w, items, inner)?,
                        Variant::Struct(fields) => write_fields(w, fields, inner)?,
                        Variant::Recursive(name) => write!(w, "(^{name})")?,
                    }
                }
                w.write_char('}')
            }
            Self::Recursive(name) => write!(w, "^{name}"),
            Self::Opaque(type_name) => write!(w, "?{type_name}"),
        }
    }
}

fn write_tuple(w: &mut impl fmt::Write, items: &[Shape], depth: usize) -> fmt::Result {
    w.write_char('(')?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            w.write_char(',')?;
        }
        item.write(w, depth)?;
    }
    if items.len() == 1 {
        w.write_char(',')?;
    }
    w.write_char(')')
}

fn write_fields(w: &mut impl fmt::Write, fields: &[(&'static str, Shape)], depth: usize) -> fmt::Result {
    w.write_char('{')?;
    for (i, (name, shape)) in fields.iter().enumerate() {
        if i > 0 {
            w.write_char(',')?;
        }
        w.write_str(name)?;
        w.write_char(':')?;
        shape.write(w, depth)?;
    }
    w.write_char('}')
}

/// The shape in full: `Rec{x:u32,y:Option<String>}`, `[u8]`, `enum E{A,B(i64)}`; the text
/// [`fingerprint`] hashes.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, usize::MAX)
    }
}

/// A stable 64-bit hash (FNV-1a) of the shape's full text, its [`Display`](fmt::Display).
pub fn fingerprint(shape: &Shape) -> u64 {
    let mut hasher = Fnv(FNV_OFFSET);
    shape.write(&mut hasher, usize::MAX).expect("hashing never fails");
    hasher.0
}

#[cfg(test)]
mod tests;
