#include "bindings/dlpack_arg.h"

#include <algorithm>
#include <sstream>

#include "common/dlpack.h"
#if FASTDREAM_WITH_CUDA
#include "common/cuda_runtime_info.h"
#endif

namespace py = pybind11;

namespace fastdream {

const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::Float32: return "float32";
    case Dtype::Float16: return "float16";
    case Dtype::BFloat16: return "bfloat16";
    case Dtype::Float64: return "float64";
    case Dtype::Int32: return "int32";
    case Dtype::Int64: return "int64";
    case Dtype::UInt8: return "uint8";
    default: return "an unsupported dtype";
  }
}

const char* device_name(DeviceKind d) {
  switch (d) {
    case DeviceKind::CPU: return "cpu";
    case DeviceKind::CUDA: return "cuda";
    default: return "an unsupported device";
  }
}

size_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::Float32: case Dtype::Int32: return 4;
    case Dtype::Float16: case Dtype::BFloat16: return 2;
    case Dtype::Float64: case Dtype::Int64: return 8;
    case Dtype::UInt8: return 1;
    default: return 0;
  }
}

std::string TensorArg::shape_str() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

std::string TensorArg::describe() const {
  return str_cat(dtype_name(dtype), " tensor of shape ", shape_str(), " on ", device_name(device));
}

static Dtype to_dtype(DLDataType t) {
  if (t.lanes != 1) return Dtype::Other;
  if (t.code == kDLFloat && t.bits == 32) return Dtype::Float32;
  if (t.code == kDLFloat && t.bits == 16) return Dtype::Float16;
  if (t.code == kDLFloat && t.bits == 64) return Dtype::Float64;
  if (t.code == kDLBfloat && t.bits == 16) return Dtype::BFloat16;
  if (t.code == kDLInt && t.bits == 32) return Dtype::Int32;
  if (t.code == kDLInt && t.bits == 64) return Dtype::Int64;
  if (t.code == kDLUInt && t.bits == 8) return Dtype::UInt8;
  return Dtype::Other;
}

DLArg dlpack_arg(py::handle obj, const char* name) {
  DLArg arg;
  if (PyCapsule_CheckExact(obj.ptr())) {
    arg.owner = py::reinterpret_borrow<py::object>(obj);
  } else if (py::hasattr(obj, "__dlpack__")) {
    arg.owner = obj.attr("__dlpack__")();
  } else {
    throw TypeError(str_cat(name, ": expected a tensor (a DLPack capsule or an object with __dlpack__), got ",
                            std::string(py::str(py::type::handle_of(obj).attr("__name__")))));
  }
  PyObject* cap = arg.owner.ptr();
  if (!PyCapsule_CheckExact(cap) || !PyCapsule_IsValid(cap, "dltensor")) {
    throw TypeError(str_cat(name, ": expected an unused DLPack capsule named 'dltensor' (a capsule can be used once)"));
  }
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
  if (managed == nullptr) throw TypeError(str_cat(name, ": empty DLPack capsule"));
  const DLTensor& dl = managed->dl_tensor;
  TensorArg& t = arg.t;
  t.name = name;
  if (dl.ndim < 0 || dl.ndim > kMaxDims) {
    throw ValueError(str_cat(name, ": tensors of rank ", dl.ndim, " are not supported (at most ", kMaxDims, ")"));
  }
  t.ndim = dl.ndim;
  t.dtype = to_dtype(dl.dtype);
  t.device = dl.device.device_type == kDLCPU    ? DeviceKind::CPU
             : dl.device.device_type == kDLCUDA ? DeviceKind::CUDA
                                                : DeviceKind::Other;
  t.device_id = dl.device.device_id;
  int64_t expected = 1;
  for (int i = dl.ndim - 1; i >= 0; --i) {
    t.shape[i] = dl.shape[i];
    t.strides[i] = dl.strides ? dl.strides[i] : expected;
    expected *= dl.shape[i];
  }
  t.data = static_cast<char*>(dl.data) + dl.byte_offset;
  if (t.device == DeviceKind::Other) {
    throw ValueError(str_cat(name, ": tensors on device type ", int(dl.device.device_type),
                             " are not supported (cpu and cuda are)"));
  }
  return arg;
}

