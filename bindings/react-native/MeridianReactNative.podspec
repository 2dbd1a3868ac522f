# The iOS pod of @meridian/react-native: the turbo module (ios/, generated), the JSI C++ (cpp/,
# generated) and the Rust library as an XCFramework that `ubrn build ios` writes to build/.
# This file is ours: ubrn.config.yaml lists it under noOverwrite.
require "json"

package = JSON.parse(File.read(File.join(__dir__, "package.json")))

Pod::Spec.new do |s|
  s.name         = "MeridianReactNative"
  s.version      = package["version"]
  s.summary      = package["description"]
  s.homepage     = package["homepage"]
  s.license      = { :type => package["license"], :file => "LICENSE" }
  s.authors      = package["author"]

  # min_ios_version_supported comes from React Native's scripts, which the app's Podfile loads.
  s.platforms    = { :ios => min_ios_version_supported }
  s.source       = { :git => package["repository"]["url"].delete_prefix("git+"), :tag => "#{s.version}" }

  s.source_files = "ios/**/*.{h,m,mm}", "cpp/**/*.{h,hpp,cpp}"
  s.vendored_frameworks = "build/MeridianFFIFramework.xcframework"
  # The Rust library's TLS stack (rustls-platform-verifier) refers to Security.framework.
  s.frameworks   = "Security"

  # The C++ headers of the uniffi runtime, at the version package.json pins.
  s.dependency "uniffi-bindgen-react-native", package["dependencies"]["uniffi-bindgen-react-native"]

  # React Native 0.71 and newer: React-Core, the codegen, JSI and the turbo module headers.
  install_modules_dependencies(s)
end
