# Makes the SDK usable from other CMake projects, from the build tree
# (find_package(loads CONFIG REQUIRED PATHS /path/to/loads/build)) or after `cmake --install`.
include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

write_basic_package_version_file(${PROJECT_BINARY_DIR}/loadsConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)

# Build tree.
export(TARGETS loads NAMESPACE loads:: FILE ${PROJECT_BINARY_DIR}/loadsTargets.cmake)
configure_file(cmake/loadsConfig.cmake.in ${PROJECT_BINARY_DIR}/loadsConfig.cmake COPYONLY)
configure_file(cmake/LoadsTestLibrary.cmake ${PROJECT_BINARY_DIR}/LoadsTestLibrary.cmake COPYONLY)

# Install tree.
set(LOADS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/loads)
install(TARGETS loads EXPORT loadsTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS loads_runner loads_worker loads_controller loads_demo_target
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES worker/include/loads/loads.h ${PROJECT_BINARY_DIR}/generated/loads/version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/loads)
install(EXPORT loadsTargets NAMESPACE loads:: DESTINATION ${LOADS_CMAKE_DIR})
install(FILES cmake/loadsConfig.cmake.in DESTINATION ${LOADS_CMAKE_DIR} RENAME loadsConfig.cmake)
install(FILES ${PROJECT_BINARY_DIR}/loadsConfigVersion.cmake cmake/LoadsTestLibrary.cmake
  DESTINATION ${LOADS_CMAKE_DIR})
