// Surface-metric engine: table generation and the multithreaded CPU implementation.
//
// Distance algorithm (exact): surface points of the target mask are stored per (y, x) column as a
// sorted list of z indices. For each z plane holding query points, the squared z-distance to the
// nearest target point of every column is filled in a plane buffer; each query then searches a
// window of that plane in rings of growing |dy|, pruned by the best value so far. A query whose
// result cannot be certified inside the window (far from the other surface) is answered by an exact
// separable Felzenszwalb-Huttenlocher transform of its plane. Memory is O(plane + surface points).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "surface/surface.h"

namespace rdcl {
namespace surface {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ------------------------------------------------------------------ table generation
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

// ------------------------------------------------------------------ helpers
std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

struct Bbox {
  std::array<int64_t, 3> lo{0, 0, 0}, hi{-1, -1, -1};  // inclusive voxel bounds
  bool empty() const { return hi[0] < lo[0]; }
};

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

Bbox bounding_box(const uint8_t* pred, const uint8_t* gt, const std::array<int64_t, 3>& n) {
  Bbox box;
  box.lo = {n[0], n[1], n[2]};
  for (int64_t z = 0; z < n[0]; ++z) {
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
  if (box.hi[0] < 0) box.lo = {0, 0, 0};
  return box;
}

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

int resolve_threads(int threads, int64_t work) {
  int t = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  t = std::max(1, t);
  return static_cast<int>(std::min<int64_t>(t, std::max<int64_t>(1, work)));
}

// Runs fn(0) .. fn(threads - 1) on worker threads. An exception thrown by a worker (or by starting
// one) is carried to the caller: every started worker is joined, then the first exception is
// rethrown on the calling thread (an exception escaping a std::thread would std::terminate).
template <typename F>
void parallel_for(int threads, F&& fn) {
  if (threads == 1) {
    fn(0);
    return;
  }
  std::mutex mu;
  std::exception_ptr first;
  auto record = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu);
    if (!first) first = e;
  };
  auto guarded = [&](int t) {
    try {
      fn(t);
    } catch (...) {
      record(std::current_exception());
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads);
  try {
    for (int t = 0; t < threads; ++t) pool.emplace_back(guarded, t);
  } catch (...) {  // e.g. std::system_error: no more threads
    record(std::current_exception());
  }
  for (auto& th : pool) th.join();
  if (first) std::rethrow_exception(first);
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

// ------------------------------------------------------------------ distances
// Target surface points per (y, x) column: sorted z indices.
struct Columns {
  std::vector<int64_t> start;  // size plane + 1
  std::vector<int32_t> z;
};

Columns build_columns(const Surface& target, const Grid& g) {
  Columns c;
  const int64_t plane = g.plane();
  c.start.assign(plane + 1, 0);
  for (int64_t idx : target.index) ++c.start[idx % plane + 1];
  for (int64_t i = 0; i < plane; ++i) c.start[i + 1] += c.start[i];
  c.z.resize(target.index.size());
  std::vector<int64_t> fill(c.start.begin(), c.start.end() - 1);
  for (int64_t idx : target.index) c.z[fill[idx % plane]++] = static_cast<int32_t>(idx / plane);
  return c;
}

// Lower envelope of the parabolas f[p] + ((q - p) * s)^2 of an exact 1D squared distance transform
// (Felzenszwalb-Huttenlocher) of f (stride-accessed); +inf entries are not sites. Fills the sites v
// and boundaries zb (size n + 1); returns the index of the last parabola, -1 when there is none.
int64_t fh_build(const double* f, int64_t stride, int64_t n, double s, int64_t* v, double* zb,
                 double* h) {
  // h[k] caches f[v[k]] + c * v[k]^2 of each envelope site (same rounding as computing it inline).
  const double c = s * s, c2 = 2 * c;
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    const double fq = f[q * stride];
    if (fq == kInf) continue;
    const double hq = fq + c * static_cast<double>(q) * q;
    if (k < 0) {
      k = 0;
      v[0] = q;
      h[0] = hq;
      zb[0] = -kInf;
      zb[1] = kInf;
      continue;
    }
    double x;
    for (;;) {  // zb[0] = -inf, so k never drops below 0
      x = (hq - h[k]) / (c2 * static_cast<double>(q - v[k]));
      if (x > zb[k]) break;
      --k;
    }
    ++k;
    v[k] = q;
    h[k] = hq;
    zb[k] = x;
    zb[k + 1] = kInf;
  }
  return k;
}

// Value f[v] + ((q - v) * s)^2 of the envelope built by fh_build at q; *j is the current parabola
// and only moves forward, so successive calls must have non-decreasing q.
double fh_eval(const double* f, int64_t stride, const int64_t* v, const double* zb, double s,
               int64_t q, int64_t* j) {
  while (zb[*j + 1] < static_cast<double>(q)) ++*j;
  const double d = static_cast<double>(q - v[*j]) * s;
  return f[v[*j] * stride] + d * d;
}

// Distances from the query points of planes [plane_begin, plane_end) to the target columns.
class PlaneSolver {
 public:
  PlaneSolver(const Grid& g, const Columns& cols) : g_(g), cols_(cols) {
    const int64_t plane = g.plane();
    ptr_.resize(plane);
    prev_.resize(plane);
    next_.resize(plane);
    gz2_.resize(plane);
    last_finite_.resize(plane);
    filled_.resize(g.n[1]);
    span_lo_.resize(g.n[1]);
    span_hi_.resize(g.n[1]);
    const int64_t m = std::max(g.n[1], g.n[2]) + 2;
    v_.resize(m);
    zb_.resize(m + 1);
    h_.resize(m);
    // Window half-widths: ceil(kWindowMm / spacing) voxels, bounded by the plane's extent (a tiny
    // spacing must not make the loops run past the array). An axis the window covers entirely
    // leaves no point outside it, so it does not limit what the window certifies.
    wy_ = window_halfwidth(g.s[1], g.n[1]);
    wx_ = window_halfwidth(g.s[2], g.n[2]);
    const double by = wy_ >= g.n[1] - 1 ? kInf : (wy_ + 1) * g.s[1];
    const double bx = wx_ >= g.n[2] - 1 ? kInf : (wx_ + 1) * g.s[2];
    certified_ = std::min(by * by, bx * bx);
  }

