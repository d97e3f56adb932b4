#include <pybind11/pybind11.h>

#include "surface/surface.h"

namespace py = pybind11;

PYBIND11_MODULE(_surface, m) {
  m.doc() = "rdcl surface-metric engine (C++ CPU, optional CUDA)";
  m.def("cuda_built", &rdcl::surface::cuda_built, "True when the CUDA implementation was built.");
}
