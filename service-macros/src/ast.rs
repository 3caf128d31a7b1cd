//! Parsing: the macro's arguments and the annotated trait, read into our own structs.
//!
//! Parsing is lenient on purpose: anything that is syntactically a trait becomes a [`Service`],
//! and every rule about what a relay service may contain is checked later, with a span, in
//! `valid.rs`. That keeps "what did the user write" apart from "is it allowed".

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::{
    Attribute, FnArg, Ident, ItemTrait, LitStr, Pat, PatType, Receiver, Result, ReturnType, TraitItem, TraitItemFn,
    Type,
};

/// The arguments inside `#[relay_service(...)]`.
#[derive(Default)]
pub(crate) struct Args {
    /// `name = "..."`: overrides the contract name.
    pub name: Option<LitStr>,
}

impl Args {
    /// Parses the attribute's arguments; only `name = "..."` is accepted.
    pub fn parse(tokens: TokenStream) -> Result<Self> {
        let mut args = Args::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                if args.name.is_some() {
                    return Err(meta.error("duplicate `name` argument"));
                }
                let name: LitStr = meta.value()?.parse()?;
                if name.value().is_empty() {
                    return Err(syn::Error::new(name.span(), "the contract name cannot be empty"));
                }
                args.name = Some(name);
                Ok(())
            } else {
                Err(meta.error("unknown relay_service argument; the only one accepted is `name = \"...\"`"))
            }
        });
        parser.parse2(tokens)?;
        Ok(args)
    }
}

/// The annotated trait.
pub(crate) struct Service<'a> {
    /// The trait as written.
    pub original: &'a ItemTrait,
    /// The trait's name, e.g. `Calculator`.
    pub ident: &'a Ident,
    /// The contract name: `name = "..."` if given, else the trait's name.
    pub name: String,
    /// The `fn` items, in declaration order.
    pub methods: Vec<Method<'a>>,
    /// Every item that is not a `fn` (types, consts, macros): none is allowed.
    pub others: Vec<&'a TraitItem>,
}

/// One `fn` of the trait.
pub(crate) struct Method<'a> {
    /// The method as written.
    pub original: &'a TraitItemFn,
    /// The method's name, e.g. `add`.
    pub ident: &'a Ident,
    /// The method's name without any `r#`, as used in strings.
    pub name: String,
    /// The enum variant for this method (`add` -> `Add`), or `None` if the name gives no usable
    /// variant name (e.g. `self_` would give the keyword `Self`).
    pub variant: Option<Ident>,
    /// A `self` receiver, which is not allowed: the generated trait adds `&self` itself.
    pub receiver: Option<&'a Receiver>,
    /// The typed arguments, in order.
    pub args: Vec<Arg<'a>>,
    /// The declared return type; `None` for a missing return type (unit).
    pub output: Option<&'a Type>,
    /// The method's attributes, sorted by kind.
    pub attrs: MethodAttrs<'a>,
}

/// The attributes of one method, sorted by what the macro does with them.
#[derive(Default)]
pub(crate) struct MethodAttrs<'a> {
    /// Doc comments: copied to the trait method, the client method and the request variant.
    pub docs: Vec<&'a Attribute>,
    /// Lint attributes (`allow`, `expect`, `warn`, `deny`, `forbid`, `deprecated`): copied to the
    /// trait method and the client method.
    pub lints: Vec<&'a Attribute>,
    /// Every `#[oneway]`: the caller does not wait for the host (more than one is a mistake).
    pub oneway: Vec<&'a Attribute>,
    /// Every `#[idempotent]`: the method may safely run twice (more than one is a mistake).
    pub idempotent: Vec<&'a Attribute>,
    /// Any other attribute: not allowed.
    pub others: Vec<&'a Attribute>,
}

/// The lint attributes, which the macro passes on.
pub(crate) const LINT_ATTRIBUTES: &[&str] = &["allow", "expect", "warn", "deny", "forbid", "deprecated"];

impl<'a> MethodAttrs<'a> {
    fn from_syn(attrs: &'a [Attribute]) -> Self {
        let mut sorted = MethodAttrs::default();
        for attr in attrs {
            let path = attr.path();
            let list = if path.is_ident("doc") {
                &mut sorted.docs
            } else if path.is_ident("oneway") {
                &mut sorted.oneway
            } else if path.is_ident("idempotent") {
                &mut sorted.idempotent
            } else if LINT_ATTRIBUTES.iter().any(|lint| path.is_ident(lint)) {
                &mut sorted.lints
            } else {
                &mut sorted.others
            };
            list.push(attr);
        }
        sorted
    }

    /// The attributes copied onto generated methods: docs and lints.
    pub fn passed_on(&self) -> impl Iterator<Item = &'a Attribute> + '_ {
        self.docs.iter().chain(&self.lints).copied()
    }
}

