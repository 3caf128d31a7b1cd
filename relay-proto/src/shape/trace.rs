//! The tracer: a serde `Deserializer` that records what a `Deserialize` impl asks for.
//!
//! One pass runs the impl once and records a node per point of the type, keyed by its path (the
//! field, element or variant indexes that lead there from the top). A pass sees one variant of
//! each enum, so passes repeat until every variant everywhere has been seen: at each enum a
//! pass takes the first variant whose part of the type is not fully recorded yet. A pass that
//! meets a container while two of the same name already enclose it, with an `Option`, sequence,
//! map or enum variant between them, fails and marks that innermost point as cut; later passes
//! take `None`, an empty sequence or map, or another variant there, and the shape records
//! [`Shape::Recursive`]. (Two levels, not one, so that `W<W<T>>` of a generic `W` is not taken
//! for recursion.) A pass whose impl refuses a sample value is repeated with other samples
//! (`1` rather than `0` for `NonZeroU32`, 16 bytes for a binary UUID, ...).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

mod access;

use serde::de::{self, Visitor};

use access::{Choice, Elements, Entries};

use super::{Primitive, Shape, Variant};

/// How many times a container may enclose itself before the tracer cuts the recursion.
const MAX_UNFOLD: usize = 2;
/// The deepest nesting followed.
const MAX_DEPTH: usize = 256;
/// The most points a shape may have.
const MAX_NODES: usize = 100_000;
/// The most passes a trace may take.
const MAX_PASSES: usize = 10_000;
/// How many sets of sample values are tried.
const SAMPLE_SETS: usize = 3;

