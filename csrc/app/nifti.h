// A small NIfTI-1 reader/writer for rdcl_predict (single-file .nii and gzip-compressed .nii.gz).
//
// The reader parses untrusted bytes: every header field that sizes an allocation or an index is
// validated before it is used, and every failure is a NiftiError whose what() is one line saying
// what was expected and what was found. No libtorch here, so the parser is unit-tested and fuzzed
// on its own (csrc/app/fuzz/).
//
// Arrays are in array order: (z, y, x) for volumes and (y, x) for 2D images, x fastest in memory,
// which is NIfTI's own storage order. Spacing is in mm, in the same array order.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace rdcl {
namespace nifti {

// A malformed, truncated or unsupported NIfTI file. what() is one line.
class NiftiError : public std::runtime_error {
 public:
  explicit NiftiError(const std::string& msg) : std::runtime_error(msg) {}
};

constexpr size_t kHeaderSize = 348;
// Accepted datatypes (scalar integers and floats); others (RGB, complex, ...) are refused.
constexpr int16_t kUint8 = 2;
constexpr int16_t kInt16 = 4;
constexpr int16_t kInt32 = 8;
constexpr int16_t kFloat32 = 16;
constexpr int16_t kFloat64 = 64;
constexpr int16_t kInt8 = 256;
constexpr int16_t kUint16 = 512;
constexpr int16_t kUint32 = 768;
constexpr int16_t kInt64 = 1024;
constexpr int16_t kUint64 = 1280;

struct Limits {
  // Largest accepted voxel count (each axis is also bounded by NIfTI's int16 dims).
  uint64_t max_voxels = uint64_t{1} << 31;
  // Largest accepted decoded file (header + voxel data), in bytes.
  uint64_t max_bytes = uint64_t{1} << 34;
};

struct Image {
  // The 348-byte header converted to little-endian byte order (geometry passes through from it).
  std::array<uint8_t, kHeaderSize> header{};
  int ndim = 0;                     // 2 or 3 (trailing singleton dims 4..7 are dropped)
  std::array<int64_t, 3> shape{};   // array order, first ndim used
  std::array<double, 3> spacing{};  // mm, array order, first ndim used
  int16_t datatype = 0;             // the file's datatype code
  std::vector<float> data;          // voxel values after scl_slope/scl_inter, array order
  uint64_t voxels() const;
};

// Parse a complete .nii file held in memory; gzip data (magic 1f 8b) is inflated first, no
// further than the header says the file needs.
Image parse(const uint8_t* bytes, size_t size, const Limits& limits = Limits());

// Read a .nii or .nii.gz file (gzip is detected from the content, not the name).
Image read_file(const std::string& path, const Limits& limits = Limits());

// Serialise `voxels` (ndim/shape of `like`, array order) as a single-file NIfTI-1 with the
// header of `like`: dims, pixdim, units, qform and sform pass through, so the result overlays
// the input. `datatype` is kUint8 or kFloat32 and `voxels` holds that many bytes per voxel.
std::vector<uint8_t> encode(const Image& like, const void* voxels, int16_t datatype);

// Write `bytes` to `path` atomically (a temporary file in the same folder, then a rename),
// gzip-compressed when the name ends in .gz. Throws std::runtime_error on I/O failure.
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace nifti
}  // namespace rdcl
