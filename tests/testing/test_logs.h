// File: tests/testing/test_logs.h
//
// The secrets-in-logs check (tests/secrets/scan_test_logs.py, run by
// scripts/test after ctest) needs two things from every test that starts a
// process: that process's log, and the secrets it was given. Both go to one
// directory per build: $PALMGATE_TEST_LOG_DIR when set (empty: collection off),
// else <build dir>/test-logs (scripts/test empties it before each run).
//
//   <dir>/<process>.<test binary>.<pid>.<n>.log    a child's stderr (ListeningProcess tees it there)
//   <dir>/secrets/<test binary>.<pid>.<n>/<file>   copies of private keys, APIv3 keys and seed files
//                                                  (what the scanner searches the logs for)
//
// Thread-safe.
#ifndef PALMGATE_TESTS_TESTING_TEST_LOGS_H_
#define PALMGATE_TESTS_TESTING_TEST_LOGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace palmgate::testing {

// The collection directory (created on first use), or "" when collection is off.
std::string TestLogDir();

// A fresh log file path for a child named `process_name` (e.g. "palmgate"), or "" when off.
std::string NewTestLogPath(absl::string_view process_name);

// Copies the regular files among `paths` (missing ones are skipped) into a
// fresh secrets/ subdirectory. No-op when off.
void RecordTestSecretFiles(const std::vector<std::string>& paths);

// Records the secret files passed to a child: files named by an argument or
// an environment value ("NAME=value", "--flag=value" or "--flag value") that
// hold a PEM private key, or whose flag or variable name mentions the APIv3
// key or a seed.
void RecordSecretsPassedTo(const std::vector<std::string>& args, const std::vector<std::string>& env);

}  // namespace palmgate::testing

#endif  // PALMGATE_TESTS_TESTING_TEST_LOGS_H_
