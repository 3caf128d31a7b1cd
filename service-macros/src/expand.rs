//! Code generation: the rewritten trait, the request and response enums, the client and the
//! dispatcher.
//!
//! Every path in the output is absolute (`::relay_rpc::…` or `::core::…`), and every local name
//! the macro introduces is hygienic, so neither the user's imports nor their argument names can
//! change what the generated code means.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ItemTrait, LitStr};

use crate::ast::{Args, Method, Service};

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
        let ItemTrait {
            attrs,
            vis,
            unsafety,
            ident,
            generics,
            supertraits,
            ..
        } = self.service.original;
        let where_clause = &generics.where_clause;
        let supertraits = supertraits.iter();
        let others = &self.service.others;
        let mut seen = HashSet::new();
        let methods = self
            .service
            .methods
            .iter()
            .filter(|m| seen.insert(m.ident))
            .map(|m| {
                let attrs = &m.original.attrs;
                let ident = m.ident;
                // The user's own `fn` and `;` keep lints and errors about the method on the method.
                let fn_token = &m.original.sig.fn_token;
                let semi = quote_spanned!(m.original.sig.output.span()=> ;);
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

    /// `FooRequest` and `FooResponse`, with their `Debug` and `RequestName` impls.
    fn enums(&self) -> TokenStream {
        let Generator {
            service,
            name,
            request,
            response,
            ..
        } = self;
        let vis = &service.original.vis;
        let trait_name = service.ident;
        let methods = &service.methods;
        let variants: Vec<&Ident> = methods.iter().map(variant).collect();
        let request_doc = doc(format!(
            "A request to the `{}` contract: one variant per method of `{trait_name}`, \
             holding its arguments.",
            service.name,
        ));
        let response_doc = doc(format!(
            "A response from the `{}` contract: one variant per method of `{trait_name}`, \
             holding its result.",
            service.name,
        ));
        let request_variants = methods.iter().map(|m| {
            let variant = variant(m);
            let variant_doc = doc(format!("The arguments of `{trait_name}::{}`.", m.name));
            let fields = m.args.iter().map(|arg| {
                let ident = arg.ident.expect("validated: plain argument names");
                let ty = arg.ty;
                let field_doc = doc(format!("The `{ident}` argument."));
                quote!(#field_doc #ident: #ty)
            });
            quote!(#variant_doc #variant { #(#fields),* })
        });
        let response_variants = methods.iter().map(|m| {
            let variant = variant(m);
            let doc = doc(format!("The result of `{trait_name}::{}`.", m.name));
            let output = output_type(m);
            quote!(#doc #variant(#output))
        });
        let variant_names = variants.iter().map(|v| v.to_string());
        let variant_names2 = variant_names.clone();
        let request_names = methods
            .iter()
            .map(|m| format!("{}.{}", name.value(), m.name));
        let serde = quote! {
            #[derive(::relay_rpc::__private::serde::Serialize, ::relay_rpc::__private::serde::Deserialize)]
            #[serde(crate = "::relay_rpc::__private::serde")]
        };
        quote! {
            #request_doc
            #serde
            #vis enum #request {
                #(#request_variants,)*
            }

            #response_doc
            #serde
            #vis enum #response {
                #(#response_variants,)*
            }

            impl ::relay_rpc::__private::RequestName for #request {
                fn name(&self) -> &str {
                    match *self {
                        #(#request::#variants { .. } => #request_names,)*
                    }
                }
            }

            impl ::core::fmt::Debug for #request {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    match *self {
                        #(#request::#variants { .. } => f.write_str(#variant_names),)*
                    }
                }
            }

            impl ::core::fmt::Debug for #response {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    match *self {
                        #(#response::#variants(..) => f.write_str(#variant_names2),)*
                    }
                }
            }
        }
    }

    /// `FooClient`: `CONTRACT`, `new`, `connect` and one async method per trait method.
    fn client(&self) -> TokenStream {
        let Generator {
            service,
            name,
            request,
            response,
            client,
            ..
        } = self;
        let vis = &service.original.vis;
        let trait_name = service.ident;
        let inner = Ident::new("__relay_inner", Span::mixed_site());
        let descriptors = service.methods.iter().map(|m| {
            let name = &m.name;
            let signature = signature(m);
            quote!(::relay_rpc::__private::MethodDescriptor::new(#name, #signature))
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
                /// The contract this client speaks.
                pub const CONTRACT: &'static ::relay_rpc::__private::ContractDescriptor =
                    &::relay_rpc::__private::ContractDescriptor::new(#name, &[#(#descriptors),*]);

                /// Wraps a channel that is already open to a host of this contract.
                pub fn new(channel: ::relay_rpc::Channel) -> Self {
                    Self { inner: ::relay_rpc::__private::ClientStub::new(channel) }
                }

                /// Opens a channel to the service registered at `address` over `connection`,
                /// checking that the host speaks this contract.
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
        }
    }

    fn client_method(&self, m: &Method<'_>) -> TokenStream {
        let Generator {
            name,
            request,
            response,
            ..
        } = self;
        let ident = m.ident;
        let method_name = &m.name;
        let variant = variant(m);
        let docs = docs_or(&m.original.attrs, || {
            format!(
                "Calls `{}::{}` on the remote service.",
                self.service.ident, m.name
            )
        });
        let ctx = Ident::new("ctx", Span::mixed_site());
        let value = Ident::new("__relay_value", Span::mixed_site());
        let arg_names: Vec<&Ident> = m.args.iter().map(arg_ident).collect();
        let arg_types = m.args.iter().map(|arg| arg.ty);
        let output = output_type(m);
        quote! {
            #docs
            pub async fn #ident(
                &self,
                #ctx: ::relay_rpc::CallContext,
                #(#arg_names: #arg_types),*
            ) -> ::core::result::Result<#output, ::relay_rpc::CallError> {
                match self.inner.call(#ctx, #request::#variant { #(#arg_names),* }).await? {
                    #response::#variant(#value) => ::core::result::Result::Ok(#value),
                    #[allow(unreachable_patterns)]
                    _ => ::core::result::Result::Err(
                        ::relay_rpc::__private::unexpected_response(#name, #method_name),
                    ),
                }
            }
        }
    }

    /// `ServeFoo<S>` and its `Dispatch` impl.
    fn server(&self) -> TokenStream {
        let Generator {
            service,
            request,
            response,
            client,
            server,
            param,
            ..
        } = self;
        let vis = &service.original.vis;
        let trait_name = service.ident;
        let service_var = Ident::new("__relay_service", Span::mixed_site());
        let request_var = Ident::new("__relay_request", Span::mixed_site());
        let arms = service.methods.iter().map(|m| {
            let ident = m.ident;
            let variant = variant(m);
            let args: Vec<&Ident> = m.args.iter().map(arg_ident).collect();
            quote! {
                #request::#variant { #(#args),* } => #response::#variant(
                    <#param as #trait_name>::#ident(&*#service_var, #(#args),*).await,
                ),
            }
        });
        let server_doc = doc(format!(
            "Serves the `{}` contract by dispatching each request to an implementation of \
             `{trait_name}`.",
            service.name,
        ));
        let server_name = server.to_string();
        quote! {
            #server_doc
            #vis struct #server<#param> {
                service: ::relay_rpc::__private::Arc<#param>,
            }

            impl<#param> ::core::clone::Clone for #server<#param> {
                fn clone(&self) -> Self {
                    Self { service: ::core::clone::Clone::clone(&self.service) }
                }
            }

            impl<#param> ::core::fmt::Debug for #server<#param> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.debug_struct(#server_name).finish_non_exhaustive()
                }
            }

            impl<#param: #trait_name> #server<#param> {
                /// Serves `service`.
                pub fn new(service: #param) -> Self {
                    Self { service: ::relay_rpc::__private::Arc::new(service) }
                }

                /// Serves a service that is already shared.
                pub fn from_arc(service: ::relay_rpc::__private::Arc<#param>) -> Self {
                    Self { service }
                }
            }

            impl<#param: #trait_name> ::relay_rpc::__private::Dispatch for #server<#param> {
                type Request = #request;
                type Response = #response;
                const CONTRACT: &'static ::relay_rpc::__private::ContractDescriptor =
                    #client::CONTRACT;

                fn dispatch(
                    &self,
                    #request_var: #request,
                ) -> impl ::core::future::Future<Output = #response>
                       + ::core::marker::Send
                       + 'static {
                    let #service_var = ::core::clone::Clone::clone(&self.service);
                    async move {
                        match #request_var {
                            #(#arms)*
                        }
                    }
                }
            }
        }
    }
}