  // min(ceil(kWindowMm / s), kMaxWindowVoxels, n - 1), computed in double (no integer overflow).
  // The voxel cap keeps a query's window scan small at sub-0.1 mm spacings; what the window cannot
  // certify goes to the exact plane transform (solve_points).
  static int64_t window_halfwidth(double s, int64_t n) {
    const double w = std::min(std::ceil(kWindowMm / s), kMaxWindowVoxels);
    return w >= static_cast<double>(n - 1) ? n - 1 : static_cast<int64_t>(w);
  }

  void start(int64_t z) {
    for (int64_t col = 0; col < g_.plane(); ++col) {
      const int32_t* b = cols_.z.data() + cols_.start[col];
      const int32_t* e = cols_.z.data() + cols_.start[col + 1];
      ptr_[col] = cols_.start[col] + (std::lower_bound(b, e, static_cast<int32_t>(z)) - b);
      set_neighbours(col);
    }
  }

  // Fills gz2_ of plane z wherever window() may read it for the queries idx[0, count) of that
  // plane (linear indices): in each row, the x span of the queries within wy rows, widened by wx.
  void fill_near(int64_t z, const int64_t* idx, size_t count) {
    const int64_t ny = g_.n[1], nx = g_.n[2], plane = g_.plane();
    std::fill(span_lo_.begin(), span_lo_.end(), nx);
    std::fill(span_hi_.begin(), span_hi_.end(), -1);
    std::fill(filled_.begin(), filled_.end(), std::make_pair(int64_t{0}, int64_t{0}));
    int64_t y_lo = ny, y_hi = -1;
    for (size_t k = 0; k < count; ++k) {
      const int64_t r = idx[k] % plane, y = r / nx, x = r % nx;
      span_lo_[y] = std::min(span_lo_[y], x);
      span_hi_[y] = std::max(span_hi_[y], x);
      y_lo = std::min(y_lo, y);
      y_hi = std::max(y_hi, y);
    }
    for (int64_t y = std::max<int64_t>(0, y_lo - wy_); y <= std::min(ny - 1, y_hi + wy_); ++y) {
      int64_t lo = nx, hi = -1;
      for (int64_t q = std::max(y_lo, y - wy_); q <= std::min(y_hi, y + wy_); ++q) {
        lo = std::min(lo, span_lo_[q]);
        hi = std::max(hi, span_hi_[q]);
      }
      if (hi < 0) continue;
      const int64_t c0 = y * nx + std::max<int64_t>(0, lo - wx_);
      const int64_t c1 = y * nx + std::min(nx - 1, hi + wx_) + 1;
      fill_columns(z, c0, c1);
      filled_[y] = {c0 - y * nx, c1 - y * nx};
      int64_t last = -1;
      for (int64_t col = c0; col < c1; ++col) {
        if (gz2_[col] != kInf) last = col - y * nx;
        last_finite_[col] = static_cast<int32_t>(last);
      }
    }
  }

