//! Code generation: the rewritten trait, the request and response enums, the client and the
//! dispatcher.
//!
//! Every path in the output is absolute (`::relay_rpc::…` or `::core::…`), and every local name
//! the macro introduces is hygienic, so neither the user's imports nor their argument names can
//! change what the generated code means.

use std::collections::HashSet;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ItemTrait, LitStr};

use crate::ast::{Arg, Args, Method, Service};

mod client;
mod enums;
mod json;
mod server;

/// Expands `#[relay_service(args)]` on `item`. On any mistake, emits the errors plus a stub of the
/// rewritten trait, so one mistake gives one message rather than a cascade at every `impl`.
pub(crate) fn relay_service(args: TokenStream, item: &ItemTrait) -> TokenStream {
    let (args, args_error) = match Args::parse(args) {
        Ok(args) => (args, None),
        Err(error) => (Args::default(), Some(error)),
    };
    let service = Service::from_syn(item, args.name.as_ref());
    let error = match (args_error, service.validate()) {
        (None, Ok(())) => return Generator::new(&service).expand(),
        (Some(mut error), Err(more)) => {
            error.combine(more);
            error
        }
        (Some(error), Ok(())) | (None, Err(error)) => error,
    };
    let error = error.to_compile_error();
    let stub = Generator::new(&service).rewritten_trait();
    quote!(#error #stub)
}

/// Names and pieces shared by every generated item.
struct Generator<'a> {
    service: &'a Service<'a>,
    /// The contract name as a string literal.
    name: LitStr,
    request: Ident,
    response: Ident,
    client: Ident,
    server: Ident,
    /// The server's type parameter, `S` unless the trait itself is called `S`.
    param: Ident,
}

impl<'a> Generator<'a> {
    fn new(service: &'a Service<'a>) -> Self {
        let ident = service.ident;
        let param = if ident == "S" { "__S" } else { "S" };
        Generator {
            service,
            name: LitStr::new(&service.name, Span::call_site()),
            request: format_ident!("{}Request", ident),
            response: format_ident!("{}Response", ident),
            client: format_ident!("{}Client", ident),
            server: format_ident!("Serve{}", ident),
            param: Ident::new(param, Span::call_site()),
        }
    }

    fn expand(&self) -> TokenStream {
        let rewritten_trait = self.rewritten_trait();
        let enums = self.enums();
        let client = self.client();
        let server = self.server();
        quote! {
            #rewritten_trait
            #enums
            #client
            #server
        }
    }

    /// The trait with `&self` added and each `async fn` turned into a `Send` future.
    ///
    /// Also used as the stub after an error, so it must cope with anything `valid.rs` rejects:
    /// receivers, bodies and qualifiers are dropped, complex patterns become `_`, and a repeated
    /// method name is emitted once.
    fn rewritten_trait(&self) -> TokenStream {
        let ItemTrait { attrs, vis, unsafety, ident, generics, supertraits, .. } = self.service.original;
        let where_clause = &generics.where_clause;
        let supertraits = supertraits.iter();
        let others = &self.service.others;
        let mut seen = HashSet::new();
        let methods = self.service.methods.iter().filter(|m| seen.insert(m.ident)).map(|m| {
            // `#[oneway]` and `#[idempotent]` are the macro's; anything else was reported.
            let attrs = m.attrs.passed_on();
            let ident = m.ident;
            let fn_token = &m.original.sig.fn_token;
            let generics = &m.original.sig.generics;
            let where_clause = &generics.where_clause;
            let args = m.args.iter().map(|arg| {
                let ty = arg.ty;
                match arg.ident {
                    Some(ident) => quote!(#ident: #ty),
                    None => quote!(_: #ty),
                }
            });
            let output = output_type(m);
            let span = m.output.map_or_else(|| m.ident.span(), Spanned::span);
            let future = quote_spanned! {span=>
                impl ::core::future::Future<Output = #output> + ::core::marker::Send
            };
            quote! {
                #(#attrs)*
                #fn_token #ident #generics (&self, #(#args),*) -> #future #where_clause;
            }
        });
        quote! {
            #(#attrs)*
            #vis #unsafety trait #ident #generics:
                #(#supertraits +)* ::core::marker::Send + ::core::marker::Sync + 'static
            #where_clause
            {
                #(#others)*
                #(#methods)*
            }
        }
    }
}

/// The method's variant; only called after validation, which guarantees one.
fn variant<'m>(m: &'m Method<'_>) -> &'m Ident {
    m.variant.as_ref().expect("validated: usable variant name")
}

/// The argument's name; only called after validation, which guarantees one.
fn arg_ident<'m>(arg: &Arg<'m>) -> &'m Ident {
    arg.ident.expect("validated: plain argument names")
}

/// The method's output type, `()` when none is written.
fn output_type(m: &Method<'_>) -> TokenStream {
    match m.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

/// Whether `ty` is written `Vec<u8>` (with or without a path): such arguments and results are
/// encoded as one byte string, copied in one go, rather than byte by byte as a sequence. The
/// bytes on the wire are the same for bincode.
fn is_byte_vec(ty: &syn::Type) -> bool {
    let syn::Type::Path(path) = ty else { return false };
    let Some(last) = path.path.segments.last() else { return false };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return false };
    last.ident == "Vec"
        && args.args.len() == 1
        && matches!(&args.args[0], syn::GenericArgument::Type(syn::Type::Path(inner))
            if inner.qself.is_none() && inner.path.is_ident("u8"))
}

/// `add(i64,i64)->i64`: the name, the argument types and the return type, without whitespace.
fn signature(m: &Method<'_>) -> String {
    let args: Vec<String> = m
        .args
        .iter()
        .map(|arg| {
            let ty = arg.ty;
            compact(quote!(#ty))
        })
        .collect();
    format!("{}({})->{}", m.name, args.join(","), compact(output_type(m)))
}

/// `tokens` as a string without whitespace: `Vec < u8 >` becomes `Vec<u8>`.
fn compact(tokens: TokenStream) -> String {
    tokens.to_string().chars().filter(|c| !c.is_whitespace()).collect()
}

fn doc(text: String) -> TokenStream {
    quote!(#[doc = #text])
}

/// The method's doc comments, or one made by `default` if there are none.
fn docs_or(m: &Method<'_>, default: impl FnOnce() -> String) -> TokenStream {
    let docs: &[&Attribute] = &m.attrs.docs;
    if docs.is_empty() { doc(default()) } else { quote!(#(#docs)*) }
}

/// The method's wire id as a `u32` literal.
fn id_literal(m: &Method<'_>) -> Literal {
    Literal::u32_suffixed(m.id())
}
