// The entry point when the tests are compiled with swiftc (run-tests.sh); `swift test`
// finds the tests by itself and does not use this file.

import XCTest

XCTMain([testCase(MeridianTests.allTests)])