  // Fills gz2_ at linear in-plane columns [c0, c1) of plane z (z must not decrease after start()).
  void fill_columns(int64_t z, int64_t c0, int64_t c1) {
    const double s0 = g_.s[0];
    const int32_t zi = static_cast<int32_t>(z), n0 = static_cast<int32_t>(g_.n[0]);
    for (int64_t col = c0; col < c1; ++col) {
      if (next_[col] < zi) {
        int64_t p = ptr_[col];
        while (p < cols_.start[col + 1] && cols_.z[p] < zi) ++p;
        ptr_[col] = p;
        set_neighbours(col);
      }
    }
    const int32_t* prev = prev_.data();
    const int32_t* next = next_.data();
    double* out = gz2_.data();
    for (int64_t col = c0; col < c1; ++col) {
      const int32_t dz = std::min(next[col] - zi, zi - prev[col]);
      const double d = static_cast<double>(dz) * s0;
      out[col] = dz > n0 ? kInf : d * d;
    }
  }

  // Squared distance of in-plane point (y, x), or -1 when it is not certified by the window.
  double window(int64_t y0, int64_t x0) const {
    const int64_t ny = g_.n[1], nx = g_.n[2];
    const double s1 = g_.s[1], s2 = g_.s[2];
    double best = gz2_[y0 * nx + x0];
    for (int64_t r = 0; r <= wy_; ++r) {
      const double dy = static_cast<double>(r) * s1;
      const double dy2 = dy * dy;
      if (dy2 > best) break;
      for (int sign = 0; sign < (r == 0 ? 1 : 2); ++sign) {
        const int64_t y = sign ? y0 - r : y0 + r;
        if (y < 0 || y >= ny) continue;
        // skip a row whose window segment has no target (all +inf: cannot lower best)
        if (last_finite_[y * nx + std::min(nx - 1, x0 + wx_)] < x0 - wx_) continue;
        const double* row = gz2_.data() + y * nx;
        for (int64_t c = 0; c <= wx_; ++c) {
          const double dx = static_cast<double>(c) * s2;
          const double dx2 = dx * dx;
          if (dy2 + dx2 > best) break;
          if (x0 + c < nx) best = std::min(best, (row[x0 + c] + dy2) + dx2);
          if (c > 0 && x0 - c >= 0) best = std::min(best, (row[x0 - c] + dy2) + dx2);
        }
      }
    }
    return best <= certified_ ? best : -1.0;
  }

  // Exact squared distances at the in-plane points (y, x) of `points` (sorted by y, then x) by
  // two separable Felzenszwalb-Huttenlocher passes evaluated only where needed; results go to
  // out[i] for points[i].
  void solve_points(int64_t z, const std::vector<std::pair<int64_t, int64_t>>& points,
                    double* out) {
    const int64_t ny = g_.n[1], nx = g_.n[2];
    for (int64_t y = 0; y < ny; ++y) {  // complete the rows around what fill_near filled
      fill_columns(z, y * nx, y * nx + filled_[y].first);
      fill_columns(z, y * nx + filled_[y].second, (y + 1) * nx);
    }
    rows_.clear();
    for (const auto& p : points) {
      if (rows_.empty() || rows_.back() != p.first) rows_.push_back(p.first);
    }
    const int64_t nr = static_cast<int64_t>(rows_.size());
    if (static_cast<int64_t>(full_.size()) < nr * nx) full_.resize(nr * nx);
    for (int64_t x = 0; x < nx; ++x) {
      const double* f = gz2_.data() + x;
      const int64_t k = fh_build(f, nx, ny, g_.s[1], v_.data(), zb_.data(), h_.data());
      int64_t j = 0;
      for (int64_t r = 0; r < nr; ++r) {
        full_[r * nx + x] =
            k < 0 ? kInf : fh_eval(f, nx, v_.data(), zb_.data(), g_.s[1], rows_[r], &j);
      }
    }
    size_t i = 0;
    for (int64_t r = 0; r < nr; ++r) {
      const double* f = full_.data() + r * nx;
      const int64_t k = fh_build(f, 1, nx, g_.s[2], v_.data(), zb_.data(), h_.data());
      int64_t j = 0;
      for (; i < points.size() && points[i].first == rows_[r]; ++i) {
        out[i] = k < 0 ? kInf : fh_eval(f, 1, v_.data(), zb_.data(), g_.s[2], points[i].second, &j);
      }
    }
  }

