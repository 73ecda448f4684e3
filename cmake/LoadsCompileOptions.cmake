# Compile options shared by every target of the project.
add_library(loads_compile_options INTERFACE)
add_library(loads::compile_options ALIAS loads_compile_options)
target_compile_features(loads_compile_options INTERFACE cxx_std_20)
target_compile_options(loads_compile_options INTERFACE
  -Wall -Wextra -Wshadow
  $<$<BOOL:${LOADS_WERROR}>:-Werror>
  # Boost 1.74's Asio uses std::exchange without including <utility> in C++20 mode.
  -include utility)
target_compile_definitions(loads_compile_options INTERFACE
  BOOST_COROUTINES_NO_DEPRECATION_WARNING
  BOOST_ALLOW_DEPRECATED_HEADERS
  BOOST_BIND_GLOBAL_PLACEHOLDERS)
