# Sets RDCL_VERSION (MAJOR.MINOR.PATCH) from rdcl/_version.py, the one place the version is written
# (setup.py reads the same line). Included by CMakeLists.txt before project().
set(_rdcl_version_file "${CMAKE_CURRENT_LIST_DIR}/../rdcl/_version.py")
file(STRINGS "${_rdcl_version_file}" _rdcl_version_line
     REGEX "^__version__ = \"[0-9]+\\.[0-9]+\\.[0-9]+\"$")
if(NOT _rdcl_version_line)
  message(FATAL_ERROR "expected a line __version__ = \"MAJOR.MINOR.PATCH\" in "
                      "${_rdcl_version_file}, found none")
endif()
string(REGEX REPLACE "^__version__ = \"([0-9.]+)\"$" "\\1" RDCL_VERSION "${_rdcl_version_line}")
