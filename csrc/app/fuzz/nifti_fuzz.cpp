// libFuzzer target over the NIfTI-1 parser: raw .nii bytes and gzip (.nii.gz) bytes alike, since
// rdcl::nifti::parse detects gzip from the content. Parse errors are expected (NiftiError);
// anything else (a crash, a sanitizer report, another exception type) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "nifti.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rdcl::nifti::Limits limits;
  limits.max_voxels = uint64_t{1} << 24;  // keep each input under libFuzzer's memory limit
  limits.max_bytes = uint64_t{1} << 27;
  try {
    const rdcl::nifti::Image img = rdcl::nifti::parse(data, size, limits);
    // Touch everything the app uses: the voxels and a re-encoded output.
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
