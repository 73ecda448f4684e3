#pragma once

#include <string>
#include <vector>

#include "loads/worker/engine.h"

// Exported from libloads.so, which hides everything else (see loads/loads.h).
#pragma GCC visibility push(default)

namespace loads::worker {

// Why a test could not be loaded; each maps to its own exit code in loads-runner.
enum class LoadError {
  kNone,
  kInvalidName,   // not "module.Class.method"
  kNotFound,      // no library for the module on the search path
  kLoadFailed,    // the library exists but could not be loaded, or registers no test
  kIncompatible,  // built against another SDK ABI
  kNoSuchTest,    // the library has no such class or method
};

struct LoadResult {
  LoadError error = LoadError::kNone;
  std::string message;       // one line, for the user, when error != kNone
  std::string library_path;  // the library that was loaded
  TestSpec test;
};

// Finds and loads the test "module.Class.method": the library of `module` is looked up in each
// folder of search_path in order, as "<module>.so", "lib<module>.so", then with the module's dots
// as folder separators ("a.b" -> "a/b.so"). Loading runs the library's LOADS_TEST registrations;
// libraries stay loaded for the life of the process.
//
// Thread safety: call from one thread at a time.
LoadResult LoadTest(const std::string& name, const std::vector<std::string>& search_path);

// Finds the library of a test without loading it (to ship it to workers). On success the
// result's library_path is set; errors are kInvalidName or kNotFound.
LoadResult FindTestLibrary(const std::string& name, const std::vector<std::string>& search_path);

}  // namespace loads::worker

#pragma GCC visibility pop