/// Why a type's shape could not be traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// The type's `Deserialize` impl needs a self-describing format (`deserialize_any`:
    /// untagged or internally tagged enums, `flatten`, `serde_json::Value`), which the relay's
    /// binary encoding cannot carry either.
    #[error("the type needs a self-describing format ({0})")]
    SelfDescribing(&'static str),
    /// The type's `Deserialize` impl refused every sample value the tracer offered.
    #[error("the type refused every sample value: {0}")]
    Refused(String),
    /// The type nests deeper than the tracer follows, without an `Option`, sequence, map or
    /// enum at which to cut it.
    #[error("the type nests more than {MAX_DEPTH} levels deep")]
    TooDeep,
    /// The type has more points than a shape may have, or needs more passes to trace.
    #[error("the type is too large to trace")]
    TooLarge,
    /// The type has no finite value: every way down leads back to itself.
    #[error("the type `{0}` has no finite value")]
    Infinite(&'static str),
}

pub(super) fn trace<T: de::DeserializeOwned>() -> Result<Shape, ShapeError> {
    let mut state = State::default();
    for _ in 0..MAX_PASSES {
        state.stack.clear();
        state.failure = None;
        let result = T::deserialize(Tracer { state: &mut state, path: Vec::new() });
        match (result, state.failure.take()) {
            (Ok(_), _) if state.complete(&[]) => return state.build(&[], 0),
            (Ok(_), _) => {}
            (Err(_), Some(Failure::Cut(point, name))) => {
                let fresh = match point {
                    Point::At(path) => state.cuts.insert(path, name).is_none(),
                    Point::Variant(path, v) => state.cut_variants.insert((path, v), name).is_none(),
                };
                if !fresh {
                    return Err(ShapeError::Infinite(name));
                }
            }
            (Err(_), Some(Failure::Fatal(e))) => return Err(e),
            (Err(e), None) => {
                state.samples += 1;
                if state.samples == SAMPLE_SETS {
                    return Err(ShapeError::Refused(e.0));
                }
            }
        }
    }
    Err(ShapeError::TooLarge)
}

type Path = Vec<u32>;

fn child(path: &[u32], index: u32) -> Path {
    let mut child = Vec::with_capacity(path.len() + 1);
    child.extend_from_slice(path);
    child.push(index);
    child
}

/// What a pass recorded at one point.
#[derive(Debug)]
enum Node {
    Primitive(Primitive),
    Option,
    Seq,
    Map,
    Tuple(u32),
    UnitStruct(&'static str),
    Newtype(&'static str),
    TupleStruct(&'static str, u32),
    Struct(&'static str, &'static [&'static str]),
    Enum(&'static str, &'static [&'static str], BTreeMap<u32, VariantNode>),
}

#[derive(Debug, Clone, Copy)]
enum VariantNode {
    Unit,
    Newtype,
    Tuple(u32),
    Struct(&'static [&'static str]),
}

/// A point where a recursion can be cut.
#[derive(Debug, Clone)]
enum Point {
    /// An `Option`, sequence or map.
    At(Path),
    /// A variant of the enum at the path.
    Variant(Path, u32),
}

#[derive(Debug)]
enum Frame {
    Named(&'static str),
    Cuttable(Point),
}

/// The innermost point of `frames` where a recursion can be cut.
fn innermost_cut(frames: &[Frame]) -> Option<Point> {
    frames.iter().rev().find_map(|f| match f {
        Frame::Cuttable(point) => Some(point.clone()),
        Frame::Named(_) => None,
    })
}

/// Why a pass stopped, beyond what serde's error says.
enum Failure {
    /// Recursion of the named container: cut at the point.
    Cut(Point, &'static str),
    /// Tracing cannot succeed.
    Fatal(ShapeError),
}

#[derive(Default)]
struct State {
    nodes: HashMap<Path, Node>,
    cuts: HashMap<Path, &'static str>,
    cut_variants: HashMap<(Path, u32), &'static str>,
    /// Points known to be fully recorded (it only ever grows).
    done: HashSet<Path>,
    stack: Vec<Frame>,
    failure: Option<Failure>,
    samples: usize,
}

impl State {
    fn record(&mut self, path: &[u32], node: Node) -> Result<(), Error> {
        if !self.nodes.contains_key(path) {
            if self.nodes.len() >= MAX_NODES {
                return Err(self.fatal(ShapeError::TooLarge));
            }
            self.nodes.insert(path.to_vec(), node);
        }
        Ok(())
    }

    fn record_variant(&mut self, path: &[u32], v: u32, variant: VariantNode) {
        if let Some(Node::Enum(_, _, seen)) = self.nodes.get_mut(path) {
            seen.entry(v).or_insert(variant);
        }
    }

    fn fatal(&mut self, error: ShapeError) -> Error {
        let message = error.to_string();
        self.failure = Some(Failure::Fatal(error));
        Error(message)
    }

    /// Enters the container `name`: refuses to go deeper than [`MAX_DEPTH`], and cuts a
    /// recursion (see the module's doc).
    fn enter(&mut self, name: &'static str) -> Result<(), Error> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.fatal(ShapeError::TooDeep));
        }
        let enclosing: Vec<usize> =
            (0..self.stack.len()).filter(|&i| matches!(self.stack[i], Frame::Named(n) if n == name)).collect();
        if enclosing.len() >= MAX_UNFOLD {
            let last = enclosing[enclosing.len() - 1];
            if let Some(point) = innermost_cut(&self.stack[last..]) {
                self.failure = Some(Failure::Cut(point, name));
                return Err(Error(format!("`{name}` is recursive")));
            }
        }
        self.stack.push(Frame::Named(name));
        Ok(())
    }

    /// The variant to take at the enum at `path`: the first not fully recorded, else the first
    /// not cut.
    fn choose_variant(&mut self, path: &[u32], count: u32, name: &'static str) -> Result<u32, Error> {
        let cut = |s: &Self, v: u32| s.cut_variants.contains_key(&(path.to_vec(), v));
        if let Some(v) = (0..count).find(|&v| !cut(self, v) && !self.variant_complete(path, v)) {
            return Ok(v);
        }
        if let Some(v) = (0..count).find(|&v| !cut(self, v)) {
            return Ok(v);
        }
        // Every variant leads back: cut further up, if anything up there can be cut.
        self.failure = Some(match innermost_cut(&self.stack) {
            Some(point) => Failure::Cut(point, name),
            None => Failure::Fatal(ShapeError::Infinite(name)),
        });
        Err(Error(format!("every variant of `{name}` is recursive")))
    }

    fn variant_complete(&mut self, path: &[u32], v: u32) -> bool {
        let Some(Node::Enum(_, _, seen)) = self.nodes.get(path) else { return false };
        match seen.get(&v).copied() {
            None => false,
            Some(VariantNode::Unit) => true,
            Some(VariantNode::Newtype) => self.complete(&child(path, v)),
            Some(VariantNode::Tuple(n)) => self.children_complete(&child(path, v), n),
            Some(VariantNode::Struct(fields)) => self.children_complete(&child(path, v), fields.len() as u32),
        }
    }

    fn children_complete(&mut self, path: &[u32], count: u32) -> bool {
        (0..count).all(|i| self.complete(&child(path, i)))
    }

    /// Whether everything at and below `path` is recorded.
    fn complete(&mut self, path: &[u32]) -> bool {
        if self.done.contains(path) {
            return true;
        }
        let complete = match self.nodes.get(path) {
            None => false,
            Some(Node::Primitive(_) | Node::UnitStruct(_)) => true,
            Some(Node::Option | Node::Seq) => self.cuts.contains_key(path) || self.complete(&child(path, 0)),
            Some(Node::Map) => self.cuts.contains_key(path) || self.children_complete(path, 2),
            Some(Node::Newtype(_)) => self.complete(&child(path, 0)),
            Some(&Node::Tuple(n) | &Node::TupleStruct(_, n)) => self.children_complete(path, n),
            Some(Node::Struct(_, fields)) => {
                let n = fields.len() as u32;
                self.children_complete(path, n)
            }
            Some(Node::Enum(_, variants, _)) => {
                let n = variants.len() as u32;
                (0..n).all(|v| self.cut_variants.contains_key(&(path.to_vec(), v)) || self.variant_complete(path, v))
            }
        };
        if complete {
            self.done.insert(path.to_vec());
        }
        complete
    }

    /// The shape recorded at `path`, once [`complete`](Self::complete).
    fn build(&self, path: &[u32], depth: usize) -> Result<Shape, ShapeError> {
        if depth > 4 * MAX_DEPTH {
            return Err(ShapeError::TooDeep);
        }
        let at = |i: u32| self.build(&child(path, i), depth + 1);
        let cut = self.cuts.get(path).map(|name| Box::new(Shape::Recursive(name)));
        let node = self.nodes.get(path).ok_or(ShapeError::TooLarge)?;
        Ok(match node {
            Node::Primitive(p) => Shape::Primitive(*p),
            Node::Option => Shape::Option(match cut {
                Some(cut) => cut,
                None => Box::new(at(0)?),
            }),
            Node::Seq => Shape::Seq(match cut {
                Some(cut) => cut,
                None => Box::new(at(0)?),
            }),
            Node::Map => match cut {
                Some(cut) => Shape::Map(cut.clone(), cut),
                None => Shape::Map(Box::new(at(0)?), Box::new(at(1)?)),
            },
            Node::Tuple(n) => Shape::Tuple((0..*n).map(at).collect::<Result<_, _>>()?),
            Node::UnitStruct(name) => Shape::UnitStruct(name),
            Node::Newtype(name) => Shape::Newtype(name, Box::new(at(0)?)),
            Node::TupleStruct(name, n) => Shape::TupleStruct(name, (0..*n).map(at).collect::<Result<_, _>>()?),
            Node::Struct(name, fields) => Shape::Struct(name, self.build_fields(path, fields, depth)?),
            Node::Enum(name, variants, seen) => {
                let mut out = Vec::with_capacity(variants.len());
                for (v, variant) in (0u32..).zip(variants.iter()) {
                    let inner = child(path, v);
                    let shape = if let Some(name) = self.cut_variants.get(&(path.to_vec(), v)) {
                        Variant::Recursive(name)
                    } else {
                        match seen.get(&v).ok_or(ShapeError::TooLarge)? {
                            VariantNode::Unit => Variant::Unit,
                            VariantNode::Newtype => Variant::Newtype(self.build(&inner, depth + 1)?),
                            VariantNode::Tuple(n) => Variant::Tuple(
                                (0..*n).map(|i| self.build(&child(&inner, i), depth + 2)).collect::<Result<_, _>>()?,
                            ),
                            VariantNode::Struct(fields) => Variant::Struct(self.build_fields(&inner, fields, depth)?),
                        }
                    };
                    out.push((*variant, shape));
                }
                Shape::Enum(name, out)
            }
        })
    }

    fn build_fields(
        &self,
        path: &[u32],
        fields: &[&'static str],
        depth: usize,
    ) -> Result<Vec<(&'static str, Shape)>, ShapeError> {
        (0u32..).zip(fields).map(|(i, field)| Ok((*field, self.build(&child(path, i), depth + 1)?))).collect()
    }
}

/// A serde error: a message; the tracer's own reasons are in [`State::failure`].
#[derive(Debug)]
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// The deserializer at one point of the type.
struct Tracer<'a> {
    state: &'a mut State,
    path: Path,
}

const SAMPLE_INTS: [u8; SAMPLE_SETS] = [0, 1, 1];
const SAMPLE_STRS: [&str; SAMPLE_SETS] = ["", "0", "1970-01-01T00:00:00Z"];
const SAMPLE_BYTES: [&[u8]; SAMPLE_SETS] = [&[], &[0; 16], &[0; 32]];

impl Tracer<'_> {
    fn primitive(&mut self, primitive: Primitive) -> Result<u8, Error> {
        self.state.record(&self.path, Node::Primitive(primitive))?;
        Ok(SAMPLE_INTS[self.state.samples])
    }

    fn at(&mut self, index: u32) -> Tracer<'_> {
        Tracer { path: child(&self.path, index), state: self.state }
    }

    /// Runs `f` inside the container `name`.
    fn named<R>(mut self, name: &'static str, node: Node, f: impl FnOnce(&mut Self) -> R) -> Result<R, Error> {
        self.state.enter(name)?;
        let recorded = self.state.record(&self.path, node);
        let result = recorded.map(|()| f(&mut self));
        self.state.stack.pop();
        result
    }

    /// Runs `f` at a cuttable point, unless it is cut.
    fn cuttable<R>(&mut self, node: Node, f: impl FnOnce(&mut Self, bool) -> R) -> Result<R, Error> {
        self.state.record(&self.path, node)?;
        if self.state.cuts.contains_key(&self.path) {
            return Ok(f(self, true));
        }
        self.state.stack.push(Frame::Cuttable(Point::At(self.path.clone())));
        let result = f(self, false);
        self.state.stack.pop();
        Ok(result)
    }
}

macro_rules! primitives {
    ($($method:ident => $primitive:ident, $visit:ident($sample:expr);)*) => {
        $(fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
            #[allow(unused_variables)]
            let n = self.primitive(Primitive::$primitive)?;
            #[allow(clippy::redundant_closure_call)]
            visitor.$visit(($sample)(n))
        })*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    primitives! {
        deserialize_bool => Bool, visit_bool(|_| false);
        deserialize_i8 => I8, visit_i8(|n| n as i8);
        deserialize_i16 => I16, visit_i16(|n| n as i16);
        deserialize_i32 => I32, visit_i32(|n| n as i32);
        deserialize_i64 => I64, visit_i64(|n| n as i64);
        deserialize_i128 => I128, visit_i128(|n| n as i128);
        deserialize_u8 => U8, visit_u8(|n| n);
        deserialize_u16 => U16, visit_u16(|n| n as u16);
        deserialize_u32 => U32, visit_u32(|n| n as u32);
        deserialize_u64 => U64, visit_u64(|n| n as u64);
        deserialize_u128 => U128, visit_u128(|n| n as u128);
        deserialize_f32 => F32, visit_f32(|n| n as f32);
        deserialize_f64 => F64, visit_f64(|n| n as f64);
        deserialize_char => Char, visit_char(|_| 'a');
    }

    fn deserialize_unit<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        self.primitive(Primitive::Unit)?;
        visitor.visit_unit()
    }

    fn deserialize_str<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        self.primitive(Primitive::String)?;
        visitor.visit_str(SAMPLE_STRS[self.state.samples])
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        self.primitive(Primitive::Bytes)?;
        visitor.visit_bytes(SAMPLE_BYTES[self.state.samples])
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        self.cuttable(Node::Option, |t, cut| if cut { visitor.visit_none() } else { visitor.visit_some(t.at(0)) })?
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.state.record(&self.path, Node::UnitStruct(name))?;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.named(name, Node::Newtype(name), |t| visitor.visit_newtype_struct(t.at(0)))?
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        self.cuttable(Node::Seq, |t, cut| visitor.visit_seq(Elements::new(t, u32::from(!cut))))?
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let len = u32::try_from(len).map_err(|_| self.state.fatal(ShapeError::TooLarge))?;
        self.state.record(&self.path, Node::Tuple(len))?;
        let mut this = self;
        visitor.visit_seq(Elements::new(&mut this, len))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let len = u32::try_from(len).map_err(|_| self.state.fatal(ShapeError::TooLarge))?;
        self.named(name, Node::TupleStruct(name, len), |t| visitor.visit_seq(Elements::new(t, len)))?
    }

    fn deserialize_map<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        self.cuttable(Node::Map, |t, cut| visitor.visit_map(Entries { tracer: t, left: !cut }))?
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let len = u32::try_from(fields.len()).map_err(|_| self.state.fatal(ShapeError::TooLarge))?;
        self.named(name, Node::Struct(name, fields), |t| visitor.visit_seq(Elements::new(t, len)))?
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let count = u32::try_from(variants.len()).map_err(|_| self.state.fatal(ShapeError::TooLarge))?;
        self.named(name, Node::Enum(name, variants, BTreeMap::new()), |t| {
            let v = t.state.choose_variant(&t.path, count, name)?;
            t.state.stack.push(Frame::Cuttable(Point::Variant(t.path.clone(), v)));
            let result = visitor.visit_enum(Choice { tracer: t, variant: v });
            t.state.stack.pop();
            result
        })?
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(self.state.fatal(ShapeError::SelfDescribing("deserialize_identifier")))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(self.state.fatal(ShapeError::SelfDescribing("deserialize_any")))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(self.state.fatal(ShapeError::SelfDescribing("deserialize_ignored_any")))
    }

    fn is_human_readable(&self) -> bool {
        // As bincode, which carries every typed message.
        false
    }
}
