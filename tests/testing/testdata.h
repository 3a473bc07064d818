// File: tests/testing/testdata.h
//
// Access to the files in tests/testdata (public SDK test keys; never production keys).
#ifndef PALMGATE_TESTS_TESTING_TESTDATA_H_
#define PALMGATE_TESTS_TESTING_TESTDATA_H_

#include <string>

#include "gtest/gtest.h"
#include "server/common/file_util.h"

namespace palmgate::testing {

inline std::string TestDataPath(const std::string& relative) {
  return std::string(PALMGATE_TESTDATA_DIR) + "/" + relative;
}

// Returns the contents of tests/testdata/<relative>; fails the test when unreadable.
inline std::string ReadTestData(const std::string& relative) {
  auto contents = ReadFile(TestDataPath(relative));
  EXPECT_TRUE(contents.ok()) << contents.status();
  return contents.ok() ? *contents : std::string();
}

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_TESTDATA_H_
