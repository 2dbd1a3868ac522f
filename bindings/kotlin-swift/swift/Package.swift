// swift-tools-version:5.9
//
// Meridian for Swift. Three modules:
//   MeridianFFIFFI  the C declarations of the native library (generated header and module map),
//                   or, when MeridianFFIFFI.xcframework sits next to this file, that XCFramework
//                   (the library for each Apple platform plus the same header; see README.md);
//   MeridianFFI     the Swift bindings uniffi generates (do not edit: `cargo xtask dist mobile`);
//   Meridian        what apps import: MeridianFFI re-exported, plus `events()` as an AsyncStream.
//
// Without the XCFramework, libmeridian_ffi must be on the linker's path:
//   swift build -Xlinker -L<repo>/target/debug        (and LD_LIBRARY_PATH to run, on Linux)

import Foundation
import PackageDescription

let xcframework = "MeridianFFIFFI.xcframework"
let hasXCFramework = FileManager.default.fileExists(
    atPath: Context.packageDirectory + "/" + xcframework)

let ffiTarget: Target =
    hasXCFramework
    ? .binaryTarget(name: "MeridianFFIFFI", path: xcframework)
    : .systemLibrary(name: "MeridianFFIFFI", path: "Sources/MeridianFFIFFI")

let package = Package(
    name: "Meridian",
    platforms: [.iOS(.v13), .macOS(.v10_15)],
    products: [
        .library(name: "Meridian", targets: ["Meridian"])
    ],
    targets: [
        ffiTarget,
        .target(
            name: "MeridianFFI",
            dependencies: ["MeridianFFIFFI"],
            path: "Sources/MeridianFFI",
            // The static library in the XCFramework leaves its system frameworks to the app.
            linkerSettings: hasXCFramework
                ? [.linkedFramework("Security"), .linkedFramework("CoreFoundation")]
                : [.linkedLibrary("meridian_ffi")]
        ),
        .target(
            name: "Meridian",
            dependencies: ["MeridianFFI"],
            path: "Sources/Meridian"
        ),
        // Needs a devserver: target/debug/devserver, or MERIDIAN_DEVSERVER.
        .testTarget(
            name: "MeridianTests",
            dependencies: ["Meridian"],
            path: "Tests/MeridianTests"
        ),
    ]
)
