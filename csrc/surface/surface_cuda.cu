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
#include <thrust/count.h>
#include <thrust/device_ptr.h>
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/zip_iterator.h>
#include <thrust/sort.h>
#include <thrust/tuple.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
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

// code[i] != 0 marks a surface point: its neighbour code (3D corner 1..254, 2D corner 1..14) or 1
// for a voxel boundary; its area is c_table[code[i]]. 0 otherwise.
__global__ void surface_kernel(const uint8_t* m, DevGrid g, int64_t zmax_vox, uint8_t* code_out) {
  const int64_t total = g.n0 * g.n1 * g.n2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t z = i / (g.n1 * g.n2), y = i / g.n2 % g.n1, x = i % g.n2;
    int out = 0;
    if (g.corner) {
      int code;
      if (g.dim == 3) {
        auto v = [&](int64_t dz, int64_t dy, int64_t dx) {
          const int64_t zz = z - 1 + dz;
          return (zz < 0 || zz > zmax_vox) ? 0 : voxel(m, g, zz, y - 1 + dy, x - 1 + dx);
        };
        code = (v(0, 0, 0) << 7) | (v(0, 0, 1) << 6) | (v(0, 1, 0) << 5) | (v(0, 1, 1) << 4) |
               (v(1, 0, 0) << 3) | (v(1, 0, 1) << 2) | (v(1, 1, 0) << 1) | v(1, 1, 1);
        if (code != 0 && code != 255) out = code;
      } else {
        auto v = [&](int64_t dy, int64_t dx) { return voxel(m, g, 0, y - 1 + dy, x - 1 + dx); };
        code = (v(0, 0) << 3) | (v(0, 1) << 2) | (v(1, 0) << 1) | v(1, 1);
        if (code != 0 && code != 15) out = code;
      }
    } else if (voxel(m, g, z, y, x)) {
      const bool zin = g.dim == 2 || (z > 0 && z < zmax_vox && voxel(m, g, z - 1, y, x) &&
                                      voxel(m, g, z + 1, y, x));
      const bool inner = zin && voxel(m, g, z, y - 1, x) && voxel(m, g, z, y + 1, x) &&
                         voxel(m, g, z, y, x - 1) && voxel(m, g, z, y, x + 1);
      if (!inner) out = 1;
    }
    code_out[i] = static_cast<uint8_t>(out);
  }
}

__global__ void z_pass(const uint8_t* code, DevGrid g, double* f) {
  const int64_t cols = g.n1 * g.n2;
  const double inf = CUDART_INF;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols;
       c += int64_t(blockDim.x) * gridDim.x) {
    int64_t last = -1;
    for (int64_t z = 0; z < g.n0; ++z) {
      if (code[z * cols + c] != 0) last = z;
      f[z * cols + c] = last < 0 ? -1.0 : static_cast<double>(z - last);
    }
    last = -1;
    for (int64_t z = g.n0 - 1; z >= 0; --z) {
      if (code[z * cols + c] != 0) last = z;
      double d = f[z * cols + c];
      if (last >= 0 && (d < 0 || static_cast<double>(last - z) < d)) d = last - z;
      const double dz = d * g.s0;
      f[z * cols + c] = d < 0 ? inf : dz * dz;
    }
  }
}

