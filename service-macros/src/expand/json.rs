//! The JSON half of `Dispatch` for `ServeFoo<S>`: building a request from a JSON object of named
//! arguments, and turning a response into the reply to an HTTP call (`relay_rpc::json`).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{GenericArgument, Ident, PathArguments, Type};

use super::{Generator, arg_ident, compact, variant};
use crate::ast::Method;

impl Generator<'_> {
    /// `json_request` and `json_response`, inside the `Dispatch` impl.
    pub(super) fn json_methods(&self) -> TokenStream {
        let json_request = self.json_request();
        let json_response = self.json_response();
        quote! {
            #json_request
            #json_response
        }
    }

    /// `json_request`: per method, a hidden `Deserialize` struct of the named arguments, decoded
    /// from the body and moved into the request variant.
    fn json_request(&self) -> TokenStream {
        let request = &self.request;
        let method = Ident::new("__relay_method", Span::mixed_site());
        let body = Ident::new("__relay_body", Span::mixed_site());
        let arguments = Ident::new("__relay_arguments", Span::mixed_site());
        let arms = self.service.methods.iter().map(|m| {
            let name = &m.name;
            let variant = variant(m);
            let fields: Vec<&Ident> = m.args.iter().map(arg_ident).collect();
            let types = m.args.iter().map(|arg| arg.ty);
            quote! {
                #name => {
                    #[derive(::relay_rpc::__private::serde::Deserialize)]
                    #[serde(crate = "::relay_rpc::__private::serde")]
                    struct __RelayArguments {
                        #(#fields: #types,)*
                    }
                    let #arguments: __RelayArguments = ::relay_rpc::__private::json_arguments(#body)?;
                    ::core::result::Result::Ok(#request::#variant { #(#fields: #arguments.#fields),* })
                }
            }
        });
        quote! {
            fn json_request(
                #method: &::core::primitive::str,
                #body: &[::core::primitive::u8],
            ) -> ::core::result::Result<#request, ::relay_rpc::__private::JsonCallError> {
                match #method {
                    #(#arms)*
                    _ => ::core::result::Result::Err(::relay_rpc::__private::JsonCallError::unknown_method(#method)),
                }
            }
        }
    }

    /// `json_response`: `200` with the result; for a `Result<T, E>`, `Err(e)` is the service's
    /// error, named by `E` as written, with `E`'s `HttpErrorCode` if it implements it.
    fn json_response(&self) -> TokenStream {
        let response = &self.response;
        let response_var = Ident::new("__relay_response", Span::mixed_site());
        let value = Ident::new("__relay_value", Span::mixed_site());
        let error = Ident::new("__relay_error", Span::mixed_site());
        let code = Ident::new("__relay_code", Span::mixed_site());
        let reply = quote!(::relay_rpc::__private::JsonReply);
        let arms = self.service.methods.iter().map(|m| {
            let variant = variant(m);
            let body = match service_error_type(m) {
                Some(error_type) => {
                    let error_name = compact(quote!(#error_type));
                    quote! {
                        match #value {
                            ::core::result::Result::Ok(#value) => #reply::value(&#value),
                            ::core::result::Result::Err(#error) => {
                                // Autoref specialization: `E`'s own `HttpErrorCode` if it has one.
                                use ::relay_rpc::__private::{DefaultErrorCode as _, ImplementedErrorCode as _};
                                let #code = (&#error).__relay_code();
                                #reply::service_error(#code, #error_name, &#error)
                            }
                        }
                    }
                }
                None => quote!(#reply::value(&#value)),
            };
            quote!(#response::#variant(#value) => #body,)
        });
        quote! {
            fn json_response(#response_var: #response) -> ::relay_rpc::__private::JsonReply {
                match #response_var {
                    #(#arms)*
                    #response::__Unknown(..) => ::relay_rpc::__private::json_unexpected("an unknown method's response"),
                    #response::__Undecodable(..) => ::relay_rpc::__private::json_unexpected("an undecodable response"),
                }
            }
        }
    }
}

/// `E` if the method returns `Result<T, E>` (any path whose last segment is `Result` with two
/// type arguments): such a method's `Err` is the service's own error.
fn service_error_type<'m>(m: &Method<'m>) -> Option<&'m Type> {
    let Some(Type::Path(path)) = m.output else { return None };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    match types[..] {
        [_, error] if last.ident == "Result" && args.args.len() == 2 => Some(error),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_type_of(method: syn::TraitItemFn) -> Option<String> {
        let method = Method::from_syn(&method);
        service_error_type(&method).map(|ty| compact(quote!(#ty)))
    }

    #[test]
    fn results_are_spotted_by_their_last_segment() {
        let error = |m| error_type_of(m);
        assert_eq!(
            error(syn::parse_quote!(
                async fn f() -> Result<i64, MathError>;
            ))
            .as_deref(),
            Some("MathError")
        );
        assert_eq!(
            error(syn::parse_quote!(
                async fn f() -> ::core::result::Result<u64, Vec<u8>>;
            ))
            .as_deref(),
            Some("Vec<u8>")
        );
        assert_eq!(
            error(syn::parse_quote!(
                async fn f() -> io::Result<u64>;
            )),
            None
        );
        assert_eq!(
            error(syn::parse_quote!(
                async fn f() -> Option<u64>;
            )),
            None
        );
        assert_eq!(
            error(syn::parse_quote!(
                async fn f();
            )),
            None
        );
        assert_eq!(
            error(syn::parse_quote!(
                async fn f() -> Outcome<u64, E>;
            )),
            None
        );
    }
}
