// Surface-metric engine (CPU): exact distances from the surface points of one mask to the surface
// of the other.
//
// Distance algorithm (exact): surface points of the target mask are stored per (y, x) column as a
// sorted list of z indices. For each z plane holding query points, the squared z-distance to the
// nearest target point of every column is filled in a plane buffer; each query then searches a
// window of that plane in rings of growing |dy|, pruned by the best value so far and by per-row
// minima over blocks of 8 columns (a query that no window row can certify is rejected after one
// minimum per block, with an upper bound). The queries of a plane that the window cannot certify
// (far from the other surface) are answered together by an exact separable Felzenszwalb-
// Huttenlocher transform restricted to the rows and columns their upper bounds reach and to the
// box of the target's columns. Threads take chunks of planes from a shared counter. Memory is
// O(plane + surface points) per thread.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "surface/cpu_internal.h"
#include "surface/worker_pool.h"

namespace rdcl {
namespace surface {
namespace detail {
namespace {

// ------------------------------------------------------------------ distances
// Target surface points per (y, x) column: sorted z indices.
struct Columns {
  std::vector<int64_t> start;  // size plane + 1
  std::vector<int32_t> z;
  // In-plane extent of the columns holding a target: per x, the rows [col_y0, col_y1] (empty when
  // col_y0 > col_y1), and over the plane the box [y0, y1] x [x0, x1].
  std::vector<int32_t> col_y0, col_y1;
  int64_t y0 = 0, y1 = -1, x0 = 0, x1 = -1;
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
  const int64_t ny = g.n[1], nx = g.n[2];
  c.col_y0.assign(nx, static_cast<int32_t>(ny));
  c.col_y1.assign(nx, -1);
  c.y0 = ny;
  c.x0 = nx;
  for (int64_t y = 0; y < ny; ++y) {
    for (int64_t x = 0; x < nx; ++x) {
      if (c.start[y * nx + x + 1] == c.start[y * nx + x]) continue;
      c.col_y0[x] = std::min(c.col_y0[x], static_cast<int32_t>(y));
      c.col_y1[x] = static_cast<int32_t>(y);
      c.y0 = std::min(c.y0, y);
      c.y1 = y;
      c.x0 = std::min(c.x0, x);
      c.x1 = std::max(c.x1, x);
    }
  }
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
    bmin_.resize(g.n[1] * ((g.n[2] + kBlock - 1) / kBlock));
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
  // certify goes to the exact plane transform (solve_far).
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
      block_minima(y, c0 - y * nx, c1 - y * nx);
    }
  }

