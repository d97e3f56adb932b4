// Surface-metric engine: the CPU engine's worker threads (internal).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace rdcl {
namespace surface {
namespace detail {

// Workers for `work` units: threads (<= 0: all hardware threads), at least 1, at most work.
inline int resolve_threads(int threads, int64_t work) {
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

}  // namespace detail
}  // namespace surface
}  // namespace rdcl
