// Surface-metric engine: the CUDA entry points of a build without CUDA (CMake compiles this file
// instead of surface_cuda.cu): cuda_built() is false and the engine throws one line.
#include <cstdint>
#include <stdexcept>

#include "surface/surface.h"

namespace rdcl {
namespace surface {

bool cuda_built() { return false; }

CudaResult::~CudaResult() = default;

void CudaResult::copy_to(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t) const {
  throw std::runtime_error("rdcl was built without CUDA: the CUDA surface engine is unavailable");
}

void surface_distances_cuda(uintptr_t, uintptr_t, const Problem& pb, uintptr_t, CudaResult*) {
  validate_problem(pb);
  throw std::runtime_error("rdcl was built without CUDA: the CUDA surface engine is unavailable");
}

}  // namespace surface
}  // namespace rdcl
