//! `FooRequest` and `FooResponse`: the messages, one variant per method.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Ident;

use super::{Generator, doc, output_type, variant};

impl Generator<'_> {
    /// `FooRequest` and `FooResponse`, with their `Debug` and `RequestName` impls.
    pub(super) fn enums(&self) -> TokenStream {
        let Generator { service, name, request, response, .. } = self;
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
        let request_names = methods.iter().map(|m| format!("{}.{}", name.value(), m.name));
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
}