// FH along one axis for every line; line l starts at base(l) with stride `stride`, length n. Each
// thread owns scratch (n ints, n + 1 doubles) at its global index and reuses it for its lines.
__global__ void fh_pass(const double* in, double* out, int64_t lines, int64_t n, int64_t stride,
                        int64_t inner, int64_t outer_stride, double s, int* v_buf, double* z_buf) {
  const double inf = CUDART_INF;
  const double c = s * s;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int* v = v_buf + tid * n;
  double* zb = z_buf + tid * (n + 1);
  for (int64_t l = tid; l < lines; l += int64_t(blockDim.x) * gridDim.x) {
    const int64_t base = (l / inner) * outer_stride + (l % inner);
    const double* f = in + base;
    double* o = out + base;
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

struct NonZero {
  __host__ __device__ bool operator()(uint8_t c) const { return c != 0; }
};

__global__ void gather_kernel(const int64_t* idx, int64_t count, const uint8_t* code,
                              const double* edt, double* dist_out, double* area_out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(blockDim.x) * gridDim.x) {
    area_out[i] = c_table[code[idx[i]]];
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

// Exact squared EDT (grid) of the surface points marked in `code`, into buf_a (buf_b: scratch).
// scratch: cuda_fh_scratch_bytes(grid) bytes, laid out per pass by cuda_fh_pass_bytes.
void edt(const uint8_t* code, const DevGrid& g, double* buf_a, double* buf_b, uint8_t* scratch,
         cudaStream_t st) {
  const int64_t cols = g.n1 * g.n2;
  z_pass<<<blocks_for(cols), 256, 0, st>>>(code, g, buf_a);
  int64_t off = 0;
  // y lines: index l = z * n2 + x; base = z * n1 * n2 + x; stride n2.
  cuda_fh_pass_bytes(g.n0 * g.n2, g.n1, &off);
  fh_pass<<<cuda_fh_blocks(g.n0 * g.n2, g.n1), 256, 0, st>>>(
      buf_a, buf_b, g.n0 * g.n2, g.n1, g.n2, g.n2, cols, g.s1, reinterpret_cast<int*>(scratch),
      reinterpret_cast<double*>(scratch + off));
  // x lines: index l = z * n1 + y; base = l * n2; stride 1.
  cuda_fh_pass_bytes(g.n0 * g.n1, g.n2, &off);
  fh_pass<<<cuda_fh_blocks(g.n0 * g.n1, g.n2), 256, 0, st>>>(
      buf_b, buf_a, g.n0 * g.n1, g.n2, 1, 1, g.n2, g.s2, reinterpret_cast<int*>(scratch),
      reinterpret_cast<double*>(scratch + off));
  check(cudaGetLastError(), "EDT kernels");
}

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  return buf;
}

// Refuses (before allocating) when `need` bytes exceed the device's free memory.
void ensure_free(int64_t need, const std::string& what) {
  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  if (need > static_cast<int64_t>(free_b)) {
    throw std::runtime_error("the CUDA surface engine needs " + std::to_string(need) + " bytes (" +
                             gib(need) + ") of GPU memory for " + what + ", found " +
                             std::to_string(free_b) + " bytes (" + gib(free_b) +
                             ") free; crop the masks to the region of interest or use "
                             "device='cpu'");
  }
}

// Throws std::invalid_argument unless p is device (or managed) memory.
void check_device_pointer(uintptr_t ptr, const char* name) {
  if (ptr == 0) {
    throw std::invalid_argument(std::string("expected a device pointer for ") + name +
                                ", found null");
  }
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr));
  if (err != cudaSuccess) {
    cudaGetLastError();  // reset the last-error state this call set
    throw std::invalid_argument(std::string("expected a device pointer for ") + name +
                                ", found one CUDA cannot describe (" + cudaGetErrorString(err) +
                                ")");
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
    throw std::invalid_argument(std::string("expected device memory for ") + name +
                                ", found host memory");
  }
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
  validate_problem(pb);
  if (out == nullptr) throw std::invalid_argument("expected a CudaResult, found null");
  check_device_pointer(pred, "pred");
  check_device_pointer(gt, "gt");
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
  const std::string grid_text = "a " + std::to_string(g.n0) + "x" + std::to_string(g.n1) + "x" +
                                std::to_string(g.n2) + " processing grid";
  ensure_free(cuda_grid_bytes({g.n0, g.n1, g.n2}), grid_text);

  // Area of each code: the marching-cubes / marching-squares table, or weight 1 for code 1 of a
  // voxel boundary.
  double table[256] = {0};
  if (!g.corner) {
    table[1] = 1.0;
  } else if (pb.dim == 3) {
    const auto t = corner_area_table_3d(pb.spacing);
    std::copy(t.begin(), t.end(), table);
  } else {
    const auto t = corner_length_table_2d({pb.spacing[1], pb.spacing[2]});
    std::copy(t.begin(), t.end(), table);
  }
  check(cudaMemcpyToSymbolAsync(c_table, table, sizeof(table), 0, cudaMemcpyHostToDevice, st),
        "table upload");

  const int64_t n = g.n0 * g.n1 * g.n2;
  uint8_t *code_g = nullptr, *code_p = nullptr, *fh_scratch = nullptr;
  double *buf_a = nullptr, *buf_b = nullptr;
  int64_t* idx = nullptr;
  auto release = [&] {  // every buffer allocated so far, also when an allocation fails midway
    for (void* ptr :
         {static_cast<void*>(code_g), static_cast<void*>(code_p), static_cast<void*>(fh_scratch),
          static_cast<void*>(buf_a), static_cast<void*>(buf_b), static_cast<void*>(idx)}) {
      if (ptr != nullptr) cudaFreeAsync(ptr, st);
    }
  };
  try {
    code_g = dev_alloc<uint8_t>(n, st);
    code_p = dev_alloc<uint8_t>(n, st);
    buf_a = dev_alloc<double>(n, st);
    buf_b = dev_alloc<double>(n, st);
    fh_scratch = dev_alloc<uint8_t>(cuda_fh_scratch_bytes({g.n0, g.n1, g.n2}), st);
    surface_kernel<<<blocks_for(n), 256, 0, st>>>(q, g, zmax_vox, code_g);
    surface_kernel<<<blocks_for(n), 256, 0, st>>>(p, g, zmax_vox, code_p);
    check(cudaGetLastError(), "surface kernels");
    auto count = [&](const uint8_t* code) {
      const auto c = thrust::device_pointer_cast(code);
      return static_cast<int64_t>(thrust::count_if(thrust::cuda::par.on(st), c, c + n, NonZero{}));
    };
    const int64_t count_g = count(code_g), count_p = count(code_p);
    ensure_free(cuda_point_bytes(count_g, count_p),
                std::to_string(count_g + count_p) + " surface points");
    idx = dev_alloc<int64_t>(std::max(count_g, count_p), st);
    auto one_direction = [&](const uint8_t* code_q, const uint8_t* code_t, int64_t count_q,
                             double** d_out, double** a_out, int64_t* count_out) {
      check(cudaMalloc(d_out, std::max<int64_t>(count_q, 1) * sizeof(double)), "cudaMalloc");
      check(cudaMalloc(a_out, std::max<int64_t>(count_q, 1) * sizeof(double)), "cudaMalloc");
      *count_out = count_q;
      if (count_q == 0) return;
      thrust::copy_if(thrust::cuda::par.on(st), thrust::counting_iterator<int64_t>(0),
                      thrust::counting_iterator<int64_t>(n), thrust::device_pointer_cast(code_q),
                      thrust::device_pointer_cast(idx), NonZero{});
      edt(code_t, g, buf_a, buf_b, fh_scratch, st);
      gather_kernel<<<blocks_for(count_q), 256, 0, st>>>(idx, count_q, code_q, buf_a, *d_out,
                                                         *a_out);
      check(cudaGetLastError(), "gather kernel");
      sort_pairs(*d_out, *a_out, count_q, st);
    };
    one_direction(code_g, code_p, count_g, &out->d_dist_gt, &out->d_area_gt, &out->count_gt);
    one_direction(code_p, code_g, count_p, &out->d_dist_pred, &out->d_area_pred, &out->count_pred);
  } catch (...) {
    release();
    cudaStreamSynchronize(st);
    throw;
  }
  release();
  check(cudaStreamSynchronize(st), "final sync");
}

}  // namespace surface
}  // namespace rdcl