  // bmin_ of row y for the blocks overlapping the filled columns [c0, c1): the minimum of gz2_ over
  // the block's filled columns (a window only reads filled columns, so this bounds what it reads).
  void block_minima(int64_t y, int64_t c0, int64_t c1) {
    static_assert(kBlock == 8, "the tree of minima below covers 8 columns");
    const double* row = gz2_.data() + y * g_.n[2];
    double* b = bmin_.data() + y * ((g_.n[2] + kBlock - 1) / kBlock);
    for (int64_t k = c0 / kBlock; k * kBlock < c1; ++k) {
      const int64_t lo = k * kBlock, hi = lo + kBlock;
      if (lo >= c0 && hi <= c1) {  // a whole block: a tree of minima (no loop-carried chain)
        const double* v = row + lo;
        const double m01 = std::min(v[0], v[1]), m23 = std::min(v[2], v[3]);
        const double m45 = std::min(v[4], v[5]), m67 = std::min(v[6], v[7]);
        b[k] = std::min(std::min(m01, m23), std::min(m45, m67));
        continue;
      }
      double m = kInf;
      for (int64_t x = std::max(c0, lo); x < std::min(c1, hi); ++x) m = std::min(m, row[x]);
      b[k] = m;
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

  // Squared distance of in-plane point (y, x), or -1 when it is not certified by the window; *bound
  // receives an upper bound on it (+inf when the window holds no target).
  //
  // First a rejection pass over the window's rows (rings of growing |dy|): a row's lower bound is
  // the minimum of bmin_ over the blocks of kBlock columns its segment overlaps, plus dy^2. When no
  // row can reach `certified` the query is far and the pass's upper bound goes to the far path:
  // per block (bmin + dy^2) + dxfar^2, at least the value of the block's minimum. Otherwise rows
  // are scanned exactly (rings of growing |dy|, pruned by the best value so far); a row whose lower
  // bound exceeds it is skipped.
  double window(int64_t y0, int64_t x0, double* bound) const {
    const int64_t ny = g_.n[1], nx = g_.n[2], nb = (nx + kBlock - 1) / kBlock;
    const double s1 = g_.s[1], s2 = g_.s[2];
    const int64_t b_lo = std::max<int64_t>(0, x0 - wx_) / kBlock;
    const int64_t b_hi = std::min(nx - 1, x0 + wx_) / kBlock;
    double best = gz2_[y0 * nx + x0];
    if (!(best <= certified_)) {
      double ub = best;
      double far2[kMaxBlocks];
      for (int64_t k = b_lo; k <= b_hi; ++k) {
        const int64_t f = std::max(std::abs(k * kBlock - x0),
                                   std::abs(std::min(nx - 1, k * kBlock + kBlock - 1) - x0));
        const double d = static_cast<double>(f) * s2;
        far2[k - b_lo] = d * d;
      }
      bool reachable = false;
      for (int64_t r = 0; r <= wy_ && !reachable; ++r) {
        const double dy = static_cast<double>(r) * s1;
        const double dy2 = dy * dy;
        for (int sign = 0; sign < (r == 0 ? 1 : 2); ++sign) {
          const int64_t y = sign ? y0 - r : y0 + r;
          if (y < 0 || y >= ny) continue;
          const double* bm = bmin_.data() + y * nb;
          for (int64_t k = b_lo; k <= b_hi; ++k) {
            const double my = bm[k] + dy2;
            reachable |= my <= certified_;
            ub = std::min(ub, my + far2[k - b_lo]);
          }
        }
      }
      if (!reachable) {
        *bound = ub;
        return -1.0;
      }
    }
    for (int64_t r = 0; r <= wy_; ++r) {
      const double dy = static_cast<double>(r) * s1;
      const double dy2 = dy * dy;
      if (dy2 > best) break;
      for (int sign = 0; sign < (r == 0 ? 1 : 2); ++sign) {
        const int64_t y = sign ? y0 - r : y0 + r;
        if (y < 0 || y >= ny) continue;
        const double* bm = bmin_.data() + y * nb;
        double lb = kInf;
        for (int64_t k = b_lo; k <= b_hi; ++k) lb = std::min(lb, bm[k]);
        if (lb + dy2 > best) continue;  // also skips rows without a target in the segment
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
    *bound = best;
    return best <= certified_ ? best : -1.0;
  }

  // A query the window could not certify: in-plane point (y, x) and an upper bound on its squared
  // distance (+inf when none is known).
  struct Far {
    int64_t y, x;
    double bound;
  };

  // Exact squared distances of the far queries of plane z (sorted by y, then x; results to out[i])
  // by two separable Felzenszwalb-Huttenlocher passes restricted to the part of the plane that can
  // hold a nearest target: a query with bound b reaches floor(sqrt(b) / s) + 1 rows and columns
  // (every candidate with a value <= b lies inside, since the value is >= its dy^2 and its dx^2),
  // intersected with the box of the target's columns. The y pass builds, per column of that box,
  // the lower envelope of the column's finite rows and evaluates it at the far queries' rows; the
  // x pass builds, per such row, the envelope over the columns its queries reach and evaluates it
  // at the queries. Leaving out sites that no query can reach leaves every minimum unchanged.
  void solve_far(int64_t z, const std::vector<Far>& q, double* out) {
    const int64_t ny = g_.n[1], nx = g_.n[2];
    int64_t y0 = ny, y1 = -1, x0 = nx, x1 = -1;
    rows_.clear();
    row_x0_.clear();
    row_x1_.clear();
    for (const Far& f : q) {
      const int64_t ry = reach(f.bound, g_.s[1], ny), rx = reach(f.bound, g_.s[2], nx);
      const int64_t lo = std::max<int64_t>(0, f.x - rx), hi = std::min(nx - 1, f.x + rx);
      y0 = std::min(y0, std::max<int64_t>(0, f.y - ry));
      y1 = std::max(y1, std::min(ny - 1, f.y + ry));
      x0 = std::min(x0, lo);
      x1 = std::max(x1, hi);
      if (rows_.empty() || rows_.back() != f.y) {
        rows_.push_back(f.y);
        row_x0_.push_back(lo);
        row_x1_.push_back(hi);
      } else {
        row_x0_.back() = std::min(row_x0_.back(), lo);
        row_x1_.back() = std::max(row_x1_.back(), hi);
      }
    }
    // Only columns holding a target can be sites.
    const int64_t gx0 = std::max(x0, cols_.x0), gx1 = std::min(x1, cols_.x1);
    const int64_t fy0 = std::max(y0, cols_.y0), fy1 = std::min(y1, cols_.y1);
    if (gx0 > gx1 || fy0 > fy1) {  // no reachable target (cannot happen with a finite bound)
      std::fill(out, out + q.size(), kInf);
      return;
    }
    const int64_t w = gx1 - gx0 + 1, nr = static_cast<int64_t>(rows_.size());
    if (static_cast<int64_t>(full_.size()) < nr * w) full_.resize(nr * w);
    // Fill the box's rows, then transpose them (tiles of kTile rows) so that each column's y pass
    // reads and writes contiguous memory.
    const int64_t h = fy1 - fy0 + 1;
    if (static_cast<int64_t>(colbuf_.size()) < h * w) colbuf_.resize(h * w);
    if (static_cast<int64_t>(colout_.size()) < nr * w) colout_.resize(nr * w);
    for (int64_t y = fy0; y <= fy1; ++y) fill_columns(z, y * nx + gx0, y * nx + gx1 + 1);
    for (int64_t t = 0; t < h; t += kTile) {
      const int64_t te = std::min(h, t + kTile);
      for (int64_t x = 0; x < w; ++x) {
        const double* src = gz2_.data() + (fy0 + t) * nx + gx0 + x;
        double* dst = colbuf_.data() + x * h + t;
        for (int64_t y = 0; y < te - t; ++y) dst[y] = src[y * nx];
      }
    }
    const double s1 = g_.s[1], s2 = g_.s[2];
    for (int64_t x = 0; x < w; ++x) {
      double* col_out = colout_.data() + x * nr;
      const int64_t a = std::max<int64_t>(fy0, cols_.col_y0[gx0 + x]);
      const int64_t b = std::min<int64_t>(fy1, cols_.col_y1[gx0 + x]);
      const double* f = colbuf_.data() + x * h + (a - fy0);
      const int64_t k =
          a > b ? -1 : fh_build(f, 1, b - a + 1, s1, v_.data(), zb_.data(), h_.data());
      if (k < 0) {
        std::fill(col_out, col_out + nr, kInf);
        continue;
      }
      int64_t j = 0;
      for (int64_t r = 0; r < nr; ++r) {
        col_out[r] = fh_eval(f, 1, v_.data(), zb_.data(), s1, rows_[r] - a, &j);
      }
    }
    for (int64_t t = 0; t < nr; t += kTile) {  // back to rows: full_[r * w + x]
      const int64_t te = std::min(nr, t + kTile);
      for (int64_t x = 0; x < w; ++x) {
        const double* src = colout_.data() + x * nr + t;
        double* dst = full_.data() + t * w + x;
        for (int64_t r = 0; r < te - t; ++r) dst[r * w] = src[r];
      }
    }
    size_t i = 0;
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t lo = std::max(row_x0_[r], gx0), hi = std::min(row_x1_[r], gx1);
      const double* f = full_.data() + r * w + (lo - gx0);
      const int64_t k =
          lo > hi ? -1 : fh_build(f, 1, hi - lo + 1, s2, v_.data(), zb_.data(), h_.data());
      int64_t j = 0;
      for (; i < q.size() && q[i].y == rows_[r]; ++i) {
        out[i] = k < 0 ? kInf : fh_eval(f, 1, v_.data(), zb_.data(), s2, q[i].x - lo, &j);
      }
    }
  }

 private:
  static constexpr double kWindowMm = 8.0;
  static constexpr double kMaxWindowVoxels = 64.0;
  static constexpr int64_t kBlock = 8;
  // blocks a window's row segment (at most 2 * 64 + 1 columns) can overlap
  static constexpr int64_t kMaxBlocks = (2 * 64 + 1) / kBlock + 2;
  static constexpr int64_t kTile = 16;
  // Rows (and columns, with s and n of that axis) a query with squared-distance bound `bound`
  // reaches: floor(sqrt(bound) / s) + 1, at most n - 1 (+inf: n - 1).
  static int64_t reach(double bound, double s, int64_t n) {
    if (!(bound < kInf)) return n - 1;
    const double r = std::floor(std::sqrt(bound) / s) + 1;
    return r >= static_cast<double>(n - 1) ? n - 1 : static_cast<int64_t>(r);
  }
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
  // per row, per block of kBlock columns: minimum of gz2_ over the block's filled columns
  std::vector<double> bmin_;
  std::vector<double> gz2_, full_, colbuf_, colout_;
  std::vector<int64_t> v_, rows_, row_x0_, row_x1_;
  std::vector<double> zb_, h_;
  int64_t wy_ = 0, wx_ = 0;
  double certified_ = 0;
};

}  // namespace

// Distances (mm) from every query point to the target surface, in query order. Threads take
// chunks of consecutive planes from a shared counter in increasing z, so each worker's planes
// increase and its column pointers only move forward (one start() per worker).
std::vector<double> distances(const Surface& query, const Surface& target, const Grid& g,
                              int threads) {
  const size_t nq = query.index.size();
  std::vector<double> out(nq, kInf);
  if (nq == 0 || target.index.empty()) return out;
  const Columns cols = build_columns(target, g);
  const int64_t plane = g.plane();
  std::vector<size_t> first;  // first query of each plane holding queries, then nq
  for (size_t i = 0; i < nq; ++i) {
    if (i == 0 || query.index[i] / plane != query.index[i - 1] / plane) first.push_back(i);
  }
  const size_t planes = first.size();
  first.push_back(nq);
  threads = resolve_threads(threads, static_cast<int64_t>(std::min(planes, nq / 4096 + 1)));
  const size_t chunk = threads == 1 ? planes : std::max<size_t>(1, planes / (8 * threads));
  std::atomic<size_t> next{0};
  parallel_for(threads, [&](int) {
    std::optional<PlaneSolver> solver;
    std::vector<size_t> far;
    std::vector<PlaneSolver::Far> far_points;
    std::vector<double> far_d2;
    for (;;) {
      const size_t c = next.fetch_add(chunk);
      if (c >= planes) break;
      for (size_t p = c; p < std::min(planes, c + chunk); ++p) {
        const size_t i = first[p], j = first[p + 1];
        const int64_t z = query.index[i] / plane;
        if (!solver) {
          solver.emplace(g, cols);
          solver->start(z);
        }
        solver->fill_near(z, query.index.data() + i, j - i);
        far.clear();
        far_points.clear();
        for (size_t k = i; k < j; ++k) {
          const int64_t r = query.index[k] % plane;
          double bound;
          const double d2 = solver->window(r / g.n[2], r % g.n[2], &bound);
          if (d2 < 0) {
            far.push_back(k);
            far_points.push_back({r / g.n[2], r % g.n[2], bound});
          } else {
            out[k] = std::sqrt(d2);
          }
        }
        if (far.empty()) continue;
        far_d2.resize(far.size());
        solver->solve_far(z, far_points, far_d2.data());
        for (size_t f = 0; f < far.size(); ++f) out[far[f]] = std::sqrt(far_d2[f]);
      }
    }
  });
  return out;
}

}  // namespace detail
}  // namespace surface
}  // namespace rdcl
