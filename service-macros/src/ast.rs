//! Parsing: the macro's arguments and the annotated trait, read into our own structs.
//!
//! Parsing is lenient on purpose: anything that is syntactically a trait becomes a [`Service`],
//! and every rule about what a relay service may contain is checked later, with a span, in
//! `valid.rs`. That keeps "what did the user write" apart from "is it allowed".

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::{FnArg, Ident, ItemTrait, LitStr, Pat, PatType, Receiver, Result, ReturnType, TraitItem, TraitItemFn, Type};

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
    fn from_syn(original: &'a TraitItemFn) -> Self {
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
    fn args() {
        let args = Args::parse(quote::quote!(name = "example.Calc")).unwrap();
        assert_eq!(args.name.unwrap().value(), "example.Calc");
        assert!(Args::parse(quote::quote!(nmae = "x")).is_err());
        assert!(Args::parse(quote::quote!(name = "a", name = "b")).is_err());
        assert!(Args::parse(TokenStream::new()).unwrap().name.is_none());
    }
}
