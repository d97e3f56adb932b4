// Surface-metric engine: the surfel area (3D) and contour length (2D) tables of corner boundaries,
// generated in code by marching cubes / marching squares (see corner_area_table_3d in surface.h).
#include <algorithm>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "surface/surface.h"

namespace rdcl {
namespace surface {
namespace {

using Vec3 = std::array<double, 3>;

Vec3 sub(const Vec3& a, const Vec3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double norm(const Vec3& a) { return std::sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]); }

// Area vector (index units) of triangle (a, b, c).
Vec3 area_vector(const Vec3& a, const Vec3& b, const Vec3& c) {
  Vec3 n = cross(sub(b, a), sub(c, a));
  return {n[0] / 2, n[1] / 2, n[2] / 2};
}

bool corner_inside(int code, int a, int b, int c) {
  return code & (1 << (7 - (4 * a + 2 * b + c)));
}

// Marching-cubes polygons of one code: loops of edge-midpoint ids (id = 9*x2 + 3*y2 + z2 with the
// doubled midpoint coordinates), inside corners separated on ambiguous faces.
std::vector<std::vector<int>> polygons(int code) {
  std::vector<std::pair<int, int>> segments;
  for (int ax = 0; ax < 3; ++ax) {
    const int o0 = ax == 0 ? 1 : 0, o1 = ax == 2 ? 1 : 2;
    for (int v = 0; v < 2; ++v) {
      static const int pq[4][2] = {{0, 0}, {0, 1}, {1, 1}, {1, 0}};
      std::array<std::array<int, 3>, 4> cyc;
      bool ins[4];
      for (int i = 0; i < 4; ++i) {
        cyc[i][ax] = v;
        cyc[i][o0] = pq[i][0];
        cyc[i][o1] = pq[i][1];
        ins[i] = corner_inside(code, cyc[i][0], cyc[i][1], cyc[i][2]);
      }
      int edge[4];
      for (int i = 0; i < 4; ++i) {
        const auto& p = cyc[i];
        const auto& q = cyc[(i + 1) % 4];
        edge[i] = 9 * (p[0] + q[0]) + 3 * (p[1] + q[1]) + (p[2] + q[2]);
      }
      int crossing[4], nc = 0;
      for (int i = 0; i < 4; ++i) {
        if (ins[i] != ins[(i + 1) % 4]) crossing[nc++] = i;
      }
      if (nc == 2) {
        segments.emplace_back(edge[crossing[0]], edge[crossing[1]]);
      } else if (nc == 4) {
        for (int i = 0; i < 4; ++i) {
          if (ins[i]) segments.emplace_back(edge[(i + 3) % 4], edge[i]);
        }
      }
    }
  }
  std::vector<int> order;  // nodes in first-seen order
  std::map<int, std::vector<int>> adj;
  for (const auto& s : segments) {
    for (int node : {s.first, s.second}) {
      if (!adj.count(node)) order.push_back(node);
    }
    adj[s.first].push_back(s.second);
    adj[s.second].push_back(s.first);
  }
  std::vector<std::vector<int>> loops;
  std::map<int, bool> seen;
  for (int start : order) {
    if (seen[start]) continue;
    std::vector<int> loop{start};
    seen[start] = true;
    int prev = -1, cur = start;
    for (;;) {
      int next = -1;
      for (int cand : adj[cur]) {
        if (cand != prev && !seen[cand]) {
          next = cand;
          break;
        }
      }
      if (next < 0) break;
      prev = cur;
      cur = next;
      loop.push_back(cur);
      seen[cur] = true;
    }
    loops.push_back(loop);
  }
  return loops;
}

Vec3 midpoint(int id) { return {(id / 9) / 2.0, (id / 3 % 3) / 2.0, (id % 3) / 2.0}; }

std::vector<Vec3> fan(const std::vector<int>& loop, size_t origin) {
  std::vector<Vec3> out;
  const size_t n = loop.size();
  for (size_t i = 1; i + 1 < n; ++i) {
    out.push_back(area_vector(midpoint(loop[origin]), midpoint(loop[(origin + i) % n]),
                              midpoint(loop[(origin + i + 1) % n])));
  }
  return out;
}

// Triangle area vectors (index units) of every code, generated once.
const std::array<std::vector<Vec3>, 256>& triangle_table() {
  static const std::array<std::vector<Vec3>, 256> table = [] {
    std::array<std::vector<Vec3>, 256> t;
    for (int code = 0; code < 256; ++code) {
      const int ones = __builtin_popcount(code);
      const int base = ones <= 4 ? code : 255 - code;
      for (const auto& loop : polygons(base)) {
        size_t best_origin = 0;
        double best = -1;
        for (size_t o = 0; o < loop.size(); ++o) {
          double a = 0;
          for (const auto& v : fan(loop, o)) a += norm(v);
          if (a > best + 1e-12) {
            best = a;
            best_origin = o;
          }
        }
        for (const auto& v : fan(loop, best_origin)) t[code].push_back(v);
      }
      // Decreasing area on the unit cube (ties in generation order): surface-distance's summation
      // order wherever its table follows a rule (tables.py says where it does not).
      std::stable_sort(t[code].begin(), t[code].end(), [](const Vec3& a, const Vec3& b) {
        return std::llround(norm(a) * 1e12) > std::llround(norm(b) * 1e12);
      });
    }
    return t;
  }();
  return table;
}

}  // namespace

std::array<double, 256> corner_area_table_3d(const std::array<double, 3>& spacing) {
  std::array<double, 256> out{};
  const auto& tris = triangle_table();
  for (int code = 0; code < 256; ++code) {
    // The reference's arithmetic: n = ((v0 s1) s2, (v1 s0) s2, (v2 s0) s1); |n| as numpy's norm of
    // a 3-vector computes it (a BLAS dot accumulating by fused multiply-add); a running sum from 0.
    double sum = 0;
    for (const auto& v : tris[code]) {
      const double n0 = v[0] * spacing[1] * spacing[2];
      const double n1 = v[1] * spacing[0] * spacing[2];
      const double n2 = v[2] * spacing[0] * spacing[1];
      sum += std::sqrt(std::fma(n2, n2, std::fma(n1, n1, n0 * n0)));
    }
    out[code] = sum;
  }
  return out;
}

std::array<double, 16> corner_length_table_2d(const std::array<double, 2>& spacing) {
  // Corners of the square in cyclic order with their code weights; edge midpoints doubled.
  static const int cyc[4][2] = {{0, 0}, {0, 1}, {1, 1}, {1, 0}};
  std::array<double, 16> out{};
  for (int code = 0; code < 16; ++code) {
    bool ins[4];
    for (int i = 0; i < 4; ++i) ins[i] = code & (1 << (3 - (2 * cyc[i][0] + cyc[i][1])));
    std::array<double, 2> mid[4];
    for (int i = 0; i < 4; ++i) {
      const int j = (i + 1) % 4;
      mid[i] = {(cyc[i][0] + cyc[j][0]) / 2.0, (cyc[i][1] + cyc[j][1]) / 2.0};
    }
    // The reference's arithmetic: an axis-parallel segment is the spacing itself, the slanted one
    // (extents 1/2, 1/2) is 0.5 * sqrt(s0^2 + s1^2).
    auto length = [&](int e0, int e1) {
      const double d0 = std::abs(mid[e0][0] - mid[e1][0]);
      const double d1 = std::abs(mid[e0][1] - mid[e1][1]);
      if (d1 == 0) return d0 * spacing[0];
      if (d0 == 0) return d1 * spacing[1];
      return 0.5 * std::sqrt(spacing[0] * spacing[0] + spacing[1] * spacing[1]);
    };
    int crossing[4], nc = 0;
    for (int i = 0; i < 4; ++i) {
      if (ins[i] != ins[(i + 1) % 4]) crossing[nc++] = i;
    }
    double sum = 0;
    if (nc == 2) sum = length(crossing[0], crossing[1]);
    if (nc == 4) {
      for (int i = 0; i < 4; ++i) {
        if (ins[i]) sum += length((i + 3) % 4, i);
      }
    }
    out[code] = sum;
  }
  return out;
}

}  // namespace surface
}  // namespace rdcl