/// One typed argument of a method.
pub(crate) struct Arg<'a> {
    /// The pattern as written; only a plain identifier is allowed.
    pub pat: &'a Pat,
    /// The plain identifier, if the pattern is one.
    pub ident: Option<&'a Ident>,
    /// The argument's type.
    pub ty: &'a Type,
}

impl<'a> Service<'a> {
    /// Reads a trait; `name` is the contract-name override, if any.
    pub fn from_syn(original: &'a ItemTrait, name: Option<&LitStr>) -> Self {
        let mut methods = Vec::new();
        let mut others = Vec::new();
        for item in &original.items {
            match item {
                TraitItem::Fn(method) => methods.push(Method::from_syn(method)),
                other => others.push(other),
            }
        }
        Service {
            original,
            ident: &original.ident,
            name: name.map_or_else(|| original.ident.unraw().to_string(), LitStr::value),
            methods,
            others,
        }
    }
}

impl<'a> Method<'a> {
    /// Whether the method is marked `#[oneway]`.
    pub fn is_oneway(&self) -> bool {
        !self.attrs.oneway.is_empty()
    }

    /// Whether the method is marked `#[idempotent]`.
    pub fn is_idempotent(&self) -> bool {
        !self.attrs.idempotent.is_empty()
    }

    /// The method's wire id: the 32-bit FNV-1a hash of its name, as `relay_rpc::contract::method_id`
    /// computes it.
    pub fn id(&self) -> u32 {
        method_id(&self.name)
    }

    pub fn from_syn(original: &'a TraitItemFn) -> Self {
        let sig = &original.sig;
        let name = sig.ident.unraw().to_string();
        let mut receiver = None;
        let mut args = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(PatType { pat, ty, .. }) => args.push(Arg { pat, ident: plain_ident(pat), ty }),
            }
        }
        let output = match &sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        Method {
            original,
            ident: &sig.ident,
            variant: variant_ident(&name, sig.ident.span()),
            name,
            receiver,
            args,
            output,
            attrs: MethodAttrs::from_syn(&original.attrs),
        }
    }
}

/// The identifier of a pattern that is exactly `name` (no `mut`, `ref` or sub-pattern).
fn plain_ident(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() => Some(&p.ident),
        _ => None,
    }
}

/// The 32-bit FNV-1a hash of `name`; the same function as `relay_rpc::contract::method_id`.
pub(crate) fn method_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

/// The UpperCamelCase form of a method name: `get_user` and `getUser` both give `GetUser`.
pub(crate) fn upper_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for segment in name.split('_') {
        let mut chars = segment.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// The variant identifier for a method name, if its UpperCamelCase form is a usable identifier.
fn variant_ident(name: &str, span: Span) -> Option<Ident> {
    let camel = upper_camel(name);
    // Rejects the empty string, a leading digit and keywords such as `Self`.
    let ident: Ident = syn::parse_str(&camel).ok()?;
    Some(Ident::new(&ident.to_string(), span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_camel_case() {
        assert_eq!(upper_camel("add"), "Add");
        assert_eq!(upper_camel("get_user_id"), "GetUserId");
        assert_eq!(upper_camel("getX"), "GetX");
        assert_eq!(upper_camel("get_x"), "GetX");
        assert_eq!(upper_camel("_private"), "Private");
    }

    #[test]
    fn unusable_variant_names() {
        let span = Span::call_site();
        assert!(variant_ident("self_", span).is_none());
        assert!(variant_ident("_1", span).is_none());
        assert!(variant_ident("__", span).is_none());
        assert_eq!(variant_ident("ping", span).unwrap(), "Ping");
    }

    #[test]
    fn method_ids_are_fnv1a() {
        assert_eq!(method_id(""), 0x811c_9dc5);
        assert_eq!(method_id("a"), 0xe40c_292c);
        assert_eq!(method_id("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn method_attributes_are_sorted() {
        let method: TraitItemFn = syn::parse_quote! {
            /// Docs.
            #[oneway]
            #[idempotent]
            #[allow(dead_code)]
            #[deprecated]
            #[cfg(test)]
            #[inline]
            async fn log(line: String);
        };
        let attrs = MethodAttrs::from_syn(&method.attrs);
        assert_eq!(attrs.docs.len(), 1);
        assert_eq!(attrs.oneway.len(), 1);
        assert_eq!(attrs.idempotent.len(), 1);
        assert_eq!(attrs.lints.len(), 2);
        assert_eq!(attrs.others.len(), 2);
        assert_eq!(attrs.passed_on().count(), 3);
    }

    #[test]
    fn args() {
        let args = Args::parse(quote::quote!(name = "example.Calc")).unwrap();
        assert_eq!(args.name.unwrap().value(), "example.Calc");
        assert!(Args::parse(quote::quote!(nmae = "x")).is_err());
        assert!(Args::parse(quote::quote!(name = "a", name = "b")).is_err());
        assert!(Args::parse(TokenStream::new()).unwrap().name.is_none());
    }
}
