//! Meridian for native apps.
//!
//! This crate will hold the uniffi facade over the one `Client` API of [`meridian`]: the
//! exported objects, records, error enum and listener traits from which uniffi generates the
//! Kotlin and Swift bindings (`bindings/kotlin-swift/`) and, through
//! uniffi-bindgen-react-native, the React Native turbo module (`bindings/react-native/`),
//! plus the small `uniffi-bindgen` binary that generates them in library mode. It runs on
//! the core's native driver (tokio, rustls) and only converts types, errors and callbacks
//! into each platform's idiom: the API is defined once, in the core.
//!
//! Nothing is exported yet.
