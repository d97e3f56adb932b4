// Surface-metric engine: the CPU engine's internal interface (not installed, not public API).
//
// The CPU engine runs in four steps, one file each:
//   surface_points.cpp     bounding box of pred | gt, surface points (and neighbour codes) per
//   mask; distance_transform.cpp distances from the points of each mask to the other surface;
//   sorted_direction.cpp   (distance, area) pairs sorted like surface-distance;
//   surface_cpu.cpp        surface_distances_cpu, which chains them.
// worker_pool.h runs the threads of each step.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "surface/surface.h"

namespace rdcl {
namespace surface {
namespace detail {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

struct Bbox {
  std::array<int64_t, 3> lo{0, 0, 0}, hi{-1, -1, -1};  // inclusive voxel bounds
  bool empty() const { return hi[0] < lo[0]; }
};

// Surface points of one mask on the processing grid, in linear (z-major) order.
struct Surface {
  std::vector<int64_t> index;  // linear index on the grid
  std::vector<uint8_t> code;   // neighbour code (voxel boundaries: 0); area = table[code]
};

struct Grid {
  std::array<int64_t, 3> n{1, 1, 1};  // processing grid size (z, y, x)
  std::array<double, 3> s{1, 1, 1};   // spacing
  int64_t plane() const { return n[1] * n[2]; }
};

// Bounding box (inclusive voxel bounds) of pred | gt on an n = (z, y, x) volume; empty() when both
// masks are empty. Planes are split between `threads` workers (<= 0: all hardware threads).
Bbox bounding_box(const uint8_t* pred, const uint8_t* gt, const std::array<int64_t, 3>& n,
                  int threads);

// Surface points of `mask` (the full volume, problem shape) on the processing grid g of the crop
// `box`, in linear (z-major) order; corner boundaries store each point's neighbour code, voxel
// boundaries code 0. Planes are split between `threads` workers.
Surface extract(const uint8_t* mask, const Problem& pb, const Bbox& box, const Grid& g,
                const std::vector<double>& table, int threads);

// Distances (mm) of both directions: [0] from every point of `a` to the surface `b`, [1] from every
// point of `b` to `a`, each in query order; +inf for every query when the other surface is empty.
// The planes of both directions are shared by `threads` workers (<= 0: all hardware threads).
std::array<std::vector<double>, 2> distances_both(const Surface& a, const Surface& b, const Grid& g,
                                                  int threads);

// (distance, table[code]) pairs of one direction sorted ascending by distance, then area.
Direction sorted_direction(const std::vector<double>& d, const std::vector<uint8_t>& code,
                           const std::vector<double>& table);

}  // namespace detail
}  // namespace surface
}  // namespace rdcl
