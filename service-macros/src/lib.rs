//! The `#[relay_service]` attribute macro.
//!
//! Don't depend on this crate directly: use it through
//! [`relay_rpc::relay_service`](https://docs.rs/relay-rpc/latest/relay_rpc/attr.relay_service.html),
//! whose documentation describes what the macro generates. Every path the macro emits names
//! `::relay_rpc`, so this crate only works together with that one.
//!
//! The macro reads the trait (`ast.rs`), checks it and reports every mistake with a span
//! (`valid.rs`), and generates the code (`expand.rs`).

#![deny(missing_docs)]

mod ast;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Turns a trait of `async fn`s into a relay service contract; see `relay_rpc::relay_service`.
#[proc_macro_attribute]
pub fn relay_service(args: TokenStream, input: TokenStream) -> TokenStream {
    match syn::parse::<syn::Item>(input) {
        Ok(syn::Item::Trait(item)) => expand::relay_service(args.into(), &item).into(),
        Ok(_) | Err(_) => syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[relay_service] goes on a trait, e.g. `pub trait Calculator { async fn add(a: i64, b: i64) -> i64; }`",
        )
        .to_compile_error()
        .into(),
    }
}
