//! Validation: every rule about what a relay service may contain, each reported with a span.
//!
//! Each mistake gives exactly one error, pointing at the smallest piece of code that is wrong.
//! All mistakes found are reported together (combined with `syn::Error::combine`).

use std::collections::HashMap;

use syn::{Error, GenericArgument, Meta, PathArguments, Result, ReturnType, Type, TypeParamBound};

use crate::ast::{LINT_ATTRIBUTES, Method, Service};

/// Method names that would clash with an item of the generated `FooClient`.
const CLIENT_ITEMS: &[&str] = &["new", "connect", "clone", "CONTRACT"];

impl Service<'_> {
    /// Checks the whole trait; returns every mistake found, combined into one error.
    pub fn validate(&self) -> Result<()> {
        let mut errors = Errors::default();
        self.check_trait(&mut errors);
        for item in &self.others {
            errors.push(Error::new_spanned(item, "relay_service traits may only contain `async fn` methods"));
        }
        let mut variants: HashMap<String, &Method<'_>> = HashMap::new();
        let mut ids: HashMap<u32, &Method<'_>> = HashMap::new();
        for method in &self.methods {
            method.check(self, &mut errors);
            match ids.get(&method.id()) {
                // Same name twice is reported as a duplicate variant below.
                Some(first) if first.name != method.name => errors.push(Error::new(
                    method.ident.span(),
                    format!(
                        "methods `{}` and `{}` have the same wire id {:#010x} (a 32-bit hash of the name); \
                         rename one of them",
                        first.name,
                        method.name,
                        method.id(),
                    ),
                )),
                Some(_) => {}
                None => {
                    ids.insert(method.id(), method);
                }
            }
            if let Some(variant) = &method.variant {
                match variants.get(&variant.to_string()) {
                    Some(first) => errors.push(Error::new(
                        method.ident.span(),
                        format!(
                            "method `{}` gives the same request variant `{variant}` as method `{}`; \
                             rename one of them",
                            method.name, first.name,
                        ),
                    )),
                    None => {
                        variants.insert(variant.to_string(), method);
                    }
                }
            }
        }
        errors.finish()
    }

    fn check_trait(&self, errors: &mut Errors) {
        let generics = &self.original.generics;
        if !generics.params.is_empty() {
            errors.push(Error::new_spanned(&generics.params, "relay_service traits cannot be generic"));
        } else if let Some(where_clause) = &generics.where_clause {
            errors.push(Error::new_spanned(
                where_clause.where_token,
                "relay_service traits cannot have a `where` clause",
            ));
        }
        if let Some(auto) = &self.original.auto_token {
            errors.push(Error::new_spanned(auto, "relay_service traits cannot be `auto` traits"));
        }
    }
}

impl Method<'_> {
    fn check(&self, service: &Service<'_>, errors: &mut Errors) {
        let sig = &self.original.sig;
        if let Some(constness) = &sig.constness {
            errors.push(Error::new_spanned(constness, "relay_service methods must be `async fn`, not `const fn`"));
        } else if sig.asyncness.is_none() {
            errors.push(Error::new(sig.fn_token.span, "relay_service methods must be `async fn`"));
        }
        if let Some(unsafety) = &sig.unsafety {
            errors.push(Error::new_spanned(unsafety, "relay_service methods cannot be `unsafe`"));
        }
        if let Some(abi) = &sig.abi {
            errors.push(Error::new_spanned(abi, "relay_service methods cannot be `extern`"));
        }
        if !sig.generics.params.is_empty() {
            errors.push(Error::new_spanned(
                &sig.generics.params,
                "relay_service methods cannot have type, const or lifetime parameters",
            ));
        } else if let Some(where_clause) = &sig.generics.where_clause {
            errors.push(Error::new_spanned(
                where_clause.where_token,
                "relay_service methods cannot have a `where` clause",
            ));
        }
        if let Some(receiver) = self.receiver {
            errors.push(Error::new_spanned(
                receiver,
                "remove this receiver: relay_service methods take no `self`, \
                 the generated trait adds `&self` itself",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            errors.push(Error::new_spanned(variadic, "relay_service methods cannot be variadic"));
        }
        if let Some(body) = &self.original.default {
            errors.push(Error::new(
                body.brace_token.span.open(),
                format!(
                    "relay_service methods cannot have a default body; \
                     implement `{}` in your `impl {} for ...` instead",
                    self.name, service.ident,
                ),
            ));
        }
        if self.variant.is_none() {
            errors.push(Error::new(
                self.ident.span(),
                format!("`{}` gives no usable enum variant name in UpperCamelCase; rename the method", self.name,),
            ));
        }
        if CLIENT_ITEMS.contains(&self.name.as_str()) {
            errors.push(Error::new(
                self.ident.span(),
                format!(
                    "method name `{}` clashes with the generated `{}Client::{}`; rename the method",
                    self.name, service.ident, self.name,
                ),
            ));
        }
        self.check_args(errors);
        if let ReturnType::Type(_, ty) = &sig.output {
            check_owned(ty, "return types", errors);
        }
        self.check_attrs(errors);
    }

    fn check_attrs(&self, errors: &mut Errors) {
        let attrs = &self.attrs;
        for (name, list) in [("oneway", &attrs.oneway), ("idempotent", &attrs.idempotent)] {
            for (i, attr) in list.iter().enumerate() {
                if i > 0 {
                    errors.push(Error::new_spanned(attr, format!("duplicate `#[{name}]`")));
                } else if !matches!(attr.meta, Meta::Path(_)) {
                    errors.push(Error::new_spanned(&attr.meta, format!("`#[{name}]` takes no arguments")));
                }
            }
        }
        for attr in &attrs.others {
            let path = attr.path();
            let message = if path.is_ident("cfg") || path.is_ident("cfg_attr") {
                "relay_service methods cannot be conditional: a contract must be the same in every build \
                 (put the `#[cfg]` on the whole trait)"
                    .to_owned()
            } else {
                format!(
                    "unsupported attribute on a relay_service method; accepted are doc comments, `#[oneway]`, \
                     `#[idempotent]` and lint attributes ({})",
                    LINT_ATTRIBUTES.iter().map(|lint| format!("`{lint}`")).collect::<Vec<_>>().join(", "),
                )
            };
            errors.push(Error::new_spanned(attr, message));
        }
        if self.is_oneway()
            && let Some(ty) = self.output.filter(|ty| !is_unit(ty))
        {
            errors.push(Error::new_spanned(
                ty,
                "a `#[oneway]` method cannot return a value: its caller does not wait for the host; \
                 remove the return type, or remove `#[oneway]`",
            ));
        }
    }

    fn check_args(&self, errors: &mut Errors) {
        let mut seen = Vec::new();
        for arg in &self.args {
            match arg.ident {
                None => errors
                    .push(Error::new_spanned(arg.pat, "relay_service arguments must be plain names, e.g. `id: u64`")),
                Some(ident) if seen.contains(&ident) => {
                    errors.push(Error::new(ident.span(), format!("duplicate argument name `{ident}`")))
                }
                Some(ident) => seen.push(ident),
            }
            check_owned(arg.ty, "argument types", errors);
        }
    }
}

/// Whether `ty` is `()`.
fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Paren(t) => is_unit(&t.elem),
        Type::Group(t) => is_unit(&t.elem),
        _ => false,
    }
}

