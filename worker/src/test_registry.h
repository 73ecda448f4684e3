#pragma once

#include <string>
#include <vector>

#include "loads/loads.h"

namespace loads::internal {

// One test method registered by LOADS_TEST while its library was loaded.
struct RegisteredTest {
  int abi_version;
  std::string sdk_version;
  std::string class_name;
  std::string method_name;
  TestFactory factory;
  TestMethod method;
};

// Every registration since the process started, in order. Libraries are loaded one at a time
// from one thread, so the entries a library added are those appended while it was being loaded.
//
// Thread safety: not synchronized; register and read from the loading thread only.
std::vector<RegisteredTest>& Registry();

}  // namespace loads::internal
