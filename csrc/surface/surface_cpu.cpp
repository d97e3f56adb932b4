#include "surface/surface.h"

namespace rdcl {
namespace surface {

bool cuda_built() {
#ifdef RDCL_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace surface
}  // namespace rdcl
