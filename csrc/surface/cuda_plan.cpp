// Surface-metric engine: the CUDA engine's device memory plan (pure functions, in every build, so
// that the plan is tested without a GPU).
#include <algorithm>
#include <array>
#include <cstdint>

#include "surface/surface.h"

namespace rdcl {
namespace surface {

int cuda_fh_blocks(int64_t lines, int64_t length) {
  const int64_t per_thread = length * static_cast<int64_t>(sizeof(int)) +
                             (length + 1) * static_cast<int64_t>(sizeof(double));
  const int64_t cap = std::max<int64_t>(1, kCudaScratchBytes / (per_thread * 256));
  const int64_t wanted = std::min<int64_t>((lines + 255) / 256, 65535);
  return static_cast<int>(std::max<int64_t>(1, std::min(wanted, cap)));
}

int64_t cuda_fh_pass_bytes(int64_t lines, int64_t length, int64_t* zb_offset) {
  // Threads beyond the line count never touch their scratch, so only min(threads, lines) count.
  const int64_t threads = std::min<int64_t>(int64_t{256} * cuda_fh_blocks(lines, length), lines);
  const int64_t v_bytes = threads * length * static_cast<int64_t>(sizeof(int));
  const int64_t offset = (v_bytes + 7) / 8 * 8;  // the double part starts 8-byte aligned
  if (zb_offset != nullptr) *zb_offset = offset;
  return offset + threads * (length + 1) * static_cast<int64_t>(sizeof(double));
}

int64_t cuda_fh_scratch_bytes(const std::array<int64_t, 3>& grid) {
  // y pass: lines (z, x) of length n1; x pass: lines (z, y) of length n2; one buffer serves both.
  return std::max(cuda_fh_pass_bytes(grid[0] * grid[2], grid[1], nullptr),
                  cuda_fh_pass_bytes(grid[0] * grid[1], grid[2], nullptr));
}

int64_t cuda_grid_bytes(const std::array<int64_t, 3>& grid) {
  const int64_t n = grid[0] * grid[1] * grid[2];
  return n * (2 * static_cast<int64_t>(sizeof(uint8_t)) +
              2 * static_cast<int64_t>(sizeof(double))) +
         cuda_fh_scratch_bytes(grid);
}

int64_t cuda_point_bytes(int64_t count_gt, int64_t count_pred) {
  return std::max(count_gt, count_pred) * static_cast<int64_t>(sizeof(int64_t)) +
         2 * (count_gt + count_pred) * static_cast<int64_t>(sizeof(double));
}

}  // namespace surface
}  // namespace rdcl
