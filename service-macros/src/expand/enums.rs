//! `FooRequest` and `FooResponse`: the messages, one variant per method, and their encoding.
//!
//! Each message is encoded as a tuple: the method's wire id (a `u32`, see `Method::id`), then the
//! arguments (requests) or the result (responses). A message whose id this side does not know
//! decodes to the hidden `__Unknown(id)` variant instead of failing or, worse, being read as
//! another method: that is what lets a contract evolve. The impls are written out rather than
//! derived because a derived enum encoding names variants by position.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote};
use syn::Ident;

use super::{Generator, arg_ident, doc, id_literal, is_byte_vec, output_type, variant};

impl Generator<'_> {
    /// `FooRequest` and `FooResponse`, with their serde, `Debug` and `RequestName` impls.
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
                let ident = arg_ident(arg);
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
        let unknown_name = format!("{}.<unknown method>", name.value());
        let unknown_doc = doc(format!(
            "A method id the `{}` contract does not have, from a peer that speaks another version of \
             it. Never sent by this side.",
            service.name,
        ));
        let undecodable_doc = doc(format!(
            "A message for a method of the `{}` contract whose arguments or result did not decode: \
             the method id, and what the decoder said. Never sent by this side.",
            service.name,
        ));
        let undecodable_name = format!("{}.<undecodable request>", name.value());
        let serde_impls = self.serde_impls();
        let id = Ident::new("__relay_id", Span::mixed_site());
        quote! {
            #request_doc
            #vis enum #request {
                #(#request_variants,)*
                #unknown_doc
                #[doc(hidden)]
                __Unknown(::core::primitive::u32),
                #undecodable_doc
                #[doc(hidden)]
                __Undecodable(::relay_rpc::__private::String),
            }

            #response_doc
            #vis enum #response {
                #(#response_variants,)*
                #unknown_doc
                #[doc(hidden)]
                __Unknown(::core::primitive::u32),
                #undecodable_doc
                #[doc(hidden)]
                __Undecodable(::relay_rpc::__private::String),
            }

            #serde_impls

            impl ::relay_rpc::__private::Undecodable for #request {
                fn undecodable(detail: ::relay_rpc::__private::String) -> Self {
                    #request::__Undecodable(detail)
                }
            }

            impl ::relay_rpc::__private::Undecodable for #response {
                fn undecodable(detail: ::relay_rpc::__private::String) -> Self {
                    #response::__Undecodable(detail)
                }
            }

            impl ::relay_rpc::__private::RequestName for #request {
                fn name(&self) -> &str {
                    match *self {
                        #(#request::#variants { .. } => #request_names,)*
                        #request::__Unknown(..) => #unknown_name,
                        #request::__Undecodable(..) => #undecodable_name,
                    }
                }
            }

            impl ::core::fmt::Debug for #request {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    match *self {
                        #(#request::#variants { .. } => f.write_str(#variant_names),)*
                        #request::__Unknown(#id) => ::core::write!(f, "Unknown({:#010x})", #id),
                        #request::__Undecodable(..) => f.write_str("Undecodable"),
                    }
                }
            }

            impl ::core::fmt::Debug for #response {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    match *self {
                        #(#response::#variants(..) => f.write_str(#variant_names2),)*
                        #response::__Unknown(#id) => ::core::write!(f, "Unknown({:#010x})", #id),
                        #response::__Undecodable(..) => f.write_str("Undecodable"),
                    }
                }
            }
        }
    }

    /// `Serialize` and `Deserialize` for both enums: `(id, arguments...)` and `(id, result)`.
    fn serde_impls(&self) -> TokenStream {
        let Generator { service, request, response, .. } = self;
        let methods = &service.methods;
        let serde = quote!(::relay_rpc::__private::serde);
        let value = Ident::new("__relay_value", Span::mixed_site());

        let request_arms = methods.iter().map(|m| {
            let variant = variant(m);
            let args: Vec<&Ident> = m.args.iter().map(arg_ident).collect();
            let fields: Vec<TokenStream> =
                m.args.iter().map(|arg| field(arg_ident(arg), is_byte_vec(arg.ty))).collect();
            let encoded = encode(&id_literal(m), &fields);
            quote!(#request::#variant { #(#args),* } => { #encoded })
        });
        let response_arms = methods.iter().map(|m| {
            let variant = variant(m);
            let encoded = encode(&id_literal(m), &[field(&value, m.output.is_some_and(is_byte_vec))]);
            quote!(#response::#variant(#value) => { #encoded })
        });
        let id = Ident::new("__relay_id", Span::mixed_site());
        let encode_unknown = encode(&quote!(#id), &[]);
        // Never sent; were it sent, the peer would read it as a method it lacks.
        let encode_undecodable = encode(&quote!(::core::primitive::u32::MAX), &[]);

        let request_decoders = methods.iter().map(|m| {
            let variant = variant(m);
            let args: Vec<&Ident> = m.args.iter().map(arg_ident).collect();
            let reads = m.args.iter().enumerate().map(|(i, arg)| {
                let ident = arg_ident(arg);
                let read = next_element(i + 1, is_byte_vec(arg.ty));
                quote!(let #ident = #read;)
            });
            let id = id_literal(m);
            catching(&id, request, quote!(#(#reads)* ::core::result::Result::Ok(#request::#variant { #(#args),* })))
        });
        let response_decoders = methods.iter().map(|m| {
            let variant = variant(m);
            let id = id_literal(m);
            let read = next_element(1, m.output.is_some_and(is_byte_vec));
            catching(&id, response, quote!(let #value = #read; ::core::result::Result::Ok(#response::#variant(#value))))
        });
        let request_len = 1 + methods.iter().map(|m| m.args.len()).max().unwrap_or(0);
        let expecting_request = format!("a request of the `{}` contract", service.name);
        let expecting_response = format!("a response of the `{}` contract", service.name);
        let decode_request = decode(request, request_len, &expecting_request, request_decoders);
        let decode_response = decode(response, 2, &expecting_response, response_decoders);
        let serializer = Ident::new("__relay_serializer", Span::mixed_site());
        quote! {
            impl #serde::Serialize for #request {
                fn serialize<__S>(&self, #serializer: __S) -> ::core::result::Result<__S::Ok, __S::Error>
                where
                    __S: #serde::Serializer,
                {
                    match self {
                        #(#request_arms)*
                        #request::__Unknown(#id) => { #encode_unknown }
                        #request::__Undecodable(..) => { #encode_undecodable }
                    }
                }
            }

            impl #serde::Serialize for #response {
                fn serialize<__S>(&self, #serializer: __S) -> ::core::result::Result<__S::Ok, __S::Error>
                where
                    __S: #serde::Serializer,
                {
                    match self {
                        #(#response_arms)*
                        #response::__Unknown(#id) => { #encode_unknown }
                        #response::__Undecodable(..) => { #encode_undecodable }
                    }
                }
            }

            #decode_request
            #decode_response
        }
    }
}

/// The decoder arm for method `id`: runs `body` (which reads the rest of the tuple), and turns
/// its error into `__Undecodable(id, detail)`. The message is the last thing in its frame, so
/// stopping part way through it leaves nothing else unread.
fn catching(id: &Literal, ty: &Ident, body: TokenStream) -> TokenStream {
    let error = Ident::new("__relay_error", Span::mixed_site());
    let read = Ident::new("__relay_read", Span::mixed_site());
    let message = Ident::new("__relay_message", Span::mixed_site());
    quote! {
        #id => {
            let mut #read = || -> ::core::result::Result<#ty, __A::Error> { #body };
            match #read() {
                ::core::result::Result::Ok(#message) => ::core::result::Result::Ok(#message),
                ::core::result::Result::Err(#error) => ::core::result::Result::Ok(
                    #ty::__Undecodable(::relay_rpc::__private::undecodable(&#error)),
                ),
            }
        }
    }
}

/// Serializes the tuple `(id, fields...)`; `fields` are references.
fn encode(id: &impl ToTokens, fields: &[TokenStream]) -> TokenStream {
    let serde = quote!(::relay_rpc::__private::serde);
    let serializer = Ident::new("__relay_serializer", Span::mixed_site());
    let tuple = Ident::new("__relay_tuple", Span::mixed_site());
    let len = Literal::usize_unsuffixed(1 + fields.len());
    quote! {
        let mut #tuple = #serde::Serializer::serialize_tuple(#serializer, #len)?;
        #serde::ser::SerializeTuple::serialize_element(&mut #tuple, &#id)?;
        #(#serde::ser::SerializeTuple::serialize_element(&mut #tuple, #fields)?;)*
        #serde::ser::SerializeTuple::end(#tuple)
    }
}

/// A field to encode (a reference named `ident`); a `Vec<u8>` as one byte string.
fn field(ident: &Ident, byte_vec: bool) -> TokenStream {
    if byte_vec { quote!(&::relay_rpc::__private::AsBytes(#ident)) } else { quote!(#ident) }
}

/// Reads element `index` of the tuple being decoded (a `Vec<u8>` from one byte string if
/// `byte_vec`), or returns an "invalid length" error.
fn next_element(index: usize, byte_vec: bool) -> TokenStream {
    let serde = quote!(::relay_rpc::__private::serde);
    let seq = Ident::new("__relay_seq", Span::mixed_site());
    let element = Ident::new("__relay_element", Span::mixed_site());
    let index = Literal::usize_unsuffixed(index);
    let (ty, value) = if byte_vec {
        (quote!(::<::relay_rpc::__private::ByteBuf>), quote!(#element.0))
    } else {
        (quote!(), quote!(#element))
    };
    quote! {
        match #serde::de::SeqAccess::next_element #ty(&mut #seq)? {
            ::core::option::Option::Some(#element) => #value,
            ::core::option::Option::None => {
                return ::core::result::Result::Err(#serde::de::Error::invalid_length(#index, &self));
            }
        }
    }
}

/// `Deserialize` for `ty`: reads the id, then the arm of `decoders` for it, else `__Unknown(id)`.
/// `len` is the longest tuple any variant has.
fn decode(ty: &Ident, len: usize, expecting: &str, decoders: impl Iterator<Item = TokenStream>) -> TokenStream {
    let serde = quote!(::relay_rpc::__private::serde);
    let deserializer = Ident::new("__relay_deserializer", Span::mixed_site());
    let visitor = Ident::new("__RelayVisitor", Span::mixed_site());
    let seq = Ident::new("__relay_seq", Span::mixed_site());
    let id = Ident::new("__relay_id", Span::mixed_site());
    let formatter = Ident::new("__relay_formatter", Span::mixed_site());
    let read_id = next_element(0, false);
    let len = Literal::usize_unsuffixed(len);
    quote! {
        impl<'de> #serde::Deserialize<'de> for #ty {
            fn deserialize<__D>(#deserializer: __D) -> ::core::result::Result<Self, __D::Error>
            where
                __D: #serde::Deserializer<'de>,
            {
                struct #visitor;

                impl<'de> #serde::de::Visitor<'de> for #visitor {
                    type Value = #ty;

                    fn expecting(&self, #formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        #formatter.write_str(#expecting)
                    }

                    fn visit_seq<__A>(self, mut #seq: __A) -> ::core::result::Result<#ty, __A::Error>
                    where
                        __A: #serde::de::SeqAccess<'de>,
                    {
                        let #id: ::core::primitive::u32 = #read_id;
                        match #id {
                            #(#decoders)*
                            _ => ::core::result::Result::Ok(#ty::__Unknown(#id)),
                        }
                    }
                }

                #serde::Deserializer::deserialize_tuple(#deserializer, #len, #visitor)
            }
        }
    }
}