void check_dtype(const TensorArg& t, std::initializer_list<Dtype> allowed) {
  if (std::find(allowed.begin(), allowed.end(), t.dtype) != allowed.end()) return;
  std::string names;
  for (Dtype d : allowed) names += str_cat(names.empty() ? "" : " or ", dtype_name(d));
  throw TypeError(str_cat(t.name, ": expected ", names, ", got ", t.describe()));
}

void check_ndim(const TensorArg& t, int ndim, const char* layout) {
  FD_CHECK(t.ndim == ndim, t.name, ": expected a ", ndim, "-d tensor ", layout, ", got ", t.describe());
}

void check_contiguous(const TensorArg& t) {
  std::string strides;
  for (int i = 0; i < t.ndim; ++i) strides += str_cat(i ? ", " : "", t.strides[i]);
  FD_CHECK(t.is_contiguous(), t.name, ": expected a contiguous tensor (row-major, NCHW), got strides [", strides,
           "] for shape ", t.shape_str(), "; call .contiguous() first");
}

void check_same_device(const TensorArg& a, const TensorArg& b) {
  FD_CHECK(a.device == b.device && a.device_id == b.device_id, a.name, " and ", b.name,
           " must be on the same device, got ", device_name(a.device), ":", a.device_id, " and ",
           device_name(b.device), ":", b.device_id);
}

void check_same_shape(const TensorArg& a, const TensorArg& b) {
  bool same = a.ndim == b.ndim;
  for (int i = 0; same && i < a.ndim; ++i) same = a.shape[i] == b.shape[i];
  FD_CHECK(same, a.name, " and ", b.name, " must have the same shape, got ", a.shape_str(), " and ", b.shape_str());
}

static std::pair<uintptr_t, uintptr_t> byte_range(const TensorArg& t) {
  uintptr_t lo = reinterpret_cast<uintptr_t>(t.data), hi = lo;
  if (t.numel() == 0) return {lo, lo};
  int64_t last = 0;
  for (int i = 0; i < t.ndim; ++i) last += (t.shape[i] - 1) * t.strides[i];
  hi = lo + static_cast<uintptr_t>(last + 1) * dtype_size(t.dtype);
  return {lo, hi};
}

void check_no_overlap(const TensorArg& a, const TensorArg& b) {
  if (a.device != b.device) return;
  auto ra = byte_range(a), rb = byte_range(b);
  bool overlap = ra.first < rb.second && rb.first < ra.second;
  FD_CHECK(!overlap, a.name, " and ", b.name, " share memory; pass separate tensors");
}

void check_device_supported(const TensorArg& t) {
#if FASTDREAM_WITH_CUDA
  if (t.device == DeviceKind::CUDA) {
    FD_CHECK(cuda_device_count() > 0, t.name, ": got a CUDA tensor but no CUDA device is visible");
  }
#else
  FD_CHECK(t.device != DeviceKind::CUDA, t.name,
           ": got a CUDA tensor, but this build of fastdream was compiled without CUDA "
           "(rebuild with FASTDREAM_CUDA=ON, see fastdream.build_info())");
#endif
}

void* stream_arg(const TensorArg& t, std::uintptr_t stream) {
  if (t.device == DeviceKind::CPU) {
    FD_CHECK(stream == 0, t.name, ": a CUDA stream (", stream, ") was given for a CPU tensor");
  }
  return reinterpret_cast<void*>(stream);
}

void check_workspace(const TensorArg& ws, const TensorArg& like, int64_t bytes) {
  check_dtype(ws, {Dtype::UInt8});
  check_same_device(ws, like);
  FD_CHECK(ws.ndim == 1 && ws.strides[0] == 1, ws.name, ": expected a 1-d contiguous uint8 tensor, got ",
           ws.describe());
  FD_CHECK(ws.shape[0] >= bytes, ws.name, ": workspace of ", ws.shape[0], " bytes is too small, ", bytes,
           " are needed");
  FD_CHECK(reinterpret_cast<uintptr_t>(ws.data) % 16 == 0, ws.name, ": workspace must be 16-byte aligned");
}

}  // namespace fastdream