/// Reports references, `impl Trait` and non-`'static` lifetimes anywhere inside `ty`: what crosses
/// the wire must be an owned type. `what` is "argument types" or "return types".
fn check_owned(ty: &Type, what: &str, errors: &mut Errors) {
    match ty {
        Type::Reference(_) => {
            errors.push(Error::new_spanned(ty, format!("{what} must be owned, e.g. `String` instead of `&str`")))
        }
        Type::ImplTrait(_) => {
            errors.push(Error::new_spanned(ty, format!("{what} cannot be `impl Trait`; name a concrete owned type")))
        }
        Type::Array(t) => check_owned(&t.elem, what, errors),
        Type::Group(t) => check_owned(&t.elem, what, errors),
        Type::Paren(t) => check_owned(&t.elem, what, errors),
        Type::Ptr(t) => check_owned(&t.elem, what, errors),
        Type::Slice(t) => check_owned(&t.elem, what, errors),
        Type::Tuple(t) => t.elems.iter().for_each(|t| check_owned(t, what, errors)),
        Type::Path(t) => {
            if let Some(qself) = &t.qself {
                check_owned(&qself.ty, what, errors);
            }
            for segment in &t.path.segments {
                check_path_arguments(&segment.arguments, what, errors);
            }
        }
        Type::TraitObject(t) => {
            for bound in &t.bounds {
                match bound {
                    TypeParamBound::Lifetime(lifetime) => check_lifetime(lifetime, what, errors),
                    TypeParamBound::Trait(t) => {
                        for segment in &t.path.segments {
                            check_path_arguments(&segment.arguments, what, errors);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn check_path_arguments(arguments: &PathArguments, what: &str, errors: &mut Errors) {
    match arguments {
        PathArguments::None => {}
        PathArguments::AngleBracketed(args) => {
            for arg in &args.args {
                match arg {
                    GenericArgument::Type(ty) => check_owned(ty, what, errors),
                    GenericArgument::Lifetime(lifetime) => check_lifetime(lifetime, what, errors),
                    GenericArgument::AssocType(assoc) => check_owned(&assoc.ty, what, errors),
                    _ => {}
                }
            }
        }
        PathArguments::Parenthesized(args) => {
            args.inputs.iter().for_each(|t| check_owned(t, what, errors));
            if let ReturnType::Type(_, ty) = &args.output {
                check_owned(ty, what, errors);
            }
        }
    }
}

fn check_lifetime(lifetime: &syn::Lifetime, what: &str, errors: &mut Errors) {
    if lifetime.ident != "static" {
        errors.push(Error::new_spanned(
            lifetime,
            format!("{what} must be owned: only the `'static` lifetime is allowed"),
        ));
    }
}

/// Collects errors and combines them into one.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn finish(self) -> Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
