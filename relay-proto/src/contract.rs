//! Contracts as both ends describe them: a name plus the signatures of its methods, their wire ids
//! and fingerprints, and the rule by which a host decides whether a caller's contract fits its own.
//! `#[relay_service]` generates the descriptors (as `FooClient::CONTRACT`); the relay-rpc crate
//! documents how contracts evolve under this rule.

use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::fnv::{FNV_OFFSET, Fnv, fnv1a};
use crate::message::{ContractInfo, MAX_TYPES, MethodInfo, TypeInfo};
use crate::shape::{NamedType, Shape};

/// The description of one method of a contract.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MethodDescriptor {
    /// The method's name as written in the trait, e.g. `add`.
    pub name: &'static str,
    /// The method's signature with argument names left out, e.g. `add(i64,i64)->i64`.
    pub signature: &'static str,
    /// The id that names the method on the wire: [`method_id`] of [`name`](Self::name).
    pub id: u32,
    /// Whether callers send the request without waiting for an answer (`#[oneway]`).
    pub oneway: bool,
    /// Whether running the method twice has the same effect as running it once (`#[idempotent]`),
    /// so a caller may retry it. Not part of the fingerprint: it is the host's promise, not a
    /// matter of wire compatibility.
    pub idempotent: bool,
    /// Traces the [`Shape`]s of the arguments and the result (`#[relay_service]` always sets
    /// it); without it the fingerprint covers only the [`signature`](Self::signature).
    pub shapes: Option<fn() -> MethodShapes>,
}

impl MethodDescriptor {
    /// Describes a two-way, non-idempotent method from its name and signature.
    pub const fn new(name: &'static str, signature: &'static str) -> Self {
        Self { name, signature, id: method_id(name), oneway: false, idempotent: false, shapes: None }
    }

    /// Marks the method one-way.
    pub const fn oneway(mut self) -> Self {
        self.oneway = true;
        self
    }

    /// Marks the method idempotent.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sets how the shapes of the arguments and the result are traced.
    pub const fn traced(mut self, shapes: fn() -> MethodShapes) -> Self {
        self.shapes = Some(shapes);
        self
    }

    /// A stable 64-bit hash of the shapes of the arguments and result (or of the
    /// [`signature`](Self::signature), without [`shapes`](Self::shapes)) and of the one-way flag.
    /// Traced anew at each call: [`ContractDescriptor::method_fingerprint`] keeps it.
    pub fn fingerprint(&self) -> u64 {
        self.trace().fingerprint
    }

    /// Traces the method: its fingerprint and the named types of its arguments and result.
    fn trace(&self) -> TracedMethod {
        let mut hasher = Fnv(FNV_OFFSET);
        let types = match self.shapes {
            Some(shapes) => {
                let shapes = shapes();
                let _ = write!(hasher, "{}(", self.name);
                for (i, arg) in shapes.args.iter().enumerate() {
                    let _ = write!(hasher, "{}{arg}", if i > 0 { "," } else { "" });
                }
                let _ = write!(hasher, ")->{}", shapes.result);
                shapes.args.iter().chain([&shapes.result]).flat_map(Shape::named_types).collect()
            }
            None => {
                let _ = hasher.write_str(self.signature);
                Vec::new()
            }
        };
        if self.oneway {
            let _ = hasher.write_str("\n#[oneway]");
        }
        TracedMethod { fingerprint: hasher.0, types }
    }
}

/// Equal when everything but [`shapes`](MethodDescriptor::shapes) is (function pointers do not
/// compare reliably).
impl PartialEq for MethodDescriptor {
    fn eq(&self, other: &Self) -> bool {
        (self.name, self.signature, self.id, self.oneway, self.idempotent)
            == (other.name, other.signature, other.id, other.oneway, other.idempotent)
    }
}

impl Eq for MethodDescriptor {}

/// The shapes of a method's arguments and result, as [`MethodDescriptor::traced`] gives them.
///
/// ```
/// use relay_proto::contract::MethodShapes;
///
/// let add = MethodShapes::new().arg::<i64>().arg::<i64>().result::<i64>();
/// assert_eq!(add.args.len(), 2);
/// assert_eq!(add.result.to_string(), "i64");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodShapes {
    /// The arguments', in order.
    pub args: Vec<Shape>,
    /// The result's.
    pub result: Shape,
}

