// Surface-metric engine: CUDA implementation (same definitions as surface_cpu.cpp).
//
// Device pipeline on the caller's stream: bounding box (atomics) -> surface points and areas of
// both masks on the processing grid -> for each target mask an exact separable squared EDT of its
// surface points (1D sweep along z, Felzenszwalb-Huttenlocher along y and x, float64, values
// accumulated as
// ((dz*s0)^2 + (dy*s1)^2) + (dx*s2)^2 like scipy) -> gather at the other mask's surface points ->
// sort by (distance, area) with thrust.
#include <cuda_runtime.h>
#include <math_constants.h>
#include <thrust/copy.h>
#include <thrust/device_ptr.h>
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/zip_iterator.h>
#include <thrust/sort.h>
#include <thrust/tuple.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "surface/surface.h"

namespace rdcl {
namespace surface {
namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
  }
}

struct DevGrid {
  int64_t n0, n1, n2;  // processing grid
  int64_t lo0, lo1, lo2;
  int64_t s0n, s1n, s2n;  // input shape
  double s0, s1, s2;
  int dim, corner;
};

__constant__ double c_table[256];

__global__ void bbox_kernel(const uint8_t* a, const uint8_t* b, int64_t n0, int64_t n1, int64_t n2,
                            unsigned long long* box) {
  const int64_t total = n0 * n1 * n2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(blockDim.x) * gridDim.x) {
    if (a[i] | b[i]) {
      const unsigned long long z = i / (n1 * n2), y = i / n2 % n1, x = i % n2;
      atomicMin(box + 0, z);
      atomicMin(box + 1, y);
      atomicMin(box + 2, x);
      atomicMax(box + 3, z);
      atomicMax(box + 4, y);
      atomicMax(box + 5, x);
    }
  }
}

__device__ uint8_t voxel(const uint8_t* m, const DevGrid& g, int64_t z, int64_t y, int64_t x) {
  // (z, y, x) in crop voxel coordinates; outside the crop is background.
  z += g.lo0;
  y += g.lo1;
  x += g.lo2;
  if (z < 0 || y < 0 || x < 0 || z >= g.s0n || y >= g.s1n || x >= g.s2n) return 0;
  return m[(z * g.s1n + y) * g.s2n + x] != 0;
}

// area[i] > 0 (or voxel weight 1) marks a surface point; 0 otherwise.
__global__ void surface_kernel(const uint8_t* m, DevGrid g, int64_t zmax_vox, double* area) {
  const int64_t total = g.n0 * g.n1 * g.n2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t z = i / (g.n1 * g.n2), y = i / g.n2 % g.n1, x = i % g.n2;
    double a = 0;
    if (g.corner) {
      int code;
      if (g.dim == 3) {
        auto v = [&](int64_t dz, int64_t dy, int64_t dx) {
          const int64_t zz = z - 1 + dz;
          return (zz < 0 || zz > zmax_vox) ? 0 : voxel(m, g, zz, y - 1 + dy, x - 1 + dx);
        };
        code = (v(0, 0, 0) << 7) | (v(0, 0, 1) << 6) | (v(0, 1, 0) << 5) | (v(0, 1, 1) << 4) |
               (v(1, 0, 0) << 3) | (v(1, 0, 1) << 2) | (v(1, 1, 0) << 1) | v(1, 1, 1);
        if (code != 0 && code != 255) a = c_table[code];
      } else {
        auto v = [&](int64_t dy, int64_t dx) { return voxel(m, g, 0, y - 1 + dy, x - 1 + dx); };
        code = (v(0, 0) << 3) | (v(0, 1) << 2) | (v(1, 0) << 1) | v(1, 1);
        if (code != 0 && code != 15) a = c_table[code];
      }
    } else if (voxel(m, g, z, y, x)) {
      const bool zin = g.dim == 2 || (z > 0 && z < zmax_vox && voxel(m, g, z - 1, y, x) &&
                                      voxel(m, g, z + 1, y, x));
      const bool inner = zin && voxel(m, g, z, y - 1, x) && voxel(m, g, z, y + 1, x) &&
                         voxel(m, g, z, y, x - 1) && voxel(m, g, z, y, x + 1);
      if (!inner) a = 1.0;
    }
    area[i] = a;
  }
}

