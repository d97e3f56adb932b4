// Surface-metric engine: the multithreaded CPU engine (surface_distances_cpu in surface.h), which
// crops to the bounding box, extracts both surfaces, computes the distances of both directions and
// sorts them; the steps live in the files cpu_internal.h lists.
#include <stdexcept>
#include <vector>

#include "surface/cpu_internal.h"
#include "surface/worker_pool.h"

namespace rdcl {
namespace surface {

Result surface_distances_cpu(const uint8_t* pred, const uint8_t* gt, const Problem& pb,
                             int threads) {
  validate_problem(pb);
  if (pred == nullptr || gt == nullptr) {
    throw std::invalid_argument("expected pred and gt buffers, found a null pointer");
  }
  Result res;
  const detail::Bbox box = detail::bounding_box(pred, gt, pb.shape, threads);
  if (box.empty()) return res;
  detail::Grid g;
  const int64_t pad = pb.boundary == Boundary::kCorner ? 1 : 0;
  for (int a = 0; a < 3; ++a) g.n[a] = box.hi[a] - box.lo[a] + 1 + pad;
  if (pb.dim == 2) g.n[0] = 1;
  g.s = pb.spacing;
  if (pb.dim == 2) g.s[0] = 1.0;
  std::vector<double> table;
  if (pb.boundary == Boundary::kCorner) {
    if (pb.dim == 3) {
      const auto t = corner_area_table_3d(pb.spacing);
      table.assign(t.begin(), t.end());
    } else {
      const auto t = corner_length_table_2d({pb.spacing[1], pb.spacing[2]});
      table.assign(t.begin(), t.end());
    }
  }
  const int nt = detail::resolve_threads(threads, g.n[0]);
  const detail::Surface sg = detail::extract(gt, pb, box, g, table, nt);
  const detail::Surface sp = detail::extract(pred, pb, box, g, table, nt);
  const auto d = detail::distances_both(sg, sp, g, threads);  // [0]: gt -> pred, [1]: pred -> gt
  if (table.empty()) table.push_back(1.0);                    // voxel boundaries: weight 1, code 0
  detail::parallel_for(detail::resolve_threads(threads, 2), [&](int t) {  // the two sorts
    const bool both = detail::resolve_threads(threads, 2) == 1;
    if (both || t == 0) res.gt_to_pred = detail::sorted_direction(d[0], sg.code, table);
    if (both || t == 1) res.pred_to_gt = detail::sorted_direction(d[1], sp.code, table);
  });
  return res;
}

}  // namespace surface
}  // namespace rdcl
