//! `ServeFoo<S>`: the host-side dispatcher for any implementation of the trait.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Ident;

use super::{Generator, arg_ident, doc, variant};

impl Generator<'_> {
    /// `ServeFoo<S>` and its `Dispatch` impl.
    pub(super) fn server(&self) -> TokenStream {
        let Generator { service, request, response, client, server, param, .. } = self;
        let vis = &service.original.vis;
        let trait_name = service.ident;
        let service_var = Ident::new("__relay_service", Span::mixed_site());
        let request_var = Ident::new("__relay_request", Span::mixed_site());
        let arms = service.methods.iter().map(|m| {
            let ident = m.ident;
            let variant = variant(m);
            let args: Vec<&Ident> = m.args.iter().map(arg_ident).collect();
            quote! {
                #request::#variant { #(#args),* } => ::core::result::Result::Ok(#response::#variant(
                    <#param as #trait_name>::#ident(&*#service_var, #(#args),*).await,
                )),
            }
        });
        let id = Ident::new("__relay_id", Span::mixed_site());
        let detail = Ident::new("__relay_detail", Span::mixed_site());
        let server_doc = doc(format!(
            "Serves the `{}` contract by dispatching each request to an implementation of \
             `{trait_name}`.",
            service.name,
        ));
        let server_name = server.to_string();
        let json_methods = self.json_methods();
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

                // Deprecated methods are still served.
                #[allow(deprecated)]
                fn dispatch(
                    &self,
                    #request_var: #request,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<#response, ::relay_rpc::__private::DispatchError>,
                > + ::core::marker::Send + 'static {
                    let #service_var = ::core::clone::Clone::clone(&self.service);
                    async move {
                        match #request_var {
                            #(#arms)*
                            #request::__Unknown(#id) => ::core::result::Result::Err(
                                ::relay_rpc::__private::DispatchError::UnknownMethod { id: #id },
                            ),
                            #request::__Undecodable(#detail) => ::core::result::Result::Err(
                                ::relay_rpc::__private::DispatchError::Undecodable { detail: #detail },
                            ),
                        }
                    }
                }

                #json_methods
            }
        }
    }
}
