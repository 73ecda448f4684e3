#include "loads/worker/test_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <set>

#include "worker/src/test_registry.h"

namespace loads::worker {
namespace {

bool IsFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

LoadResult Error(LoadError error, std::string message) {
  LoadResult result;
  result.error = error;
  result.message = std::move(message);
  return result;
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

}  // namespace

LoadResult FindTestLibrary(const std::string& name, const std::vector<std::string>& search_path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const auto& part : parts) {
    if (part.empty() || part.find('/') != std::string::npos) {
      return Error(LoadError::kInvalidName,
                   "invalid test name '" + name + "' (expected module.Class.method)");
    }
  }
  if (parts.size() < 3) {
    return Error(LoadError::kInvalidName,
                 "invalid test name '" + name + "' (expected module.Class.method)");
  }
  std::string module = parts[0];
  std::string module_path = parts[0];
  for (size_t i = 1; i + 2 < parts.size(); ++i) {
    module += "." + parts[i];
    module_path += "/" + parts[i];
  }

  std::string library;
  std::vector<std::string> tried;
  for (const std::string& dir : search_path) {
    const std::string base = dir.empty() ? "." : dir;
    for (const std::string& file : {module + ".so", "lib" + module + ".so", module_path + ".so"}) {
      const std::string candidate = base + "/" + file;
      if (IsFile(candidate)) {
        library = candidate;
        break;
      }
    }
    if (!library.empty()) break;
    tried.push_back(base);
  }
  if (library.empty()) {
    return Error(LoadError::kNotFound,
                 "test library for module '" + module + "' not found (looked for " + module +
                     ".so, lib" + module + ".so and " + module_path +
                     ".so in: " + Join(tried, ", ") + "; use --test-path or LOADS_TEST_PATH)");
  }

  LoadResult result;
  result.library_path = library;
  return result;
}

LoadResult LoadTest(const std::string& name, const std::vector<std::string>& search_path) {
  LoadResult located = FindTestLibrary(name, search_path);
  if (located.error != LoadError::kNone) return located;
  const std::string library = located.library_path;
  const size_t method_dot = name.rfind('.');
  const size_t class_dot = name.rfind('.', method_dot - 1);
  const std::string method_name = name.substr(method_dot + 1);
  const std::string class_name = name.substr(class_dot + 1, method_dot - class_dot - 1);
  const std::string module = name.substr(0, class_dot);

  auto& registry = internal::Registry();
  const size_t before = registry.size();
  void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = ::dlerror();
    return Error(LoadError::kLoadFailed,
                 "cannot load test library " + library + ": " + (why ? why : "unknown error"));
  }
  if (registry.size() == before) {
    return Error(LoadError::kLoadFailed,
                 "test library " + library + " registers no test (use LOADS_TEST(Class, method))");
  }
  std::vector<std::string> available;
  const internal::RegisteredTest* found = nullptr;
  for (size_t i = before; i < registry.size(); ++i) {
    const auto& entry = registry[i];
    if (entry.abi_version != LOADS_ABI_VERSION) {
      return Error(LoadError::kIncompatible,
                   "test library " + library + " was built for Loads SDK " + entry.sdk_version +
                       " (ABI " + std::to_string(entry.abi_version) + "), but this is SDK " +
                       LOADS_SDK_VERSION + " (ABI " + std::to_string(LOADS_ABI_VERSION) +
                       "); rebuild it against this SDK");
    }
    available.push_back(module + "." + entry.class_name + "." + entry.method_name);
    if (entry.class_name == class_name && entry.method_name == method_name) found = &entry;
  }
  if (!found) {
    return Error(LoadError::kNoSuchTest, "test '" + name + "' not found in " + library +
                                             " (it has: " + Join(available, ", ") + ")");
  }
  LoadResult result;
  result.library_path = library;
  result.test = TestSpec{name, found->factory, found->method};
  return result;
}

}  // namespace loads::worker
