//! Compile-fail tests: each misuse of `#[relay_service]` gives exactly one clear, spanned error.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
