// Surface-metric engine (CPU): the bounding box of pred | gt and the surface points of one mask on
// the processing grid, with their neighbour codes (corner boundaries) or as boundary voxels (voxel
// boundaries).
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "surface/cpu_internal.h"
#include "surface/worker_pool.h"

namespace rdcl {
namespace surface {
namespace detail {
namespace {

bool row_any(const uint8_t* a, const uint8_t* b, int64_t n) {
  int64_t x = 0;
  for (; x + 8 <= n; x += 8) {
    uint64_t wa, wb;
    std::memcpy(&wa, a + x, 8);
    std::memcpy(&wb, b + x, 8);
    if (wa | wb) return true;
  }
  for (; x < n; ++x) {
    if (a[x] | b[x]) return true;
  }
  return false;
}

// Copies voxel plane z (crop coordinates, may be out of range -> zeros) of a mask into a padded
// (ny_vox + 2) x (nx_vox + 2) 0/1 buffer with a zero frame.
// row_any[y] tells whether padded row y holds any foreground.
void padded_plane(const uint8_t* mask, const std::array<int64_t, 3>& shape, const Bbox& box,
                  int64_t zc, std::vector<uint8_t>* buf, std::vector<uint8_t>* row_any) {
  const int64_t ey = box.hi[1] - box.lo[1] + 1, ex = box.hi[2] - box.lo[2] + 1;
  const int64_t w = ex + 2;
  std::fill(buf->begin(), buf->end(), 0);
  std::fill(row_any->begin(), row_any->end(), 0);
  if (zc < 0 || zc > box.hi[0] - box.lo[0]) return;
  const int64_t z = box.lo[0] + zc;
  for (int64_t y = 0; y < ey; ++y) {
    const uint8_t* src = mask + ((z * shape[1] + box.lo[1] + y) * shape[2] + box.lo[2]);
    uint8_t* dst = buf->data() + (y + 1) * w + 1;
    uint8_t any = 0;
    for (int64_t x = 0; x < ex; ++x) {
      dst[x] = src[x] != 0;
      any |= dst[x];
    }
    (*row_any)[y + 1] = any;
  }
}

// Extracts the surface points of planes [z_begin, z_end) of the processing grid.
void extract_planes(const uint8_t* mask, const Problem& pb, const Bbox& box, const Grid& g,
                    const std::vector<double>& table, int64_t z_begin, int64_t z_end,
                    Surface* out) {
  const int64_t ey = box.hi[1] - box.lo[1] + 1, ex = box.hi[2] - box.lo[2] + 1;
  const int64_t w = ex + 2;
  std::vector<uint8_t> prev((ey + 2) * w), cur((ey + 2) * w), next((ey + 2) * w);
  std::vector<uint8_t> prev_any(ey + 2), cur_any(ey + 2), next_any(ey + 2);
  std::vector<uint8_t> codes(g.n[2]);  // neighbour codes of one row
  const bool corner = pb.boundary == Boundary::kCorner;
  const bool three_d = pb.dim == 3;
  // corner: plane z uses voxel planes z-1 (prev) and z (cur); voxel: z-1, z, z+1.
  const int64_t first = corner ? z_begin - 1 : z_begin;
  padded_plane(mask, pb.shape, box, first - 1, &prev, &prev_any);
  padded_plane(mask, pb.shape, box, first, &cur, &cur_any);
  if (!corner) padded_plane(mask, pb.shape, box, first + 1, &next, &next_any);
  for (int64_t z = z_begin; z < z_end; ++z) {
    if (corner) {
      std::swap(prev, cur);
      std::swap(prev_any, cur_any);
      padded_plane(mask, pb.shape, box, z, &cur, &cur_any);
      const uint8_t* a = prev.data();
      const uint8_t* b = cur.data();
      for (int64_t y = 0; y < g.n[1]; ++y) {
        if (!(prev_any[y] | prev_any[y + 1] | cur_any[y] | cur_any[y + 1])) continue;
        const uint8_t *a0 = a + y * w, *a1 = a0 + w, *b0 = b + y * w, *b1 = b0 + w;
        uint8_t* c = codes.data();
        if (three_d) {
          for (int64_t x = 0; x < g.n[2]; ++x) {
            c[x] = static_cast<uint8_t>((a0[x] << 7) | (a0[x + 1] << 6) | (a1[x] << 5) |
                                        (a1[x + 1] << 4) | (b0[x] << 3) | (b0[x + 1] << 2) |
                                        (b1[x] << 1) | b1[x + 1]);
          }
        } else {
          for (int64_t x = 0; x < g.n[2]; ++x) {
            // full 2x2 -> 255 like a full 2x2x2 neighbourhood, so one test skips both
            const int code = (b0[x] << 3) | (b0[x + 1] << 2) | (b1[x] << 1) | b1[x + 1];
            c[x] = static_cast<uint8_t>(code == 15 ? 255 : code);
          }
        }
        const int64_t row = (z * g.n[1] + y) * g.n[2];
        int64_t x = 0;
        while (x < g.n[2]) {
          if (x + 8 <= g.n[2]) {
            uint64_t word;
            std::memcpy(&word, c + x, 8);
            if (word == 0 || word == ~uint64_t{0}) {
              x += 8;
              continue;
            }
          }
          const int64_t end = std::min(x + 8, g.n[2]);
          for (; x < end; ++x) {
            if (c[x] == 0 || c[x] == 255) continue;
            out->index.push_back(row + x);
            out->code.push_back(c[x]);
          }
        }
      }
    } else {
      if (z > z_begin) {
        std::swap(prev, cur);
        std::swap(cur, next);
        std::swap(cur_any, next_any);
        padded_plane(mask, pb.shape, box, z + 1, &next, &next_any);
      }
      for (int64_t y = 0; y < g.n[1]; ++y) {
        if (!cur_any[y + 1]) continue;
        const uint8_t* c = cur.data() + (y + 1) * w + 1;
        const uint8_t* p = prev.data() + (y + 1) * w + 1;
        const uint8_t* nx = next.data() + (y + 1) * w + 1;
        for (int64_t x = 0; x < g.n[2]; ++x) {
          if (!c[x]) continue;
          bool inner = c[x - 1] && c[x + 1] && c[x - w] && c[x + w];
          if (three_d) inner = inner && p[x] && nx[x];
          if (inner) continue;
          out->index.push_back((z * g.n[1] + y) * g.n[2] + x);
          out->code.push_back(0);
        }
      }
    }
  }
}

// Bounding box of planes [z0, z1) (lo = n, hi = -1 when they hold no foreground).
Bbox bounding_box_planes(const uint8_t* pred, const uint8_t* gt, const std::array<int64_t, 3>& n,
                         int64_t z0, int64_t z1) {
  Bbox box;
  box.lo = {n[0], n[1], n[2]};
  for (int64_t z = z0; z < z1; ++z) {
    for (int64_t y = 0; y < n[1]; ++y) {
      const int64_t off = (z * n[1] + y) * n[2];
      if (!row_any(pred + off, gt + off, n[2])) continue;
      int64_t first = 0, last = n[2] - 1;
      while (!(pred[off + first] | gt[off + first])) ++first;
      while (!(pred[off + last] | gt[off + last])) --last;
      box.lo = {std::min(box.lo[0], z), std::min(box.lo[1], y), std::min(box.lo[2], first)};
      box.hi = {std::max(box.hi[0], z), std::max(box.hi[1], y), std::max(box.hi[2], last)};
    }
  }
  return box;
}

}  // namespace

Bbox bounding_box(const uint8_t* pred, const uint8_t* gt, const std::array<int64_t, 3>& n,
                  int threads) {
  threads = resolve_threads(threads, n[0]);
  std::vector<Bbox> parts(threads);
  parallel_for(threads, [&](int t) {
    parts[t] = bounding_box_planes(pred, gt, n, n[0] * t / threads, n[0] * (t + 1) / threads);
  });
  Bbox box;
  box.lo = {n[0], n[1], n[2]};
  for (const Bbox& p : parts) {
    for (int a = 0; a < 3; ++a) {
      box.lo[a] = std::min(box.lo[a], p.lo[a]);
      box.hi[a] = std::max(box.hi[a], p.hi[a]);
    }
  }
  if (box.hi[0] < 0) box.lo = {0, 0, 0};
  return box;
}

Surface extract(const uint8_t* mask, const Problem& pb, const Bbox& box, const Grid& g,
                const std::vector<double>& table, int threads) {
  std::vector<Surface> parts(threads);
  parallel_for(threads, [&](int t) {
    const int64_t z0 = g.n[0] * t / threads, z1 = g.n[0] * (t + 1) / threads;
    extract_planes(mask, pb, box, g, table, z0, z1, &parts[t]);
  });
  Surface out;
  for (auto& p : parts) {
    out.index.insert(out.index.end(), p.index.begin(), p.index.end());
    out.code.insert(out.code.end(), p.code.begin(), p.code.end());
  }
  return out;
}

}  // namespace detail
}  // namespace surface
}  // namespace rdcl