 private:
  static constexpr double kWindowMm = 8.0;
  static constexpr double kMaxWindowVoxels = 64.0;
  const Grid& g_;
  const Columns& cols_;
  // Per column: ptr_ indexes the first target z >= the current plane; next_ / prev_ are the nearest
  // target z at or above / below it (+-kNoZ when there is none).
  void set_neighbours(int64_t col) {
    const int64_t p = ptr_[col];
    next_[col] = p < cols_.start[col + 1] ? cols_.z[p] : kNoZ;
    prev_[col] = p > cols_.start[col] ? cols_.z[p - 1] : -kNoZ;
  }

  static constexpr int32_t kNoZ = 1 << 30;
  std::vector<int64_t> ptr_;
  std::vector<int32_t> prev_, next_;
  std::vector<int64_t> span_lo_, span_hi_;
  std::vector<std::pair<int64_t, int64_t>> filled_;  // per row: x range fill_near filled
  std::vector<int32_t> last_finite_;  // per filled column: x of the nearest finite gz2_ at or left
                                      // // per row: x range of the current plane's queries
  std::vector<double> gz2_, full_;
  std::vector<int64_t> v_, rows_;
  std::vector<double> zb_, h_;
  int64_t wy_ = 0, wx_ = 0;
  double certified_ = 0;
};

// Distances (mm) from every query point to the target surface, in query order.
std::vector<double> distances(const Surface& query, const Surface& target, const Grid& g,
                              int threads) {
  const size_t nq = query.index.size();
  std::vector<double> out(nq, kInf);
  if (nq == 0 || target.index.empty()) return out;
  const Columns cols = build_columns(target, g);
  const int64_t plane = g.plane();
  threads = resolve_threads(threads, static_cast<int64_t>(nq / 4096 + 1));
  parallel_for(threads, [&](int t) {
    // Split queries into contiguous ranges aligned to plane boundaries.
    auto plane_start = [&](size_t i) {
      if (i == 0 || i >= nq) return i;
      const int64_t z = query.index[i] / plane;
      while (i > 0 && query.index[i - 1] / plane == z) --i;
      return i;
    };
    const size_t b = plane_start(nq * t / threads);
    const size_t e = t + 1 == threads ? nq : plane_start(nq * (t + 1) / threads);
    if (b >= e) return;
    PlaneSolver solver(g, cols);
    solver.start(query.index[b] / plane);
    std::vector<size_t> far;
    std::vector<std::pair<int64_t, int64_t>> far_points;
    std::vector<double> far_d2;
    size_t i = b;
    while (i < e) {
      const int64_t z = query.index[i] / plane;
      size_t j = i;
      while (j < e && query.index[j] / plane == z) ++j;
      solver.fill_near(z, query.index.data() + i, j - i);
      far.clear();
      for (size_t k = i; k < j; ++k) {
        const int64_t r = query.index[k] % plane;
        const double d2 = solver.window(r / g.n[2], r % g.n[2]);
        if (d2 < 0) {
          far.push_back(k);
        } else {
          out[k] = std::sqrt(d2);
        }
      }
      if (!far.empty()) {
        far_points.clear();
        for (size_t k : far) {
          const int64_t r = query.index[k] % plane;
          far_points.emplace_back(r / g.n[2], r % g.n[2]);
        }
        far_d2.resize(far.size());
        solver.solve_points(z, far_points, far_d2.data());
        for (size_t f = 0; f < far.size(); ++f) out[far[f]] = std::sqrt(far_d2[f]);
      }
      i = j;
    }
  });
  return out;
}

// Sorts (distance, area) pairs ascending: a stable counting sort by the rank of the area value,
// then a stable LSD radix sort (11-bit digits) of the distance bit patterns, which order like the
// values because distances are non-negative (+inf included).
Direction sorted_direction(const std::vector<double>& d, const std::vector<uint8_t>& code,
                           const std::vector<double>& table) {
  const size_t n = d.size();
  std::vector<double> values(table);
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  std::array<uint32_t, 256> rank{};
  for (size_t c = 0; c < table.size(); ++c) {
    rank[c] = static_cast<uint32_t>(std::lower_bound(values.begin(), values.end(), table[c]) -
                                    values.begin());
  }
  std::vector<uint64_t> key(n), key_tmp(n);
  std::vector<uint8_t> cd(n), cd_tmp(n);
  std::vector<size_t> pos(values.size() + 1, 0);
  for (size_t i = 0; i < n; ++i) ++pos[rank[code[i]] + 1];
  for (size_t r = 1; r < pos.size(); ++r) pos[r] += pos[r - 1];
  for (size_t i = 0; i < n; ++i) {
    const size_t at = pos[rank[code[i]]]++;
    std::memcpy(&key[at], &d[i], sizeof(double));
    cd[at] = code[i];
  }
  constexpr int kBits = 11, kPasses = 6;
  constexpr size_t kBuckets = size_t{1} << kBits;
  std::vector<size_t> hist(kPasses * kBuckets, 0);
  for (size_t i = 0; i < n; ++i) {
    for (int p = 0; p < kPasses; ++p)
      ++hist[p * kBuckets + ((key[i] >> (p * kBits)) & (kBuckets - 1))];
  }
  for (int p = 0; p < kPasses; ++p) {
    size_t* h = hist.data() + p * kBuckets;
    if (n == 0 || h[(key[0] >> (p * kBits)) & (kBuckets - 1)] == n) continue;  // one bucket
    size_t sum = 0;
    for (size_t b = 0; b < kBuckets; ++b) {
      const size_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t at = h[(key[i] >> (p * kBits)) & (kBuckets - 1)]++;
      key_tmp[at] = key[i];
      cd_tmp[at] = cd[i];
    }
    key.swap(key_tmp);
    cd.swap(cd_tmp);
  }
  Direction out;
  out.distances.resize(n);
  out.areas.resize(n);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(&out.distances[i], &key[i], sizeof(double));
    out.areas[i] = table[cd[i]];
  }
  return out;
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

Result surface_distances_cpu(const uint8_t* pred, const uint8_t* gt, const Problem& pb,
                             int threads) {
  validate_problem(pb);
  if (pred == nullptr || gt == nullptr) {
    throw std::invalid_argument("expected pred and gt buffers, found a null pointer");
  }
  Result res;
  const Bbox box = bounding_box(pred, gt, pb.shape);
  if (box.empty()) return res;
  Grid g;
  const int64_t pad = pb.boundary == Boundary::kCorner ? 1 : 0;
  for (int a = 0; a < 3; ++a) g.n[a] = box.hi[a] - box.lo[a] + 1 + pad;
  if (pb.dim == 2) g.n[0] = 1;
  g.s = pb.spacing;
  if (pb.dim == 2) g.s[0] = 1.0;
  std::vector<double> table;
  if (pb.boundary == Boundary::kCorner) {
    if (pb.dim == 3) {
      const auto t = corner_area_table_3d(pb.spacing);
      table.assign(t.begin(), t.end());
    } else {
      const auto t = corner_length_table_2d({pb.spacing[1], pb.spacing[2]});
      table.assign(t.begin(), t.end());
    }
  }
  const int nt = resolve_threads(threads, g.n[0]);
  const Surface sg = extract(gt, pb, box, g, table, nt);
  const Surface sp = extract(pred, pb, box, g, table, nt);
  const std::vector<double> d_gt = distances(sg, sp, g, threads);
  const std::vector<double> d_pred = distances(sp, sg, g, threads);
  if (table.empty()) table.push_back(1.0);  // voxel boundaries: weight 1, code 0
  res.gt_to_pred = sorted_direction(d_gt, sg.code, table);
  res.pred_to_gt = sorted_direction(d_pred, sp.code, table);
  return res;
}

// ------------------------------------------------------------------ CUDA memory plan
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

void run_worker_pool_for_test(int threads, int throwing) {
  parallel_for(threads, [&](int t) {
    if (t == throwing) {
      throw std::runtime_error("worker " + std::to_string(t) + " failed");
    }
  });
}

// ------------------------------------------------------------------ public tables
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

#ifndef RDCL_WITH_CUDA
bool cuda_built() { return false; }

CudaResult::~CudaResult() = default;

void CudaResult::copy_to(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t) const {
  throw std::runtime_error("rdcl was built without CUDA: the CUDA surface engine is unavailable");
}

void surface_distances_cuda(uintptr_t, uintptr_t, const Problem& pb, uintptr_t, CudaResult*) {
  validate_problem(pb);
  throw std::runtime_error("rdcl was built without CUDA: the CUDA surface engine is unavailable");
}
#endif

}  // namespace surface
}  // namespace rdcl