/// The method's variant; only called after validation, which guarantees one.
fn variant<'m>(m: &'m Method<'_>) -> &'m Ident {
    m.variant.as_ref().expect("validated: usable variant name")
}

/// The argument's name; only called after validation, which guarantees one.
fn arg_ident<'m>(arg: &crate::ast::Arg<'m>) -> &'m Ident {
    arg.ident.expect("validated: plain argument names")
}

/// The method's output type, `()` when none is written.
fn output_type(m: &Method<'_>) -> TokenStream {
    match m.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

/// `add(i64,i64)->i64`: the name, the argument types and the return type, without whitespace.
pub(crate) fn signature(m: &Method<'_>) -> String {
    let compact = |tokens: TokenStream| -> String {
        tokens
            .to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    };
    let args: Vec<String> = m
        .args
        .iter()
        .map(|arg| {
            let ty = arg.ty;
            compact(quote!(#ty))
        })
        .collect();
    format!(
        "{}({})->{}",
        m.name,
        args.join(","),
        compact(output_type(m))
    )
}

fn doc(text: String) -> TokenStream {
    quote!(#[doc = #text])
}

/// The `#[doc]` attributes among `attrs`, or one made by `default` if there are none.
fn docs_or(attrs: &[Attribute], default: impl FnOnce() -> String) -> TokenStream {
    let docs: Vec<&Attribute> = attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    if docs.is_empty() {
        doc(default())
    } else {
        quote!(#(#docs)*)
    }
}