__global__ void z_pass(const double* area, DevGrid g, double* f) {
  const int64_t cols = g.n1 * g.n2;
  const double inf = CUDART_INF;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols;
       c += int64_t(blockDim.x) * gridDim.x) {
    int64_t last = -1;
    for (int64_t z = 0; z < g.n0; ++z) {
      if (area[z * cols + c] != 0) last = z;
      f[z * cols + c] = last < 0 ? -1.0 : static_cast<double>(z - last);
    }
    last = -1;
    for (int64_t z = g.n0 - 1; z >= 0; --z) {
      if (area[z * cols + c] != 0) last = z;
      double d = f[z * cols + c];
      if (last >= 0 && (d < 0 || static_cast<double>(last - z) < d)) d = last - z;
      const double dz = d * g.s0;
      f[z * cols + c] = d < 0 ? inf : dz * dz;
    }
  }
}

// FH along one axis for every line; line l starts at base(l) with stride `stride`, length n.
__global__ void fh_pass(const double* in, double* out, int64_t lines, int64_t n, int64_t stride,
                        int64_t inner, int64_t outer_stride, double s, int* v_buf, double* z_buf) {
  const double inf = CUDART_INF;
  const double c = s * s;
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines;
       l += int64_t(blockDim.x) * gridDim.x) {
    const int64_t base = (l / inner) * outer_stride + (l % inner);
    const double* f = in + base;
    double* o = out + base;
    int* v = v_buf + l * n;
    double* zb = z_buf + l * (n + 1);
    int64_t k = -1;
    for (int64_t q = 0; q < n; ++q) {
      const double fq = f[q * stride];
      if (fq == inf) continue;
      if (k < 0) {
        k = 0;
        v[0] = static_cast<int>(q);
        zb[0] = -inf;
        zb[1] = inf;
        continue;
      }
      double x;
      for (;;) {
        const int64_t p = v[k];
        const double fp = f[p * stride];
        x = ((fq + c * double(q) * q) - (fp + c * double(p) * p)) / (2 * c * double(q - p));
        if (x > zb[k]) break;
        --k;
      }
      ++k;
      v[k] = static_cast<int>(q);
      zb[k] = x;
      zb[k + 1] = inf;
    }
    if (k < 0) {
      for (int64_t q = 0; q < n; ++q) o[q * stride] = inf;
      continue;
    }
    int64_t j = 0;
    for (int64_t q = 0; q < n; ++q) {
      while (zb[j + 1] < double(q)) ++j;
      const double d = double(q - v[j]) * s;
      o[q * stride] = f[v[j] * stride] + d * d;
    }
  }
}

struct IsSurface {
  const double* area;
  __device__ bool operator()(int64_t i) const { return area[i] != 0; }
};

__global__ void gather_kernel(const int64_t* idx, int64_t count, const double* area,
                              const double* edt, double* dist_out, double* area_out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(blockDim.x) * gridDim.x) {
    area_out[i] = area[idx[i]];
    dist_out[i] = sqrt(edt[idx[i]]);
  }
}

int blocks_for(int64_t n) { return static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535)); }

template <typename T>
T* dev_alloc(int64_t n, cudaStream_t st) {
  void* p = nullptr;
  check(cudaMallocAsync(&p, std::max<int64_t>(n, 1) * sizeof(T), st), "cudaMallocAsync");
  return static_cast<T*>(p);
}

