// NIfTI-1 reader/writer; see nifti.h. Field offsets are those of nifti1.h (the 348-byte header).
#include "nifti.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

namespace rdcl {
namespace nifti {
namespace {

// ------------------------------------------------------------------ header field offsets
constexpr size_t kSizeofHdr = 0;
constexpr size_t kDim = 40;  // int16[8]
constexpr size_t kIntentP1 = 56;
constexpr size_t kIntentCode = 68;
constexpr size_t kDatatype = 70;
constexpr size_t kBitpix = 72;
constexpr size_t kPixdim = 76;  // float[8]
constexpr size_t kVoxOffset = 108;
constexpr size_t kSclSlope = 112;
constexpr size_t kSclInter = 116;
constexpr size_t kXyztUnits = 123;
constexpr size_t kCalMax = 124;
constexpr size_t kCalMin = 128;
constexpr size_t kGlmax = 140;
constexpr size_t kGlmin = 144;
constexpr size_t kDescrip = 148;     // char[80]
constexpr size_t kIntentName = 328;  // char[16]
constexpr size_t kMagic = 344;       // char[4]
constexpr size_t kOutVoxOffset = 352;

// Numeric fields (offset, element size, count) swapped when the file is big-endian.
struct Field {
  size_t offset, size, count;
};
constexpr Field kNumericFields[] = {
    {0, 4, 1},   {32, 4, 1},  {36, 2, 1},  {40, 2, 8},  {56, 4, 3},  {68, 2, 4},  {76, 4, 8},
    {108, 4, 3}, {120, 2, 1}, {124, 4, 4}, {140, 4, 2}, {252, 2, 2}, {256, 4, 6}, {280, 4, 12},
};

bool host_is_little_endian() {
  const uint16_t one = 1;
  uint8_t first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

void reverse_bytes(uint8_t* p, size_t n) { std::reverse(p, p + n); }

// Little-endian field access (the header is converted to little-endian on parse).
uint32_t le_u32(const uint8_t* h, size_t off) {
  return uint32_t{h[off]} | uint32_t{h[off + 1]} << 8 | uint32_t{h[off + 2]} << 16 |
         uint32_t{h[off + 3]} << 24;
}
int16_t le_i16(const uint8_t* h, size_t off) {
  return static_cast<int16_t>(uint16_t{h[off]} | uint16_t(uint16_t{h[off + 1]} << 8));
}
float le_f32(const uint8_t* h, size_t off) {
  const uint32_t u = le_u32(h, off);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
void put_u32(uint8_t* h, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) h[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_i16(uint8_t* h, size_t off, int16_t v) {
  const auto u = static_cast<uint16_t>(v);
  h[off] = static_cast<uint8_t>(u);
  h[off + 1] = static_cast<uint8_t>(u >> 8);
}
void put_f32(uint8_t* h, size_t off, float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  put_u32(h, off, u);
}

std::string fmt(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string printable(const uint8_t* p, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] >= 0x20 && p[i] < 0x7f) {
      out += static_cast<char>(p[i]);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", p[i]);
      out += buf;
    }
  }
  return out;
}

size_t bytes_per_voxel(int16_t datatype) {
  switch (datatype) {
    case kUint8:
    case kInt8:
      return 1;
    case kInt16:
    case kUint16:
      return 2;
    case kInt32:
    case kUint32:
    case kFloat32:
      return 4;
    case kFloat64:
    case kInt64:
    case kUint64:
      return 8;
    default:
      return 0;
  }
}

const char* datatype_name(int16_t datatype) {
  switch (datatype) {
    case 1:
      return " (binary)";
    case 32:
      return " (complex64)";
    case 128:
      return " (RGB24)";
    case 1536:
      return " (float128)";
    case 1792:
      return " (complex128)";
    case 2048:
      return " (complex256)";
    case 2304:
      return " (RGBA32)";
    default:
      return "";
  }
}

// Millimetres per unit of xyzt_units' spatial part (0 = unknown, taken as mm as ITK does).
double unit_scale(uint8_t xyzt_units) {
  switch (xyzt_units & 0x07) {
    case 1:
      return 1000.0;  // metre
    case 3:
      return 0.001;  // micron
    default:
      return 1.0;
  }
}

// Everything the header says about the voxel data, validated.
struct Layout {
  std::array<uint8_t, kHeaderSize> header{};  // little-endian
  bool swapped = false;                       // voxel data is big-endian
  int ndim = 0;
  std::array<int64_t, 3> shape{};
  std::array<double, 3> spacing{};
  int16_t datatype = 0;
  size_t bpv = 0;
  uint64_t voxels = 0;
  uint64_t offset = 0;  // vox_offset
  uint64_t end = 0;     // vox_offset + voxel bytes
  double slope = 1.0, inter = 0.0;
};

Layout parse_header(const uint8_t* raw, size_t size, const Limits& limits) {
  if (size < kHeaderSize) {
    throw NiftiError("not a NIfTI-1 file: expected a 348-byte header, found " +
                     std::to_string(size) + " bytes");
  }
  Layout L;
  std::memcpy(L.header.data(), raw, kHeaderSize);
  uint8_t* h = L.header.data();
  const uint32_t sizeof_hdr = le_u32(h, kSizeofHdr);
  uint32_t swapped_sizeof = sizeof_hdr;
  reverse_bytes(reinterpret_cast<uint8_t*>(&swapped_sizeof), 4);
  if (sizeof_hdr == 540 || swapped_sizeof == 540) {
    throw NiftiError("NIfTI-2 is not supported: expected a NIfTI-1 file (sizeof_hdr 348)");
  }
  if (sizeof_hdr != kHeaderSize) {
    const uint32_t be = uint32_t{h[0]} << 24 | uint32_t{h[1]} << 16 | uint32_t{h[2]} << 8 | h[3];
    if (be != kHeaderSize) {
      throw NiftiError("not a NIfTI-1 file: expected sizeof_hdr 348, found " +
                       std::to_string(sizeof_hdr));
    }
    L.swapped = true;
    for (const Field& f : kNumericFields) {
      for (size_t i = 0; i < f.count; ++i) reverse_bytes(h + f.offset + i * f.size, f.size);
    }
  }
  if (std::memcmp(h + kMagic, "ni1\0", 4) == 0) {
    throw NiftiError(
        "a NIfTI-1 header/image pair (.hdr/.img) is not supported: expected a single-file .nii "
        "(magic \"n+1\")");
  }
  if (std::memcmp(h + kMagic, "n+1\0", 4) != 0) {
    throw NiftiError("not a NIfTI-1 file: expected magic \"n+1\", found \"" +
                     printable(h + kMagic, 4) + "\"");
  }

  // Dimensions: dim[0] in 1..7, dim[1..dim[0]] >= 1, only 2D or 3D (trailing 1s allowed).
  int16_t dim[8];
  for (int i = 0; i < 8; ++i) dim[i] = le_i16(h, kDim + 2 * i);
  if (dim[0] < 1 || dim[0] > 7) {
    throw NiftiError("bad header: expected dim[0] (number of dimensions) in 1..7, found " +
                     std::to_string(dim[0]));
  }
  for (int i = 1; i <= dim[0]; ++i) {
    if (dim[i] < 1) {
      throw NiftiError("bad header: expected dim[" + std::to_string(i) + "] >= 1, found " +
                       std::to_string(dim[i]));
    }
  }
  if (dim[0] < 2) throw NiftiError("expected a 2D or 3D image, found a 1D one (dim[0] = 1)");
  for (int i = 4; i <= dim[0]; ++i) {
    if (dim[i] != 1) {
      throw NiftiError("expected a 2D or 3D image, found " + std::to_string(dim[0]) + "D (dim[" +
                       std::to_string(i) + "] = " + std::to_string(dim[i]) + ")");
    }
  }
  L.ndim = dim[0] == 2 ? 2 : 3;

  // Datatype.
  L.datatype = le_i16(h, kDatatype);
  L.bpv = bytes_per_voxel(L.datatype);
  if (L.bpv == 0) {
    throw NiftiError(
        "unsupported datatype " + std::to_string(L.datatype) + datatype_name(L.datatype) +
        ": expected a scalar integer or float type (uint8 2, int16 4, int32 8, float32 16, "
        "float64 64, int8 256, uint16 512, uint32 768, int64 1024, uint64 1280)");
  }

  // Voxel count and byte size, overflow-checked against the limits.
  L.voxels = 1;
  for (int i = 1; i <= L.ndim; ++i) {
    L.voxels *= static_cast<uint64_t>(dim[i]);  // <= 32767^3, no overflow
  }
  if (L.voxels > limits.max_voxels) {
    throw NiftiError("image too large: " + std::to_string(L.voxels) + " voxels, at most " +
                     std::to_string(limits.max_voxels) + " accepted");
  }
  const float vox_offset = le_f32(h, kVoxOffset);
  if (!std::isfinite(vox_offset) || vox_offset < static_cast<float>(kHeaderSize) ||
      vox_offset != std::floor(vox_offset) ||
      static_cast<double>(vox_offset) > static_cast<double>(limits.max_bytes)) {
    throw NiftiError("bad header: expected vox_offset a whole number of bytes >= 348, found " +
                     fmt(vox_offset));
  }
  L.offset = static_cast<uint64_t>(vox_offset);
  const uint64_t nbytes = L.voxels * L.bpv;  // <= 2^31 * 8
  L.end = L.offset + nbytes;
  if (L.end > limits.max_bytes) {
    throw NiftiError("image too large: " + std::to_string(L.end) + " bytes, at most " +
                     std::to_string(limits.max_bytes) + " accepted");
  }

  // Spacing in mm, array order; |pixdim| as ITK reads it, but 0 and NaN/inf are refused.
  const double scale = unit_scale(h[kXyztUnits]);
  for (int i = 1; i <= L.ndim; ++i) {
    const float p = le_f32(h, kPixdim + 4 * i);
    if (!std::isfinite(p) || p == 0.0f) {
      throw NiftiError("bad header: expected pixdim[" + std::to_string(i) +
                       "] (voxel size) finite and non-zero, found " + fmt(p));
    }
    const double mm = std::fabs(static_cast<double>(p)) * scale;
    if (!(mm >= 1e-6 && mm <= 1e6)) {
      throw NiftiError("bad header: expected a voxel size in 1e-6..1e6 mm, found " + fmt(mm) +
                       " mm on axis " + std::to_string(i));
    }
    L.shape[L.ndim - i] = dim[i];
    L.spacing[L.ndim - i] = mm;
  }

  // Intensity scaling as ITK applies it: a zero or non-finite slope counts as 1, a non-finite
  // intercept as 0.
  const float slope = le_f32(h, kSclSlope);
  const float inter = le_f32(h, kSclInter);
  L.slope = (std::isfinite(slope) && slope != 0.0f) ? slope : 1.0;
  L.inter = std::isfinite(inter) ? inter : 0.0;
  return L;
}

template <typename T>
void decode_as(const uint8_t* src, uint64_t n, bool swap, double slope, double inter, float* out) {
  const bool scaled = !(slope == 1.0 && inter == 0.0);
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, src + i * sizeof(T), sizeof(T));
    if (swap) reverse_bytes(b, sizeof(T));
    T v;
    std::memcpy(&v, b, sizeof(T));
    out[i] =
        scaled ? static_cast<float>(static_cast<double>(v) * slope + inter) : static_cast<float>(v);
  }
}

Image decode(const Layout& L, const uint8_t* bytes, size_t size) {
  if (size < L.end) {
    throw NiftiError("truncated file: the header needs " + std::to_string(L.end) +
                     " bytes (vox_offset " + std::to_string(L.offset) + " + " +
                     std::to_string(L.voxels) + " voxels x " + std::to_string(L.bpv) +
                     " bytes), found " + std::to_string(size));
  }
  Image img;
  img.header = L.header;
  img.ndim = L.ndim;
  img.shape = L.shape;
  img.spacing = L.spacing;
  img.datatype = L.datatype;
  img.data.resize(L.voxels);
  // The file's byte order against the host's (the header was already made little-endian).
  const bool swap = L.swapped == host_is_little_endian();
  const uint8_t* src = bytes + L.offset;
  float* out = img.data.data();
  switch (L.datatype) {
    case kUint8:
      decode_as<uint8_t>(src, L.voxels, false, L.slope, L.inter, out);
      break;
    case kInt16:
      decode_as<int16_t>(src, L.voxels, swap, L.slope, L.inter, out);
      break;
    case kInt32:
      decode_as<int32_t>(src, L.voxels, swap, L.slope, L.inter, out);
      break;
    case kFloat32:
      decode_as<float>(src, L.voxels, swap, L.slope, L.inter, out);
      break;
    case kFloat64:
      decode_as<double>(src, L.voxels, swap, L.slope, L.inter, out);
      break;
    case kInt8:
      decode_as<int8_t>(src, L.voxels, false, L.slope, L.inter, out);
      break;
    case kUint16:
      decode_as<uint16_t>(src, L.voxels, swap, L.slope, L.inter, out);
      break;
    case kUint32:
      decode_as<uint32_t>(src, L.voxels, swap, L.slope, L.inter, out);
      break;
    case kInt64:
      decode_as<int64_t>(src, L.voxels, swap, L.slope, L.inter, out);
      break;
    case kUint64:
      decode_as<uint64_t>(src, L.voxels, swap, L.slope, L.inter, out);
      break;
    default:
      throw NiftiError("unsupported datatype " + std::to_string(L.datatype));
  }
  return img;
}

// Inflate a gzip stream (one or more members), no further than the header says the file needs.
std::vector<uint8_t> inflate_bounded(const uint8_t* src, size_t n, const Limits& limits) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw NiftiError("cannot initialise zlib");
  struct Guard {
    z_stream* z;
    ~Guard() { inflateEnd(z); }
  } guard{&zs};
  std::vector<uint8_t> out;
  uint64_t need = kHeaderSize;  // until the header is parsed
  bool have_header = false;
  const size_t kChunk = size_t{1} << 24;
  zs.next_in = const_cast<Bytef*>(src);
  size_t in_left = n;
  size_t produced = 0;
  bool ended = false;  // the last gzip member ended properly
  while (produced < need) {
    if (out.size() < need) {
      out.resize(static_cast<size_t>(std::min<uint64_t>(need, produced + kChunk)));
    }
    // zlib counts in uInt; feed and drain at most 1 GiB per call.
    const uInt avail_in = static_cast<uInt>(std::min<size_t>(in_left, size_t{1} << 30));
    const uInt avail_out = static_cast<uInt>(std::min<size_t>(out.size() - produced, kChunk));
    zs.avail_in = avail_in;
    zs.next_out = out.data() + produced;
    zs.avail_out = avail_out;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t consumed = avail_in - zs.avail_in;
    const size_t made = avail_out - zs.avail_out;
    in_left -= consumed;
    produced += made;
    if (rc == Z_STREAM_END) {
      // Another gzip member may follow (as gzip and zlib's gzread allow).
      if (in_left >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        if (inflateReset(&zs) != Z_OK) throw NiftiError("corrupt gzip data");
      } else {
        ended = true;
        break;
      }
    } else if (rc == Z_OK || rc == Z_BUF_ERROR) {
      if (consumed == 0 && made == 0) break;  // input ended early: reported as truncated below
    } else {
      throw NiftiError(std::string("corrupt gzip data: ") + (zs.msg ? zs.msg : "inflate failed"));
    }
    if (!have_header && produced >= kHeaderSize) {
      need = parse_header(out.data(), produced, limits).end;
      have_header = true;
    }
  }
  if (!ended && produced < need) {
    throw NiftiError("truncated gzip stream: it ends after " + std::to_string(produced) +
                     " of the " + std::to_string(need) + " bytes " +
                     (have_header ? "the header needs" : "of a NIfTI-1 header"));
  }
  out.resize(produced);
  return out;
}

}  // namespace

