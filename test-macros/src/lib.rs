//! `#[meridian_test]`: one test attribute for native and wasm32 targets.
//!
//! Natively it means `#[test]`, or `#[tokio::test]` on an `async fn`; on wasm32 it means
//! `#[wasm_bindgen_test::wasm_bindgen_test]`, which runs sync and async tests in Node or a
//! browser (`wasm-bindgen-test-runner`). The crate using it needs `tokio` (with `macros`
//! and `rt`, for async tests) as a native dev-dependency and `wasm-bindgen-test` as a
//! wasm32 dev-dependency.
//!
//! Plain `proc_macro` token handling: the attribute only looks at the function's
//! qualifiers, and the function is passed on untouched.

use std::str::FromStr;

use proc_macro::{TokenStream, TokenTree};

/// Marks a test that runs natively and on wasm32.
///
/// ```ignore
/// use meridian_test_macros::meridian_test;
///
/// #[meridian_test]
/// fn sync_test() {}
///
/// #[meridian_test]
/// async fn async_test() {}
/// ```
///
/// It takes no arguments. Other attributes (`#[should_panic]`, `#[ignore]`) go after it.
#[proc_macro_attribute]
pub fn meridian_test(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return compile_error("#[meridian_test] takes no arguments");
    }
    // The qualifiers before `fn` are top-level identifiers; attributes and a `pub(crate)`
    // are groups, so they are skipped.
    let words: Vec<String> = item
        .clone()
        .into_iter()
        .filter_map(|token| match token {
            TokenTree::Ident(ident) => Some(ident.to_string()),
            _ => None,
        })
        .collect();
    let Some(is_async) = signature_is_async(words.iter().map(String::as_str)) else {
        return compile_error("#[meridian_test] goes on a function");
    };
    let mut out = parse(test_attributes(is_async));
    out.extend(item);
    out
}

/// Whether a function whose top-level words are `words` (`pub`, `async`, `fn`, its name,
/// ...) is an `async fn`; `None` if there is no `fn`.
fn signature_is_async<'a>(words: impl IntoIterator<Item = &'a str>) -> Option<bool> {
    let mut is_async = false;
    for word in words {
        match word {
            "fn" => return Some(is_async),
            "async" => is_async = true,
            _ => {}
        }
    }
    None
}

/// The attributes `#[meridian_test]` stands for.
fn test_attributes(is_async: bool) -> &'static str {
    if is_async {
        "#[cfg_attr(not(target_arch = \"wasm32\"), tokio::test)] \
         #[cfg_attr(target_arch = \"wasm32\", wasm_bindgen_test::wasm_bindgen_test)]"
    } else {
        "#[cfg_attr(not(target_arch = \"wasm32\"), test)] \
         #[cfg_attr(target_arch = \"wasm32\", wasm_bindgen_test::wasm_bindgen_test)]"
    }
}

fn compile_error(message: &str) -> TokenStream {
    parse(&format!("compile_error!({message:?});"))
}

fn parse(source: &str) -> TokenStream {
    match TokenStream::from_str(source) {
        Ok(tokens) => tokens,
        // Only our own constant sources are parsed.
        Err(err) => panic!("meridian_test: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_is_found_among_the_qualifiers_before_fn() {
        assert_eq!(signature_is_async(["fn", "f"]), Some(false));
        assert_eq!(signature_is_async(["async", "fn", "f"]), Some(true));
        assert_eq!(signature_is_async(["pub", "async", "fn", "f"]), Some(true));
        // A parameter or a body word named `async` comes after `fn` and is not looked at.
        assert_eq!(signature_is_async(["fn", "async_test"]), Some(false));
        assert_eq!(signature_is_async(["struct", "S"]), None);
    }

    #[test]
    fn async_tests_run_on_tokio_natively_and_every_test_on_wasm_bindgen_test() {
        let sync = test_attributes(false);
        let not_sync = test_attributes(true);
        assert!(sync.contains("not(target_arch = \"wasm32\"), test)"));
        assert!(not_sync.contains("not(target_arch = \"wasm32\"), tokio::test)"));
        for attrs in [sync, not_sync] {
            assert!(attrs.contains(
                "cfg_attr(target_arch = \"wasm32\", wasm_bindgen_test::wasm_bindgen_test)"
            ));
        }
    }
}