// Exact squared EDT (grid) of the surface points marked in `area`.
void edt(const double* area, const DevGrid& g, double* buf_a, double* buf_b, cudaStream_t st) {
  const int64_t cols = g.n1 * g.n2;
  z_pass<<<blocks_for(cols), 256, 0, st>>>(area, g, buf_a);
  const int64_t m = std::max(g.n1, g.n2);
  const int64_t lines = std::max(g.n0 * g.n2, g.n0 * g.n1);
  int* v = dev_alloc<int>(lines * m, st);
  double* zb = dev_alloc<double>(lines * (m + 1), st);
  // y lines: index l = z * n2 + x; base = z * n1 * n2 + x; stride n2.
  fh_pass<<<blocks_for(g.n0 * g.n2), 256, 0, st>>>(buf_a, buf_b, g.n0 * g.n2, g.n1, g.n2, g.n2,
                                                   cols, g.s1, v, zb);
  // x lines: index l = z * n1 + y; base = l * n2; stride 1.
  fh_pass<<<blocks_for(g.n0 * g.n1), 256, 0, st>>>(buf_b, buf_a, g.n0 * g.n1, g.n2, 1, 1, g.n2,
                                                   g.s2, v, zb);
  check(cudaGetLastError(), "EDT kernels");
  cudaFreeAsync(v, st);
  cudaFreeAsync(zb, st);
}

void sort_pairs(double* d, double* a, int64_t n, cudaStream_t st) {
  auto first = thrust::make_zip_iterator(
      thrust::make_tuple(thrust::device_pointer_cast(d), thrust::device_pointer_cast(a)));
  thrust::sort(thrust::cuda::par.on(st), first, first + n);
}

}  // namespace

bool cuda_built() { return true; }

CudaResult::~CudaResult() {
  cudaFree(d_dist_gt);
  cudaFree(d_area_gt);
  cudaFree(d_dist_pred);
  cudaFree(d_area_pred);
}

void CudaResult::copy_to(uintptr_t dist_gt, uintptr_t area_gt, uintptr_t dist_pred,
                         uintptr_t area_pred, uintptr_t stream) const {
  auto st = reinterpret_cast<cudaStream_t>(stream);
  auto cp = [&](uintptr_t dst, const double* src, int64_t n) {
    if (n > 0) {
      check(cudaMemcpyAsync(reinterpret_cast<void*>(dst), src, n * sizeof(double),
                            cudaMemcpyDeviceToDevice, st),
            "cudaMemcpyAsync");
    }
  };
  cp(dist_gt, d_dist_gt, count_gt);
  cp(area_gt, d_area_gt, count_gt);
  cp(dist_pred, d_dist_pred, count_pred);
  cp(area_pred, d_area_pred, count_pred);
}