impl MethodShapes {
    /// No arguments, and `()` as the result.
    pub fn new() -> Self {
        Self { args: Vec::new(), result: Shape::Primitive(crate::shape::Primitive::Unit) }
    }

    /// Adds an argument of type `T` (see [`Shape::of_or_opaque`]).
    pub fn arg<T: serde::de::DeserializeOwned>(mut self) -> Self {
        self.args.push(Shape::of_or_opaque::<T>());
        self
    }

    /// Sets the result's type.
    pub fn result<T: serde::de::DeserializeOwned>(mut self) -> Self {
        self.result = Shape::of_or_opaque::<T>();
        self
    }
}

impl Default for MethodShapes {
    fn default() -> Self {
        Self::new()
    }
}

/// What tracing one method gives.
#[derive(Debug, Clone)]
struct TracedMethod {
    fingerprint: u64,
    /// Innermost first.
    types: Vec<NamedType>,
}

/// The wire id of a method: the 32-bit FNV-1a hash of its name.
///
/// `#[relay_service]` refuses, at compile time, a contract in which two methods have the same id.
///
/// ```
/// assert_eq!(relay_proto::contract::method_id("add"), relay_proto::contract::method_id("add"));
/// assert_ne!(relay_proto::contract::method_id("add"), relay_proto::contract::method_id("sub"));
/// ```
pub const fn method_id(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

/// The description of a contract: its name and its methods. Their fingerprints are computed
/// when first asked for, by tracing the shapes of every argument and result (see
/// [`shape`](crate::shape)).
///
/// Generated by `#[relay_service]` as `FooClient::CONTRACT`.
///
/// ```
/// use relay_proto::contract::{ContractDescriptor, MethodDescriptor, MethodShapes};
///
/// static CALC: ContractDescriptor = ContractDescriptor::new(
///     "Calculator",
///     &[
///         MethodDescriptor::new("add", "add(i64,i64)->i64")
///             .traced(|| MethodShapes::new().arg::<i64>().arg::<i64>().result::<i64>()),
///         MethodDescriptor::new("log", "log(String)->()").oneway(),
///     ],
/// );
/// assert_eq!(CALC.methods.len(), 2);
/// assert!(CALC.method("log").unwrap().oneway);
/// assert_ne!(CALC.fingerprint(), 0);
/// ```
#[derive(Debug)]
pub struct ContractDescriptor {
    /// The contract's name, by default the trait's name.
    pub name: &'static str,
    /// The methods, in declaration order.
    pub methods: &'static [MethodDescriptor],
    traced: OnceLock<Traced>,
}

/// Equal when the names and methods are.
impl PartialEq for ContractDescriptor {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.methods == other.methods
    }
}

impl Eq for ContractDescriptor {}

/// What tracing a contract gives, computed once.
#[derive(Debug)]
struct Traced {
    fingerprint: u64,
    /// Per method, in declaration order.
    methods: Vec<TracedMethod>,
}

impl ContractDescriptor {
    /// Describes a contract from its name and methods.
    pub const fn new(name: &'static str, methods: &'static [MethodDescriptor]) -> Self {
        Self { name, methods, traced: OnceLock::new() }
    }

    /// Looks a method up by name.
    pub fn method(&self, name: &str) -> Option<&MethodDescriptor> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// Looks a method up by its wire id.
    pub fn method_by_id(&self, id: u32) -> Option<&MethodDescriptor> {
        self.methods.iter().find(|m| m.id == id)
    }

    /// A stable 64-bit hash of the name and every method's fingerprint, in order.
    pub fn fingerprint(&self) -> u64 {
        self.traced().fingerprint
    }

    /// The fingerprint of the method called `name`: a stable 64-bit hash of the shapes of its
    /// arguments and result (or of its signature, for a method without
    /// [`shapes`](MethodDescriptor::shapes)) and of its one-way flag.
    pub fn method_fingerprint(&self, name: &str) -> Option<u64> {
        self.traced_method(name).map(|(_, traced)| traced.fingerprint)
    }

    fn traced(&self) -> &Traced {
        self.traced.get_or_init(|| {
            let methods: Vec<TracedMethod> = self.methods.iter().map(MethodDescriptor::trace).collect();
            let mut hash = fnv1a(FNV_OFFSET, self.name.as_bytes());
            for m in &methods {
                hash = fnv1a(hash, b"\n");
                hash = fnv1a(hash, &m.fingerprint.to_le_bytes());
            }
            Traced { fingerprint: hash, methods }
        })
    }

