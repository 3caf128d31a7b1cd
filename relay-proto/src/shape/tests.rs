use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;

use serde::Deserialize;

use super::*;

fn text<T: serde::de::DeserializeOwned>() -> String {
    Shape::of::<T>().unwrap().to_string()
}

#[test]
fn primitives_and_std_containers() {
    assert_eq!(text::<u32>(), "u32");
    assert_eq!(text::<i32>(), "i32");
    assert_eq!(text::<(i64, bool, char, f64)>(), "(i64,bool,char,f64)");
    assert_eq!(text::<(u8,)>(), "(u8,)");
    assert_eq!(text::<String>(), "String");
    assert_eq!(text::<()>(), "()");
    assert_eq!(text::<Vec<u8>>(), "[u8]");
    assert_eq!(text::<Option<Vec<String>>>(), "Option<[String]>");
    assert_eq!(text::<BTreeMap<String, u64>>(), "Map<String,u64>");
    assert_eq!(text::<HashSet<i16>>(), "[i16]");
    assert_eq!(text::<[u8; 3]>(), "(u8,u8,u8)");
    assert_eq!(text::<Box<u128>>(), "u128");
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct RecV1 {
    x: u32,
    y: String,
}

mod v2 {
    #[derive(serde::Deserialize)]
    #[serde(rename = "RecV1")]
    #[allow(dead_code)]
    pub struct Rec {
        pub x: u32,
        pub z: u64,
        pub y: String,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename = "RecV1")]
    #[allow(dead_code)]
    pub struct Signed {
        pub x: i32,
        pub y: String,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename = "RecV1")]
    #[allow(dead_code)]
    pub struct Swapped {
        pub y: String,
        pub x: u32,
    }
}

#[test]
fn every_change_the_wire_would_notice_changes_the_fingerprint() {
    let v1 = Shape::of::<RecV1>().unwrap();
    assert_eq!(v1.to_string(), "RecV1{x:u32,y:String}");
    for other in [Shape::of::<v2::Rec>(), Shape::of::<v2::Signed>(), Shape::of::<v2::Swapped>()] {
        let other = other.unwrap();
        assert_ne!(fingerprint(&v1), fingerprint(&other), "{v1} against {other}");
    }
    assert_eq!(fingerprint(&v1), fingerprint(&Shape::of::<RecV1>().unwrap()), "stable");
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Kind {
    A,
    B(i64),
    C(u8, Box<Kind>),
    D { inner: Inner, more: Option<Inner> },
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Inner {
    P,
    Q(String),
    R { deep: Deep },
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Deep {
    S,
    T(bool),
}

#[test]
fn every_variant_of_every_nested_enum_is_traced() {
    let shape = Shape::of::<Kind>().unwrap();
    let text = shape.to_string();
    for part in
        ["A,B(i64),C(u8,", "D{inner:enum Inner{P,Q(String),R{deep:enum Deep{S,T(bool)}}}", "more:Option<enum Inner"]
    {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    assert!(text.contains("^Kind"), "the recursion is cut: {text}");
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Tree {
    label: String,
    kids: Vec<Tree>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct List {
    head: u32,
    tail: Option<Box<List>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Expr {
    Lit(i64),
    Add(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
}

#[test]
fn recursive_types_are_cut_and_still_told_apart() {
    let tree = text::<Tree>();
    assert_eq!(tree, "Tree{label:String,kids:[Tree{label:String,kids:[^Tree]}]}");
    let list = text::<List>();
    assert_eq!(list, "List{head:u32,tail:Option<List{head:u32,tail:Option<^List>}>}");
    let expr = text::<Expr>();
    assert!(expr.starts_with("enum Expr{Lit(i64),Add(enum Expr{Lit(i64),Add("), "{expr}");
    assert!(expr.contains("^Expr"), "{expr}");
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Wrapper<T> {
    value: Option<T>,
}

#[test]
fn generic_types_differ_by_their_parameters() {
    assert_eq!(text::<Wrapper<u32>>(), "Wrapper{value:Option<u32>}");
    assert_ne!(text::<Wrapper<Wrapper<u32>>>(), text::<Wrapper<Wrapper<String>>>());
    assert_eq!(text::<Wrapper<Wrapper<u32>>>(), "Wrapper{value:Option<Wrapper{value:Option<u32>}>}");
    assert_ne!(text::<(Wrapper<u8>, Wrapper<i8>)>(), text::<(Wrapper<u8>, Wrapper<u8>)>());
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Renamed {
    #[serde(rename = "b")]
    a: u8,
    #[serde(skip)]
    skipped: u64,
    #[serde(with = "as_string")]
    n: u32,
}

mod as_string {
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        Ok(s.len() as u32)
    }
}

#[test]
fn serde_attributes_count_as_they_change_the_wire() {
    assert_eq!(text::<Renamed>(), "Renamed{b:u8,n:String}");
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Validated {
    id: NonZeroU32,
    #[serde(deserialize_with = "sixteen_bytes")]
    uuid: [u8; 16],
}

fn sixteen_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
    struct Bytes;
    impl serde::de::Visitor<'_> for Bytes {
        type Value = [u8; 16];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("16 bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<[u8; 16], E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }
    }
    d.deserialize_bytes(Bytes)
}

#[test]
fn types_that_validate_their_values_are_traced_with_other_samples() {
    assert_eq!(text::<Validated>(), "Validated{id:u32,uuid:bytes}");
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Untagged {
    A(u8),
    B(String),
}

#[test]
fn types_bincode_cannot_carry_are_opaque() {
    assert_eq!(Shape::of::<Untagged>(), Err(ShapeError::SelfDescribing("deserialize_any")));
    assert!(matches!(Shape::of_or_opaque::<Untagged>(), Shape::Opaque(name) if name.ends_with("Untagged")));
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Endless {
    next: Box<Endless>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum NoEnd {
    More(Box<NoEnd>),
}

#[test]
fn types_without_a_finite_value_are_errors_not_a_stack_overflow() {
    assert_eq!(Shape::of::<Endless>(), Err(ShapeError::TooDeep));
    assert!(matches!(Shape::of::<NoEnd>(), Err(ShapeError::Infinite("NoEnd"))), "{:?}", Shape::of::<NoEnd>());
}

#[test]
fn named_types_are_listed_innermost_first_with_an_outline() {
    let shape = Shape::of::<Kind>().unwrap();
    let names: Vec<&str> = shape.named_types().iter().map(|t| t.name).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} not in {names:?}"));
    assert!(pos("Deep") < pos("Inner") && pos("Inner") < names.iter().rposition(|x| *x == "Kind").unwrap());
    let v2 = Shape::of::<v2::Rec>().unwrap();
    let [rec] = &v2.named_types()[..] else { panic!() };
    assert_eq!(rec.outline, "RecV1{x:u32,z:u64,y:String}");
    assert_eq!(rec.fingerprint, fingerprint(&v2));
    let outer = Shape::of::<Wrapper<RecV1>>().unwrap().named_types();
    assert_eq!(outer.last().unwrap().outline, "Wrapper{value:Option<RecV1>}", "one level deep");
}

#[test]
fn fixed_arrays_of_many_elements_are_traced() {
    assert_eq!(Shape::of::<[[u8; 32]; 32]>().unwrap().to_string().matches("u8").count(), 1024);
    assert_eq!(Shape::of::<[[[[u8; 32]; 32]; 32]; 4]>(), Err(ShapeError::TooLarge));
}
