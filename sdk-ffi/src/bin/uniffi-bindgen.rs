//! Generates the foreign bindings from the built library:
//! `cargo run -p meridian-ffi --features cli --bin uniffi-bindgen -- generate --library ...`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
