// Surface-metric engine (CPU): exact distances from the surface points of one mask to the surface
// of the other.
//
// Distance algorithm (exact): surface points of the target mask are stored per (y, x) column as a
// sorted list of z indices. For each z plane holding query points, the squared z-distance to the
// nearest target point of every column is filled in a plane buffer; each query then searches a
// window of that plane in rings of growing |dy|, pruned by the best value so far. A query whose
// result cannot be certified inside the window (far from the other surface) is answered by an exact
// separable Felzenszwalb-Huttenlocher transform of its plane. Memory is O(plane + surface points).
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "surface/cpu_internal.h"
#include "surface/worker_pool.h"

namespace rdcl {
namespace surface {
namespace detail {
namespace {

// Tasks per worker and direction when several threads share the planes (dynamic scheduling).
constexpr size_t kChunksPerThread = 8;

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
  // per filled column: x of the nearest finite gz2_ at or left
  std::vector<int32_t> last_finite_;
  std::vector<double> gz2_, full_;
  std::vector<int64_t> v_, rows_;
  std::vector<double> zb_, h_;
  int64_t wy_ = 0, wx_ = 0;
  double certified_ = 0;
};

// Distances of the query points [b, e) (whole planes, increasing z) into out[b, e). The solver's
// column pointers only move forward, so a solver may go on with a later range of the same query
// surface without start().
void solve_range(PlaneSolver* solver, const Surface& query, const Grid& g, size_t b, size_t e,
                 double* out) {
  const int64_t plane = g.plane();
  std::vector<size_t> far;
  std::vector<std::pair<int64_t, int64_t>> far_points;
  std::vector<double> far_d2;
  size_t i = b;
  while (i < e) {
    const int64_t z = query.index[i] / plane;
    size_t j = i;
    while (j < e && query.index[j] / plane == z) ++j;
    solver->fill_near(z, query.index.data() + i, j - i);
    far.clear();
    for (size_t k = i; k < j; ++k) {
      const int64_t r = query.index[k] % plane;
      const double d2 = solver->window(r / g.n[2], r % g.n[2]);
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
      solver->solve_points(z, far_points, far_d2.data());
      for (size_t f = 0; f < far.size(); ++f) out[far[f]] = std::sqrt(far_d2[f]);
    }
    i = j;
  }
}

// Query ranges of whole planes holding about `size` points each (at least one plane each).
std::vector<std::pair<size_t, size_t>> plane_chunks(const Surface& query, int64_t plane,
                                                    size_t size) {
  std::vector<std::pair<size_t, size_t>> chunks;
  const size_t nq = query.index.size();
  size_t b = 0;
  while (b < nq) {
    size_t e = std::min(nq, b + std::max<size_t>(size, 1));
    while (e < nq && query.index[e] / plane == query.index[e - 1] / plane) ++e;
    chunks.emplace_back(b, e);
    b = e;
  }
  return chunks;
}

}  // namespace

// Distances of both directions: [0] from a's points to b's surface, [1] from b's to a's.
std::array<std::vector<double>, 2> distances_both(const Surface& a, const Surface& b, const Grid& g,
                                                  int threads) {
  const std::array<const Surface*, 2> query{&a, &b}, target{&b, &a};
  std::array<std::vector<double>, 2> out;
  std::array<Columns, 2> cols;
  for (int d = 0; d < 2; ++d) out[d].assign(query[d]->index.size(), kInf);
  const size_t total = a.index.size() + b.index.size();
  threads = resolve_threads(threads, static_cast<int64_t>(total / 4096 + 1));
  auto active = [&](int d) { return !query[d]->index.empty() && !target[d]->index.empty(); };
  parallel_for(std::min(threads, 2), [&](int t) {
    for (int d = 0; d < 2; ++d) {
      if ((threads < 2 || d == t) && active(d)) cols[d] = build_columns(*target[d], g);
    }
  });
  // Tasks: runs of whole planes, direction 0 then 1, each in increasing z, taken in order from a
  // shared counter, so a worker's tasks of one direction come in increasing z (one start() each)
  // and the slow planes (far queries) spread over the workers. One thread: one task a direction.
  struct Task {
    int d;
    size_t b, e;
  };
  std::vector<Task> tasks;
  const int64_t plane = g.plane();
  for (int d = 0; d < 2; ++d) {
    if (!active(d)) continue;
    const size_t nq = query[d]->index.size();
    const size_t size = threads == 1 ? nq : nq / (static_cast<size_t>(threads) * kChunksPerThread);
    for (const auto& [cb, ce] : plane_chunks(*query[d], plane, size)) tasks.push_back({d, cb, ce});
  }
  std::atomic<size_t> next{0};
  parallel_for(threads, [&](int) {
    std::unique_ptr<PlaneSolver> solver;
    int solver_dir = -1;
    for (size_t k = next.fetch_add(1); k < tasks.size(); k = next.fetch_add(1)) {
      const Task& task = tasks[k];
      const Surface& q = *query[task.d];
      if (solver_dir != task.d) {
        solver.reset();  // the other direction's buffers go before the new ones are allocated
        solver = std::make_unique<PlaneSolver>(g, cols[task.d]);
        solver->start(q.index[task.b] / plane);
        solver_dir = task.d;
      }
      solve_range(solver.get(), q, g, task.b, task.e, out[task.d].data());
    }
  });
  return out;
}

}  // namespace detail
}  // namespace surface
}  // namespace rdcl
