// Surface-metric engine: validation of a problem (validate_problem in surface.h), shared by the CPU
// and CUDA engines.
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "surface/surface.h"

namespace rdcl {
namespace surface {
namespace {

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace

void validate_problem(const Problem& pb) {
  if (pb.dim != 2 && pb.dim != 3) {
    throw std::invalid_argument("expected dim 2 or 3, found " + std::to_string(pb.dim));
  }
  if (pb.dim == 2 && pb.shape[0] != 1) {
    throw std::invalid_argument("expected shape (1, H, W) for a 2D problem, found leading size " +
                                std::to_string(pb.shape[0]));
  }
  if (pb.boundary != Boundary::kCorner && pb.boundary != Boundary::kVoxel) {
    throw std::invalid_argument("expected boundary kCorner or kVoxel, found " +
                                std::to_string(static_cast<int>(pb.boundary)));
  }
  int64_t total = 1;
  for (int a = 0; a < 3; ++a) {
    if (pb.shape[a] < 1 || pb.shape[a] > kMaxAxis) {
      throw std::invalid_argument("expected sizes in [1, " + std::to_string(kMaxAxis) +
                                  "], found " + std::to_string(pb.shape[a]) + " on axis " +
                                  std::to_string(a));
    }
    if (pb.shape[a] > kMaxVoxels / total) {
      throw std::invalid_argument("expected at most " + std::to_string(kMaxVoxels) +
                                  " voxels, found shape (" + std::to_string(pb.shape[0]) + ", " +
                                  std::to_string(pb.shape[1]) + ", " + std::to_string(pb.shape[2]) +
                                  ")");
    }
    total *= pb.shape[a];
    if (a >= 3 - pb.dim && !(pb.spacing[a] > 0 && std::isfinite(pb.spacing[a]))) {
      throw std::invalid_argument("expected finite positive spacing, found " +
                                  format_double(pb.spacing[a]) + " on axis " + std::to_string(a));
    }
  }
}

}  // namespace surface
}  // namespace rdcl
