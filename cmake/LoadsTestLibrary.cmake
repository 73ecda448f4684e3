# loads_add_test_library(NAME source...): builds a test library that loads-runner can load as
# the module NAME (the file NAME.so). Used by the project's examples and by users' projects
# through find_package(loads).
function(loads_add_test_library name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE loads::loads)
  set_target_properties(${name} PROPERTIES PREFIX "" CXX_EXTENSIONS OFF)
endfunction()
