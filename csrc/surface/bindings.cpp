// pybind11 bindings of the surface-metric engine (module rdcl._surface).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "surface/surface.h"

namespace py = pybind11;
using rdcl::surface::Boundary;
using rdcl::surface::Problem;

namespace {

using ByteArray = py::array_t<uint8_t, py::array::c_style>;

Problem make_problem(const std::vector<int64_t>& shape, const std::vector<double>& spacing,
                     const std::string& boundary) {
  if (shape.size() != 2 && shape.size() != 3) {
    throw std::invalid_argument("expected a 2D or 3D shape, found " + std::to_string(shape.size()) +
                                " dimensions");
  }
  if (spacing.size() != shape.size()) {
    throw std::invalid_argument("expected " + std::to_string(shape.size()) +
                                " spacing values, found " + std::to_string(spacing.size()));
  }
  if (boundary != "corner" && boundary != "voxel") {
    throw std::invalid_argument("expected boundary 'corner' or 'voxel', found '" + boundary + "'");
  }
  Problem pb;
  pb.dim = static_cast<int>(shape.size());
  pb.boundary = boundary == "corner" ? Boundary::kCorner : Boundary::kVoxel;
  const size_t off = 3 - shape.size();
  for (size_t i = 0; i < shape.size(); ++i) {
    pb.shape[off + i] = shape[i];
    pb.spacing[off + i] = spacing[i];
  }
  return pb;
}

py::array_t<double> to_numpy(std::vector<double>&& v) {
  auto* heap = new std::vector<double>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<double>*>(p); });
  return py::array_t<double>(static_cast<py::ssize_t>(heap->size()), heap->data(), owner);
}

py::tuple surface_distances_cpu(const ByteArray& pred, const ByteArray& gt,
                                const std::vector<double>& spacing, const std::string& boundary,
                                int threads) {
  if (pred.ndim() != gt.ndim()) {
    throw std::invalid_argument("pred and gt must have the same number of dimensions, found " +
                                std::to_string(pred.ndim()) + " and " + std::to_string(gt.ndim()));
  }
  std::vector<int64_t> shape(pred.shape(), pred.shape() + pred.ndim());
  for (py::ssize_t i = 0; i < pred.ndim(); ++i) {
    if (pred.shape(i) != gt.shape(i)) {
      throw std::invalid_argument("pred and gt must have the same shape");
    }
  }
  const Problem pb = make_problem(shape, spacing, boundary);
  rdcl::surface::Result res;
  {
    py::gil_scoped_release release;
    res = rdcl::surface::surface_distances_cpu(pred.data(), gt.data(), pb, threads);
  }
  return py::make_tuple(
      to_numpy(std::move(res.gt_to_pred.distances)), to_numpy(std::move(res.gt_to_pred.areas)),
      to_numpy(std::move(res.pred_to_gt.distances)), to_numpy(std::move(res.pred_to_gt.areas)));
}

}  // namespace

PYBIND11_MODULE(_surface, m) {
  m.doc() = "rdcl surface-metric engine (C++ CPU, optional CUDA); see csrc/surface/surface.h";
  m.def("cuda_built", &rdcl::surface::cuda_built, "True when the CUDA implementation was built.");
  m.def(
      "corner_area_table_3d",
      [](const std::array<double, 3>& s) { return rdcl::surface::corner_area_table_3d(s); },
      py::arg("spacing"), "Surfel area (mm^2) of each 2x2x2 neighbour code (256 values).");
  m.def(
      "corner_length_table_2d",
      [](const std::array<double, 2>& s) { return rdcl::surface::corner_length_table_2d(s); },
      py::arg("spacing"), "Contour length (mm) of each 2x2 neighbour code (16 values).");
  m.def(
      "validate_problem",
      [](const std::vector<int64_t>& shape, const std::vector<double>& spacing,
         const std::string& boundary) {
        rdcl::surface::validate_problem(make_problem(shape, spacing, boundary));
      },
      py::arg("shape"), py::arg("spacing"), py::arg("boundary") = "corner",
      "Raises ValueError unless the C++ engine accepts this problem (one line: expected, found).");
  m.def(
      "cuda_grid_bytes",
      [](const std::array<int64_t, 3>& grid) { return rdcl::surface::cuda_grid_bytes(grid); },
      py::arg("grid"),
      "Device bytes of the CUDA engine's grid buffers for a processing grid (z, y, x).");
  m.def("cuda_point_bytes", &rdcl::surface::cuda_point_bytes, py::arg("count_gt"),
        py::arg("count_pred"), "Device bytes of the CUDA engine's per-surface-point buffers.");
  m.def("_run_worker_pool_for_test", &rdcl::surface::run_worker_pool_for_test, py::arg("threads"),
        py::arg("throwing"), "Test hook: worker `throwing` raises; the pool rethrows it here.");
  m.def("surface_distances_cpu", &surface_distances_cpu, py::arg("pred"), py::arg("gt"),
        py::arg("spacing"), py::arg("boundary") = "corner", py::arg("threads") = 0,
        "Sorted (dist_gt_to_pred, area_gt, dist_pred_to_gt, area_pred) as float64 arrays.");
  py::class_<rdcl::surface::CudaResult>(m, "CudaResult")
      .def_readonly("count_gt", &rdcl::surface::CudaResult::count_gt)
      .def_readonly("count_pred", &rdcl::surface::CudaResult::count_pred)
      .def("copy_to", &rdcl::surface::CudaResult::copy_to, py::arg("dist_gt"), py::arg("area_gt"),
           py::arg("dist_pred"), py::arg("area_pred"), py::arg("stream"),
           "Copy the sorted arrays into caller-owned device buffers (pointers as integers).");
  m.def(
      "surface_distances_cuda",
      [](uintptr_t pred, uintptr_t gt, const std::vector<int64_t>& shape,
         const std::vector<double>& spacing, const std::string& boundary, uintptr_t stream) {
        const Problem pb = make_problem(shape, spacing, boundary);
        auto out = std::make_unique<rdcl::surface::CudaResult>();
        {
          py::gil_scoped_release release;
          rdcl::surface::surface_distances_cuda(pred, gt, pb, stream, out.get());
        }
        return out;
      },
      py::arg("pred"), py::arg("gt"), py::arg("shape"), py::arg("spacing"),
      py::arg("boundary") = "corner", py::arg("stream") = 0,
      "CUDA engine on device uint8 buffers; returns a CudaResult holding device arrays.");
}
