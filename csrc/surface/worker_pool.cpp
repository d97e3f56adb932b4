// Surface-metric engine: the worker pool's test hook (run_worker_pool_for_test in surface.h).
#include "surface/worker_pool.h"

#include <stdexcept>
#include <string>

#include "surface/surface.h"

namespace rdcl {
namespace surface {

void run_worker_pool_for_test(int threads, int throwing) {
  detail::parallel_for(threads, [&](int t) {
    if (t == throwing) {
      throw std::runtime_error("worker " + std::to_string(t) + " failed");
    }
  });
}

}  // namespace surface
}  // namespace rdcl