uint64_t Image::voxels() const {
  uint64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= static_cast<uint64_t>(shape[i]);
  return n;
}

Image parse(const uint8_t* bytes, size_t size, const Limits& limits) {
  if (size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
    const std::vector<uint8_t> raw = inflate_bounded(bytes, size, limits);
    return decode(parse_header(raw.data(), raw.size(), limits), raw.data(), raw.size());
  }
  return decode(parse_header(bytes, size, limits), bytes, size);
}

Image read_file(const std::string& path, const Limits& limits) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw NiftiError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw NiftiError("expected a regular file, found something else: " + path);
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > limits.max_bytes) {
    throw NiftiError("file too large: " + std::to_string(size) + " bytes, at most " +
                     std::to_string(limits.max_bytes) + " accepted");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 &&
      !f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    throw NiftiError("cannot read " + path + ": short read");
  }
  return parse(bytes.data(), bytes.size(), limits);
}

std::vector<uint8_t> encode(const Image& like, const void* voxels, int16_t datatype) {
  const size_t bpv = datatype == kUint8 ? 1 : datatype == kFloat32 ? 4 : 0;
  if (bpv == 0) throw std::invalid_argument("encode: datatype must be uint8 or float32");
  const uint64_t n = like.voxels();
  std::vector<uint8_t> out(kOutVoxOffset + n * bpv, 0);
  uint8_t* h = out.data();
  std::memcpy(h, like.header.data(), kHeaderSize);
  put_i16(h, kDatatype, datatype);
  put_i16(h, kBitpix, static_cast<int16_t>(8 * bpv));
  put_f32(h, kVoxOffset, static_cast<float>(kOutVoxOffset));
  put_f32(h, kSclSlope, 1.0f);
  put_f32(h, kSclInter, 0.0f);
  put_f32(h, kCalMax, 0.0f);
  put_f32(h, kCalMin, 0.0f);
  put_u32(h, kGlmax, 0);
  put_u32(h, kGlmin, 0);
  put_i16(h, kIntentCode, 0);
  for (int i = 0; i < 3; ++i) put_f32(h, kIntentP1 + 4 * i, 0.0f);
  std::memset(h + kIntentName, 0, 16);
  std::memset(h + kDescrip, 0, 80);
  const char* descrip = datatype == kUint8 ? "rdcl_predict mask" : "rdcl_predict probabilities";
  std::memcpy(h + kDescrip, descrip, std::strlen(descrip));
  std::memcpy(h + kMagic, "n+1\0", 4);
  // bytes 348..351: extension flag 0 (no extensions)
  uint8_t* dst = out.data() + kOutVoxOffset;
  std::memcpy(dst, voxels, n * bpv);
  if (bpv == 4 && !host_is_little_endian()) {
    for (uint64_t i = 0; i < n; ++i) reverse_bytes(dst + 4 * i, 4);
  }
  return out;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string tmpl = dir + "/.tmp-rdcl_predict-XXXXXX";
  const int fd = mkstemp(tmpl.data());
  if (fd < 0)
    throw std::runtime_error("cannot create a file in " + dir + ": " + std::strerror(errno));
  const mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  bool ok = true;
  std::string why;
  const bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (gz) {
    gzFile g = gzdopen(fd, "wb6");
    if (!g) {
      close(fd);
      ok = false;
      why = "gzdopen failed";
    } else {
      size_t done = 0;
      while (ok && done < bytes.size()) {
        const unsigned len = static_cast<unsigned>(std::min<size_t>(bytes.size() - done, 1u << 26));
        if (gzwrite(g, bytes.data() + done, len) != static_cast<int>(len)) {
          ok = false;
          why = "gzip write failed";
        }
        done += len;
      }
      if (gzclose(g) != Z_OK && ok) {
        ok = false;
        why = "gzip close failed";
      }
    }
  } else {
    size_t done = 0;
    while (ok && done < bytes.size()) {
      const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        ok = false;
        why = std::strerror(errno);
      } else {
        done += static_cast<size_t>(w);
      }
    }
    if (::close(fd) != 0 && ok) {
      ok = false;
      why = std::strerror(errno);
    }
  }
  if (ok && std::rename(tmpl.c_str(), path.c_str()) != 0) {
    ok = false;
    why = std::strerror(errno);
  }
  if (!ok) {
    std::remove(tmpl.c_str());
    throw std::runtime_error("cannot write " + path + ": " + why);
  }
}

}  // namespace nifti
}  // namespace rdcl
