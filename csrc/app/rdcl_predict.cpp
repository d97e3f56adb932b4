// rdcl_predict: run an exported rdcl predictor (TorchScript, from `rdcl export`) on a NIfTI file.
//
//   rdcl_predict MODEL.ts INPUT.nii[.gz] OUTPUT.nii[.gz] [--device cpu|cuda] [--probabilities]
//                [--window LOW HIGH] [--overwrite]
//
// The model's contract: forward(image float32 (Z, Y, X) or (Y, X), spacing float64 (3,) or (2,)
// in mm, array order) -> uint8 0/1 of the image's shape; probabilities(image, spacing) -> float32;
// with --window, forward_window / probabilities_window(image, spacing, window float64 (2,)), the
// input's intensity convention (docs/export.md).
// The output NIfTI carries the input's header geometry (dims, pixdim, qform, sform), so it
// overlays the input in any viewer. Bad input or usage: one line on stderr, exit status 2.
#include <sys/stat.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "nifti.h"

namespace {

constexpr const char* kUsage =
    "usage: rdcl_predict MODEL.ts INPUT.nii[.gz] OUTPUT.nii[.gz] [--device cpu|cuda] "
    "[--probabilities] [--window LOW HIGH] [--overwrite]";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string model, input, output, device = "cpu";
  bool probabilities = false, overwrite = false, window = false;
  double low = 0.0, high = 0.0;
};

double parse_number(const std::string& s, const char* what) {
  size_t used = 0;
  double v = 0.0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !std::isfinite(v)) {
    throw UsageError(std::string("expected a finite number for ") + what + ", found '" + s + "'");
  }
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "-h" || s == "--help") {
      std::cout << kUsage << "\n";
      std::exit(0);
    } else if (s == "--device") {
      if (i + 1 >= argc) throw UsageError("--device needs a value (cpu or cuda)");
      a.device = argv[++i];
      if (a.device != "cpu" && a.device != "cuda") {
        throw UsageError("expected --device cpu or cuda, found '" + a.device + "'");
      }
    } else if (s == "--probabilities") {
      a.probabilities = true;
    } else if (s == "--window") {
      if (i + 2 >= argc) throw UsageError("--window needs two values: LOW HIGH");
      a.window = true;
      a.low = parse_number(argv[++i], "--window LOW");
      a.high = parse_number(argv[++i], "--window HIGH");
      if (!(a.low < a.high)) throw UsageError("expected --window LOW HIGH with LOW < HIGH");
    } else if (s == "--overwrite") {
      a.overwrite = true;
    } else if (s.size() > 1 && s[0] == '-') {
      throw UsageError("unknown option '" + s + "'");
    } else {
      pos.push_back(s);
    }
  }
  if (pos.size() != 3) {
    throw UsageError("expected MODEL.ts INPUT OUTPUT, found " + std::to_string(pos.size()) +
                     " positional argument(s)");
  }
  a.model = pos[0];
  a.input = pos[1];
  a.output = pos[2];
  auto ends_with = [](const std::string& s, const char* suf) {
    const size_t n = std::strlen(suf);
    return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
  };
  if (!ends_with(a.output, ".nii") && !ends_with(a.output, ".nii.gz")) {
    throw UsageError("expected OUTPUT ending in .nii or .nii.gz, found '" + a.output + "'");
  }
  return a;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::string one_line_of(const std::string& s);

// One line of an exception's message: libtorch's errors carry a C++ backtrace (dropped) and
// TorchScript's a script traceback that ends with the error itself (kept).
std::string one_line(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  return one_line_of(c10 ? c10->what_without_backtrace() : e.what());
}

std::string one_line_of(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string ln; std::getline(in, ln);) {
    if (ln.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(ln);
  }
  if (lines.empty()) return "(no message)";
  const std::string& last = lines.size() > 1 ? lines.back() : lines.front();
  const size_t rdcl = last.find("rdcl: ");  // exported predictors' own messages
  if (rdcl != std::string::npos) return last.substr(rdcl + 6);
  return last.substr(last.find_first_not_of(" \t"));
}

int run(const Args& a) {
  struct stat st;
  if (stat(a.output.c_str(), &st) == 0) {
    if (same_file(a.output, a.input) || same_file(a.output, a.model)) {
      throw UsageError("OUTPUT is one of the inputs: " + a.output);
    }
    if (!a.overwrite) throw UsageError("output exists (pass --overwrite): " + a.output);
  }
  rdcl::nifti::Image img;
  try {
    img = rdcl::nifti::read_file(a.input);
  } catch (const rdcl::nifti::NiftiError& e) {
    throw UsageError(a.input + ": " + e.what());
  }

  torch::Device device(torch::kCPU);
  if (a.device == "cuda") {
    if (!torch::cuda::is_available()) {
      throw UsageError("--device cuda: no CUDA device is available to this libtorch");
    }
    device = torch::Device(torch::kCUDA);
  }
  torch::jit::script::Module module;
  try {
    module = torch::jit::load(a.model, device);
  } catch (const std::exception& e) {
    throw UsageError("cannot load TorchScript model " + a.model + ": " + one_line(e));
  }
  const std::string method =
      std::string(a.probabilities ? "probabilities" : "forward") + (a.window ? "_window" : "");
  if (!module.find_method(method)) {
    throw UsageError("model " + a.model + " has no method '" + method +
                     "': expected an rdcl exported predictor (rdcl export)");
  }
  module.eval();

  std::vector<int64_t> shape(img.shape.begin(), img.shape.begin() + img.ndim);
  at::Tensor out;
  {
    c10::InferenceMode guard;
    at::Tensor image = torch::from_blob(img.data.data(), shape, torch::kFloat32).to(device);
    at::Tensor spacing =
        torch::from_blob(img.spacing.data(), {img.ndim}, torch::kFloat64).clone().to(device);
    try {
      std::vector<c10::IValue> inputs{image, spacing};
      if (a.window) {
        inputs.emplace_back(
            torch::tensor({a.low, a.high}, torch::TensorOptions().dtype(torch::kFloat64))
                .to(device));
      }
      out = module.get_method(method)(inputs).toTensor();
    } catch (const std::exception& e) {
      throw UsageError("model " + a.model + " failed on " + a.input + ": " + one_line(e));
    }
  }
  const auto want = a.probabilities ? torch::kFloat32 : torch::kUInt8;
  if (!out.sizes().equals(shape) || out.scalar_type() != want) {
    std::ostringstream got;
    got << out.sizes() << " " << out.scalar_type();
    throw UsageError("model " + a.model + " broke the predictor contract: expected " +
                     (a.probabilities ? "float32" : "uint8") + " of the input's shape, found " +
                     got.str());
  }
  out = out.to(torch::kCPU).contiguous();
  const auto bytes = rdcl::nifti::encode(
      img, out.data_ptr(), a.probabilities ? rdcl::nifti::kFloat32 : rdcl::nifti::kUint8);
  rdcl::nifti::write_file(a.output, bytes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "rdcl_predict: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "rdcl_predict: error: " << one_line(e) << "\n";
    return 1;
  }
}