    fn traced_method(&self, name: &str) -> Option<(&MethodDescriptor, &TracedMethod)> {
        let i = self.methods.iter().position(|m| m.name == name)?;
        Some((&self.methods[i], &self.traced().methods[i]))
    }
}

/// Checks that a caller speaking `caller` can talk to a host serving `host`.
///
/// The names must be equal. A method both sides know must have the same fingerprint (the shapes
/// of its arguments and result, and its one-way flag); methods only the host knows are fine
/// (hosts may add methods anywhere), and so are methods only the caller knows (calling one fails
/// as an unknown method), unless its wire id is that of another method of the host. The error
/// names the contract and every method that differs, and, where the caller listed it, the
/// innermost type whose shape differs, with the host's outline of it.
pub fn check_compatible(host: &ContractDescriptor, caller: &ContractInfo) -> Result<(), String> {
    if caller.name != host.name {
        return Err(format!("the listener serves contract `{}`, the caller speaks `{}`", host.name, caller.name));
    }
    if caller.fingerprint == host.fingerprint() {
        return Ok(());
    }
    let mut problems = Vec::new();
    for method in &caller.methods {
        match host.traced_method(&method.name) {
            Some((_, traced)) if traced.fingerprint == method.fingerprint => {}
            Some((m, traced)) => {
                let differing = traced.types.iter().find(|t| {
                    let mut theirs = caller.types.iter().filter(|c| c.name == t.name).peekable();
                    theirs.peek().is_some() && !theirs.any(|c| c.fingerprint == t.fingerprint)
                });
                problems.push(match differing {
                    Some(t) => {
                        // The outermost entry of that name is the one in full.
                        let outline = traced.types.iter().rev().find(|o| o.name == t.name).map_or("", |o| &o.outline);
                        format!(
                            "method `{}.{}` differs: its type `{}` has another shape on the listener: `{outline}`",
                            host.name, m.name, t.name,
                        )
                    }
                    None => format!(
                        "method `{}.{}` has another signature on the listener: `{}{}`",
                        host.name,
                        m.name,
                        if m.oneway { "#[oneway] " } else { "" },
                        m.signature,
                    ),
                });
            }
            None => {
                if let Some(m) = host.method_by_id(method_id(&method.name)) {
                    problems.push(format!(
                        "method `{}.{}` has the same wire id as the listener's method `{}`; rename one of them",
                        host.name, method.name, m.name,
                    ));
                }
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// The most bytes of a hello the named types of a caller's contract take (a quarter of
/// [`MAX_HELLO_FRAME`](crate::MAX_HELLO_FRAME)).
const TYPES_BUDGET: usize = 4096;

impl From<&ContractDescriptor> for ContractInfo {
    fn from(c: &ContractDescriptor) -> Self {
        // The types only serve to name the type that differs in a refusal; the fingerprints
        // cover every type, however many there are. They take at most `TYPES_BUDGET` bytes of
        // the hello, whose size is limited.
        let traced = c.traced();
        let mut types: Vec<TypeInfo> = Vec::new();
        let mut budget = TYPES_BUDGET;
        for t in traced.methods.iter().flat_map(|m| &m.types) {
            let cost = t.name.len() + 10;
            if types.len() == MAX_TYPES || cost > budget {
                break;
            }
            if !types.iter().any(|x| x.name == t.name && x.fingerprint == t.fingerprint) {
                budget -= cost;
                types.push(TypeInfo { name: t.name.to_owned(), fingerprint: t.fingerprint });
            }
        }
        Self {
            name: c.name.to_owned(),
            fingerprint: traced.fingerprint,
            methods: c
                .methods
                .iter()
                .zip(&traced.methods)
                .map(|(m, t)| MethodInfo { name: m.name.to_owned(), fingerprint: t.fingerprint })
                .collect(),
            types,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: MethodDescriptor = MethodDescriptor::new("add", "add(i64,i64)->i64");
    const NEG: MethodDescriptor = MethodDescriptor::new("neg", "neg(i64)->i64");
    const LOG: MethodDescriptor = MethodDescriptor::new("log", "log(String)->()").oneway();

    fn info(c: &ContractDescriptor) -> ContractInfo {
        c.into()
    }

    #[test]
    fn fingerprints_depend_on_signatures_not_names_of_arguments() {
        let a = MethodDescriptor::new("add", "add(i64,i64)->i64");
        let b = MethodDescriptor::new("add", "add(i64,i32)->i64");
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a, ADD);
    }

    #[test]
    fn fingerprints_cover_the_oneway_flag_but_not_idempotence() {
        let two_way = MethodDescriptor::new("log", "log(String)->()");
        assert!(LOG.oneway && !two_way.oneway);
        assert_ne!(LOG.fingerprint(), two_way.fingerprint());
        let idempotent = two_way.idempotent();
        assert!(idempotent.idempotent);
        assert_eq!(idempotent.fingerprint(), two_way.fingerprint());
        assert_eq!(LOG.oneway().fingerprint(), LOG.fingerprint(), "marking twice changes nothing");
    }

    #[test]
    fn method_ids_are_fnv1a_of_the_name() {
        // Known answers of 32-bit FNV-1a.
        assert_eq!(method_id(""), 0x811c_9dc5);
        assert_eq!(method_id("a"), 0xe40c_292c);
        assert_eq!(method_id("foobar"), 0xbf9c_f968);
        assert_eq!(ADD.id, method_id("add"));
        static C: ContractDescriptor = ContractDescriptor::new("Calc", &[ADD, NEG]);
        assert_eq!(C.method_by_id(method_id("neg")), Some(&NEG));
        assert_eq!(C.method_by_id(method_id("sub")), None);
    }

    #[test]
    fn contract_fingerprint_covers_name_and_methods() {
        const M: &[MethodDescriptor] = &[ADD];
        let a = ContractDescriptor::new("Calculator", M);
        let b = ContractDescriptor::new("Calc", M);
        let c = ContractDescriptor::new("Calculator", &[]);
        const ONEWAY: &[MethodDescriptor] = &[MethodDescriptor::new("add", "add(i64,i64)->i64").oneway()];
        let d = ContractDescriptor::new("Calculator", ONEWAY);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_ne!(a.fingerprint(), d.fingerprint());
    }

    #[test]
    fn hosts_may_add_and_reorder_methods_anywhere() {
        static V1: ContractDescriptor = ContractDescriptor::new("Calc", &[ADD, LOG]);
        static V2: ContractDescriptor = ContractDescriptor::new("Calc", &[NEG, LOG, ADD]);
        assert_eq!(check_compatible(&V1, &info(&V1)), Ok(()));
        assert_eq!(check_compatible(&V2, &info(&V1)), Ok(()), "new methods first and in the middle");
    }

    #[test]
    fn callers_may_know_methods_the_host_lacks() {
        static V1: ContractDescriptor = ContractDescriptor::new("Calc", &[ADD]);
        static V2: ContractDescriptor = ContractDescriptor::new("Calc", &[NEG, ADD, LOG]);
        assert_eq!(check_compatible(&V1, &info(&V2)), Ok(()));
    }

    #[test]
    fn a_changed_signature_is_refused_naming_contract_and_method() {
        static V1: ContractDescriptor = ContractDescriptor::new("Calc", &[NEG, ADD]);
        static CHANGED: ContractDescriptor =
            ContractDescriptor::new("Calc", &[MethodDescriptor::new("add", "add(i32,i32)->i64"), NEG]);
        let err = check_compatible(&CHANGED, &info(&V1)).unwrap_err();
        assert!(err.contains("`Calc.add`") && err.contains("add(i32,i32)->i64"), "{err}");
        assert!(!err.contains("neg"), "{err}");
        let err = check_compatible(&V1, &info(&CHANGED)).unwrap_err();
        assert!(err.contains("`Calc.add`"), "{err}");
    }

    #[test]
    fn a_changed_oneway_flag_is_refused() {
        static HOST: ContractDescriptor =
            ContractDescriptor::new("Calc", &[MethodDescriptor::new("log", "log(String)->()")]);
        static CALLER: ContractDescriptor = ContractDescriptor::new("Calc", &[LOG]);
        let err = check_compatible(&HOST, &info(&CALLER)).unwrap_err();
        assert!(err.contains("`Calc.log`"), "{err}");
        let err = check_compatible(&CALLER, &info(&HOST)).unwrap_err();
        assert!(err.contains("#[oneway] log(String)->()"), "{err}");
    }

    #[test]
    fn every_differing_method_is_named() {
        static HOST: ContractDescriptor = ContractDescriptor::new(
            "Calc",
            &[MethodDescriptor::new("add", "add(i32,i32)->i64"), MethodDescriptor::new("neg", "neg(i32)->i32")],
        );
        static CALLER: ContractDescriptor = ContractDescriptor::new("Calc", &[ADD, NEG]);
        let err = check_compatible(&HOST, &info(&CALLER)).unwrap_err();
        assert!(err.contains("`Calc.add`") && err.contains("`Calc.neg`"), "{err}");
    }

    #[test]
    fn an_unknown_method_with_a_colliding_id_is_refused() {
        // FNV-1a gives these two names the same 32-bit id.
        assert_eq!(method_id("m763399"), method_id("m1109514"));
        static HOST: ContractDescriptor =
            ContractDescriptor::new("C", &[MethodDescriptor::new("m763399", "m763399()->()")]);
        static CALLER: ContractDescriptor =
            ContractDescriptor::new("C", &[MethodDescriptor::new("m1109514", "m1109514()->()")]);
        let err = check_compatible(&HOST, &info(&CALLER)).unwrap_err();
        assert!(err.contains("`C.m1109514`") && err.contains("`m763399`"), "{err}");
    }

    #[test]
    fn different_contract_names_are_refused() {
        static V1: ContractDescriptor = ContractDescriptor::new("Calc", &[ADD]);
        static OTHER: ContractDescriptor = ContractDescriptor::new("Other", &[ADD]);
        let err = check_compatible(&OTHER, &info(&V1)).unwrap_err();
        assert!(err.contains("`Other`") && err.contains("`Calc`"), "{err}");
        let untyped = ContractInfo::default();
        assert!(check_compatible(&V1, &untyped).is_err());
    }

    mod rec_v1 {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct Rec {
            x: u32,
            y: String,
        }
    }

    mod rec_v2 {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct Inner {
            z: u64,
        }

        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct Rec {
            x: u32,
            z: Inner,
            y: String,
        }
    }

    static RECS_V1: ContractDescriptor = ContractDescriptor::new(
        "Recs",
        &[
            ADD,
            MethodDescriptor::new("rec", "rec(Rec)->Rec")
                .traced(|| MethodShapes::new().arg::<rec_v1::Rec>().result::<rec_v1::Rec>()),
        ],
    );
    static RECS_V2: ContractDescriptor = ContractDescriptor::new(
        "Recs",
        &[
            ADD,
            MethodDescriptor::new("rec", "rec(Rec)->Rec")
                .traced(|| MethodShapes::new().arg::<rec_v2::Rec>().result::<rec_v2::Rec>()),
        ],
    );

    #[test]
    fn traced_fingerprints_cover_the_shapes_of_the_types_not_their_names() {
        assert_ne!(RECS_V1.fingerprint(), RECS_V2.fingerprint());
        assert_ne!(RECS_V1.method_fingerprint("rec"), RECS_V2.method_fingerprint("rec"));
        assert_eq!(RECS_V1.method_fingerprint("add"), RECS_V2.method_fingerprint("add"));
        assert_eq!(RECS_V1.method_fingerprint("rec"), Some(RECS_V1.methods[1].fingerprint()));
        assert_eq!(RECS_V1.method_fingerprint("nope"), None);
        let info = info(&RECS_V2);
        let names: Vec<&str> = info.types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Inner", "Rec"], "innermost first, once each");
    }

    #[test]
    fn a_type_of_another_shape_is_refused_naming_method_and_type() {
        let err = check_compatible(&RECS_V2, &info(&RECS_V1)).unwrap_err();
        assert!(err.contains("`Recs.rec`") && err.contains("type `Rec`"), "{err}");
        assert!(err.contains("Rec{x:u32,z:Inner,y:String}"), "the listener's outline: {err}");
        assert!(!err.contains("add"), "{err}");
        // The caller knows `Inner` nowhere: the innermost type both know is named.
        let err = check_compatible(&RECS_V1, &info(&RECS_V2)).unwrap_err();
        assert!(err.contains("type `Rec`") && err.contains("Rec{x:u32,y:String}"), "{err}");
        // A caller that lists no types still learns the method.
        let bare = ContractInfo { types: Vec::new(), ..info(&RECS_V1) };
        let err = check_compatible(&RECS_V2, &bare).unwrap_err();
        assert!(err.contains("`Recs.rec` has another signature"), "{err}");
    }
}
