//! `FooClient`: the typed stub a caller uses.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Ident;
use syn::spanned::Spanned;

use super::{Generator, arg_ident, doc, docs_or, id_literal, output_type, signature, variant};
use crate::ast::Method;

impl Generator<'_> {
    /// `FooClient`: `CONTRACT`, `new`, `connect` and one async method per trait method.
    pub(super) fn client(&self) -> TokenStream {
        let Generator { service, name, request, response, client, .. } = self;
        let vis = &service.original.vis;
        let trait_name = service.ident;
        let inner = Ident::new("__relay_inner", Span::mixed_site());
        let descriptors = service.methods.iter().map(|m| {
            let name = &m.name;
            let signature = signature(m);
            let oneway = m.is_oneway().then(|| quote!(.oneway()));
            let idempotent = m.is_idempotent().then(|| quote!(.idempotent()));
            let args = m.args.iter().map(|arg| arg.ty);
            let output = output_type(m);
            quote! {
                ::relay_rpc::__private::MethodDescriptor::new(#name, #signature) #oneway #idempotent
                    .traced(|| ::relay_rpc::__private::MethodShapes::new()
                        #(.arg::<#args>())*
                        .result::<#output>())
            }
        });
        // The macro and the runtime compute each method's wire id; prove at compile time that
        // they agree.
        let id_checks = service.methods.iter().map(|m| {
            let name = &m.name;
            let id = id_literal(m);
            quote!(::core::assert!(::relay_rpc::__private::method_id(#name) == #id);)
        });
        let methods = service.methods.iter().map(|m| self.client_method(m));
        let client_doc = doc(format!(
            "A client for the `{}` contract: one async method per method of `{trait_name}`, \
             each taking a `CallContext` first.",
            service.name,
        ));
        let client_name = client.to_string();
        quote! {
            #client_doc
            #vis struct #client {
                inner: ::relay_rpc::__private::ClientStub<#request, #response>,
            }

            impl ::core::clone::Clone for #client {
                fn clone(&self) -> Self {
                    Self { inner: ::core::clone::Clone::clone(&self.inner) }
                }
            }

            impl ::core::fmt::Debug for #client {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.debug_struct(#client_name).field("inner", &self.inner).finish()
                }
            }

            impl #client {
                /// The contract this client speaks. Its fingerprints cover the full shapes of
                /// every argument and result, traced when first needed.
                pub const CONTRACT: &'static ::relay_rpc::__private::ContractDescriptor = {
                    static CONTRACT: ::relay_rpc::__private::ContractDescriptor =
                        ::relay_rpc::__private::ContractDescriptor::new(#name, &[#(#descriptors),*]);
                    &CONTRACT
                };

                /// Wraps a channel that is already open to a host of this contract. The
                /// client never opens another: see [`relay_rpc::client`] for what happens when
                /// that channel breaks.
                pub fn new(channel: ::relay_rpc::Channel) -> Self {
                    Self { inner: ::relay_rpc::__private::ClientStub::new(channel, Self::CONTRACT) }
                }

                /// Opens a channel to the service registered at `address` over `connection`,
                /// checking that the host speaks this contract (the shapes of every argument
                /// and result). When the channel breaks, the client opens a new one as
                /// [`relay_rpc::client`] describes: which calls fail, and which are sent again
                /// (those of `#[idempotent]` methods, whose arguments must then be `Clone`).
                /// Clones share the channel.
                pub async fn connect(
                    connection: &::relay_rpc::Connection,
                    address: &str,
                ) -> ::core::result::Result<Self, ::relay_rpc::OpenError> {
                    ::relay_rpc::__private::ClientStub::connect(connection, address, Self::CONTRACT)
                        .await
                        .map(|#inner| Self { inner: #inner })
                }

                #(#methods)*
            }

            const _: () = {
                #(#id_checks)*
            };
        }
    }

    fn client_method(&self, m: &Method<'_>) -> TokenStream {
        let Generator { name, request, response, .. } = self;
        let ident = m.ident;
        let method_name = &m.name;
        let variant = variant(m);
        let docs = docs_or(m, || {
            if m.is_oneway() {
                format!(
                    "Sends `{}::{}` to the remote service without waiting for it to run (one-way).",
                    self.service.ident, m.name
                )
            } else {
                format!("Calls `{}::{}` on the remote service.", self.service.ident, m.name)
            }
        });
        let lints = &m.attrs.lints;
        let ctx = Ident::new("ctx", Span::mixed_site());
        let value = Ident::new("__relay_value", Span::mixed_site());
        let arg_names: Vec<&Ident> = m.args.iter().map(arg_ident).collect();
        let arg_types: Vec<&syn::Type> = m.args.iter().map(|arg| arg.ty).collect();
        let output = output_type(m);
        // `ctx` makes one argument more than the trait method has, past what the user controls.
        let allow_many_args = (m.args.len() + 2 > 7).then(|| quote!(#[allow(clippy::too_many_arguments)]));
        // Docs, attributes, name and parameters: the same for every kind of method.
        let head = quote! {
            #docs
            #(#lints)*
            #allow_many_args
            pub async fn #ident(&self, #ctx: ::relay_rpc::CallContext, #(#arg_names: #arg_types),*)
        };
        if m.is_oneway() {
            return quote! {
                #head -> ::core::result::Result<(), ::relay_rpc::CallError> {
                    self.inner.oneway(#ctx, #request::#variant { #(#arg_names),* }).await
                }
            };
        }
        let call = if m.is_idempotent() {
            // Each copy of the request clones the arguments; the error for an argument type that
            // is not `Clone` points at the type.
            let copies = arg_names
                .iter()
                .zip(&arg_types)
                .map(|(arg, ty)| quote_spanned!(ty.span()=> #arg: <#ty as ::core::clone::Clone>::clone(&#arg)));
            quote!(self.inner.call_idempotent(#ctx, #method_name, || #request::#variant { #(#copies),* }))
        } else {
            quote!(self.inner.call(#ctx, #method_name, #request::#variant { #(#arg_names),* }))
        };
        quote! {
            #head -> ::core::result::Result<#output, ::relay_rpc::CallError> {
                match #call.await? {
                    #response::#variant(#value) => ::core::result::Result::Ok(#value),
                    #response::__Undecodable(#value) => ::core::result::Result::Err(
                        ::relay_rpc::__private::undecodable_response(#name, #method_name, #value),
                    ),
                    #[allow(unreachable_patterns)]
                    _ => ::core::result::Result::Err(
                        ::relay_rpc::__private::unexpected_response(#name, #method_name),
                    ),
                }
            }
        }
    }
}
