// Surface-metric engine (CPU): one direction's (distance, area) pairs in surface-distance's order.
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "surface/cpu_internal.h"

namespace rdcl {
namespace surface {
namespace detail {

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

}  // namespace detail
}  // namespace surface
}  // namespace rdcl
