// libFuzzer target over the NIfTI-1 parser: raw .nii bytes and gzip (.nii.gz) bytes alike, since
// rdcl::nifti::parse detects gzip from the content. An input starting with 'Z' is gzip-compressed
// (in one or two members) before parsing, so the inflate path also sees valid streams of mutated
// files. Parse errors are expected (NiftiError); anything else (a crash, a sanitizer report, an
// abort below, another exception type) is a bug.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "nifti.h"

namespace {

std::vector<uint8_t> gzip(const uint8_t* data, size_t size) {
  z_stream zs{};
  if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    std::abort();
  }
  std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(size)) + 64);
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(size);
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rdcl::nifti::Limits limits;
  limits.max_voxels = uint64_t{1} << 24;  // keep each input under libFuzzer's memory limit
  limits.max_bytes = uint64_t{1} << 27;
  std::vector<uint8_t> packed;
  if (size > 1 && data[0] == 'Z') {
    // 'Z' then a split point byte: two gzip members when it falls inside the data.
    const size_t split = size > 2 ? 2 + data[1] * (size - 2) / 256 : size;
    packed = gzip(data + 2, split - 2);
    if (split < size) {
      const std::vector<uint8_t> second = gzip(data + split, size - split);
      packed.insert(packed.end(), second.begin(), second.end());
    }
    data = packed.data();
    size = packed.size();
  }
  try {
    const rdcl::nifti::Image img = rdcl::nifti::parse(data, size, limits);
    // Touch everything the app uses: the voxels and a re-encoded output read back.
    if (img.data.size() != img.voxels()) std::abort();
    std::vector<uint8_t> mask(img.data.size());
    for (size_t i = 0; i < img.data.size(); ++i) mask[i] = img.data[i] > 0.0f;
    const std::vector<uint8_t> out = rdcl::nifti::encode(img, mask.data(), rdcl::nifti::kUint8);
    const rdcl::nifti::Image back = rdcl::nifti::parse(out.data(), out.size(), limits);
    if (back.voxels() != img.voxels() || back.ndim != img.ndim) std::abort();
    for (size_t i = 0; i < mask.size(); ++i) {
      if (back.data[i] != static_cast<float>(mask[i])) std::abort();
    }
  } catch (const rdcl::nifti::NiftiError&) {
  }
  return 0;
}
