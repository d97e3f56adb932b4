// Surface-metric engine: public C++ API (torch-independent).
#pragma once

namespace rdcl {
namespace surface {

// True when this build contains the CUDA implementation.
bool cuda_built();

}  // namespace surface
}  // namespace rdcl