void surface_distances_cuda(uintptr_t pred, uintptr_t gt, const Problem& pb, uintptr_t stream,
                            CudaResult* out) {
  auto st = reinterpret_cast<cudaStream_t>(stream);
  const auto* p = reinterpret_cast<const uint8_t*>(pred);
  const auto* q = reinterpret_cast<const uint8_t*>(gt);
  const int64_t total = pb.shape[0] * pb.shape[1] * pb.shape[2];
  unsigned long long h_box[6] = {~0ull, ~0ull, ~0ull, 0, 0, 0};
  auto* d_box = dev_alloc<unsigned long long>(6, st);
  check(cudaMemcpyAsync(d_box, h_box, sizeof(h_box), cudaMemcpyHostToDevice, st), "bbox init");
  bbox_kernel<<<blocks_for(total), 256, 0, st>>>(p, q, pb.shape[0], pb.shape[1], pb.shape[2],
                                                 d_box);
  check(cudaMemcpyAsync(h_box, d_box, sizeof(h_box), cudaMemcpyDeviceToHost, st), "bbox copy");
  check(cudaStreamSynchronize(st), "bbox sync");
  cudaFreeAsync(d_box, st);
  out->count_gt = out->count_pred = 0;
  if (h_box[0] == ~0ull) return;  // both masks empty

  DevGrid g{};
  const int64_t pad = pb.boundary == Boundary::kCorner ? 1 : 0;
  g.lo0 = static_cast<int64_t>(h_box[0]);
  g.lo1 = static_cast<int64_t>(h_box[1]);
  g.lo2 = static_cast<int64_t>(h_box[2]);
  g.n0 = pb.dim == 2 ? 1 : static_cast<int64_t>(h_box[3] - h_box[0]) + 1 + pad;
  g.n1 = static_cast<int64_t>(h_box[4] - h_box[1]) + 1 + pad;
  g.n2 = static_cast<int64_t>(h_box[5] - h_box[2]) + 1 + pad;
  g.s0n = pb.shape[0];
  g.s1n = pb.shape[1];
  g.s2n = pb.shape[2];
  g.s0 = pb.dim == 2 ? 1.0 : pb.spacing[0];
  g.s1 = pb.spacing[1];
  g.s2 = pb.spacing[2];
  g.dim = pb.dim;
  g.corner = pb.boundary == Boundary::kCorner;
  const int64_t zmax_vox = static_cast<int64_t>(h_box[3] - h_box[0]);

  double table[256] = {0};
  if (pb.dim == 3) {
    const auto t = corner_area_table_3d(pb.spacing);
    std::copy(t.begin(), t.end(), table);
  } else {
    const auto t = corner_length_table_2d({pb.spacing[1], pb.spacing[2]});
    std::copy(t.begin(), t.end(), table);
  }
  check(cudaMemcpyToSymbolAsync(c_table, table, sizeof(table), 0, cudaMemcpyHostToDevice, st),
        "table upload");

  const int64_t n = g.n0 * g.n1 * g.n2;
  double* area_g = dev_alloc<double>(n, st);
  double* area_p = dev_alloc<double>(n, st);
  surface_kernel<<<blocks_for(n), 256, 0, st>>>(q, g, zmax_vox, area_g);
  surface_kernel<<<blocks_for(n), 256, 0, st>>>(p, g, zmax_vox, area_p);
  check(cudaGetLastError(), "surface kernels");

  int64_t* idx = dev_alloc<int64_t>(n, st);
  double* buf_a = dev_alloc<double>(n, st);
  double* buf_b = dev_alloc<double>(n, st);
  auto one_direction = [&](const double* area_q, const double* area_t, double** d_out,
                           double** a_out, int64_t* count) {
    auto end = thrust::copy_if(thrust::cuda::par.on(st), thrust::counting_iterator<int64_t>(0),
                               thrust::counting_iterator<int64_t>(n),
                               thrust::device_pointer_cast(idx), IsSurface{area_q});
    *count = end - thrust::device_pointer_cast(idx);
    check(cudaMalloc(d_out, std::max<int64_t>(*count, 1) * sizeof(double)), "cudaMalloc");
    check(cudaMalloc(a_out, std::max<int64_t>(*count, 1) * sizeof(double)), "cudaMalloc");
    if (*count == 0) return;
    edt(area_t, g, buf_a, buf_b, st);
    gather_kernel<<<blocks_for(*count), 256, 0, st>>>(idx, *count, area_q, buf_a, *d_out, *a_out);
    check(cudaGetLastError(), "gather kernel");
    sort_pairs(*d_out, *a_out, *count, st);
  };
  one_direction(area_g, area_p, &out->d_dist_gt, &out->d_area_gt, &out->count_gt);
  one_direction(area_p, area_g, &out->d_dist_pred, &out->d_area_pred, &out->count_pred);
  for (void* ptr : {static_cast<void*>(area_g), static_cast<void*>(area_p), static_cast<void*>(idx),
                    static_cast<void*>(buf_a), static_cast<void*>(buf_b)}) {
    cudaFreeAsync(ptr, st);
  }
  check(cudaStreamSynchronize(st), "final sync");
}

}  // namespace surface
}  // namespace rdcl
