#include "js_tensor.h"

#include <array>
#include <cstring>

namespace fc {
namespace {

struct DTypeEntry {
  const char* name;
  at::ScalarType type;
  size_t bytes;
};

constexpr std::array<DTypeEntry, 7> kDTypes{{
    {"float32", at::kFloat, 4},
    {"float16", at::kHalf, 2},
    {"bfloat16", at::kBFloat16, 2},
    {"int64", at::kLong, 8},
    {"int32", at::kInt, 4},
    {"uint8", at::kByte, 1},
    {"bool", at::kBool, 1},
}};

// The table's byte sizes are what JS uses to check Buffer lengths: keep them true.
static_assert(sizeof(float) == 4 && sizeof(at::Half) == 2 && sizeof(at::BFloat16) == 2 && sizeof(int64_t) == 8 && sizeof(int32_t) == 4 &&
                  sizeof(uint8_t) == 1 && sizeof(bool) == 1,
              "dtype table sizes disagree with the C++ types");

const DTypeEntry* findByName(const std::string& name) {
  for (const auto& entry : kDTypes)
    if (name == entry.name) return &entry;
  return nullptr;
}

}  // namespace

at::ScalarType scalarTypeFromName(Napi::Env env, const std::string& name, const char* what) {
  const DTypeEntry* entry = findByName(name);
  if (!entry) throw Napi::TypeError::New(env, std::string("Unsupported dtype \"") + name + "\" for " + what);
  return entry->type;
}

const char* scalarTypeName(at::ScalarType type) {
  for (const auto& entry : kDTypes)
    if (entry.type == type) return entry.name;
  return "unknown";
}

namespace {

// Checks a JS tensor object; returns its typed array, shape and dtype.
Napi::TypedArray parseJsTensor(Napi::Env env, const Napi::Value& value, const char* what, std::vector<int64_t>& shape,
                               at::ScalarType& type) {
  if (!value.IsObject()) throw Napi::TypeError::New(env, std::string("Expected a tensor object for ") + what);
  Napi::Object obj = value.As<Napi::Object>();
  Napi::Value data = obj.Get("data");
  Napi::Value shapeValue = obj.Get("shape");
  Napi::Value dtypeValue = obj.Get("dtype");
  if (!data.IsTypedArray() || !shapeValue.IsArray() || !dtypeValue.IsString())
    throw Napi::TypeError::New(env, std::string("Expected { data: Buffer, shape: number[], dtype: string } for ") + what);

  type = scalarTypeFromName(env, dtypeValue.As<Napi::String>(), what);
  Napi::Array shapeArray = shapeValue.As<Napi::Array>();
  shape.clear();
  int64_t count = 1;
  for (uint32_t i = 0; i < shapeArray.Length(); ++i) {
    Napi::Value dim = shapeArray.Get(i);
    if (!dim.IsNumber()) throw Napi::TypeError::New(env, std::string("Non-numeric shape entry for ") + what);
    int64_t n = dim.As<Napi::Number>().Int64Value();
    if (n < 0) throw Napi::TypeError::New(env, std::string("Negative shape entry for ") + what);
    shape.push_back(n);
    // A shape whose element count overflows can never match a real Buffer: refuse it.
    if (__builtin_mul_overflow(count, n, &count) || count > (int64_t{1} << 40))
      throw Napi::TypeError::New(env, std::string("Shape of ") + what + " is too large");
  }
  Napi::TypedArray array = data.As<Napi::TypedArray>();
  size_t elementBytes = at::elementSize(type);
  if (array.ByteLength() != static_cast<size_t>(count) * elementBytes)
    throw Napi::TypeError::New(env, std::string("Byte length ") + std::to_string(array.ByteLength()) + " of " + what +
                                        " does not match its shape and dtype (" + std::to_string(count * elementBytes) + " expected)");
  return array;
}

}  // namespace

at::Tensor tensorFromJs(Napi::Env env, const Napi::Value& value, const char* what) {
  std::vector<int64_t> shape;
  at::ScalarType type;
  Napi::TypedArray array = parseJsTensor(env, value, what, shape, type);
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(type));
  auto* bytes = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  if (array.ByteLength() > 0) std::memcpy(out.data_ptr(), bytes, array.ByteLength());
  return out;
}

at::Tensor tensorViewOfJs(Napi::Env env, const Napi::Value& value, const char* what, JsKeepAlive& keepAlive) {
  std::vector<int64_t> shape;
  at::ScalarType type;
  Napi::TypedArray array = parseJsTensor(env, value, what, shape, type);
  if (array.ByteLength() == 0) return at::empty(shape, at::TensorOptions().dtype(type));
  if (array.ByteOffset() % at::elementSize(type) != 0) return tensorFromJs(env, value, what);  // misaligned: copy
  keepAlive.push_back(Napi::Persistent(array.ArrayBuffer().As<Napi::Object>()));
  auto* bytes = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  return at::from_blob(bytes, shape, at::TensorOptions().dtype(type));
}

Napi::Object tensorToJs(Napi::Env env, const at::Tensor& tensor) {
  at::Tensor cpu = tensor.device().is_cpu() ? tensor.contiguous() : tensor.to(at::kCPU).contiguous();
  Napi::Object result = Napi::Object::New(env);
  Napi::Array shape = Napi::Array::New(env, cpu.dim());
  for (int64_t i = 0; i < cpu.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(cpu.size(i))));

  size_t bytes = cpu.numel() * cpu.element_size();
  Napi::Value buffer;
  if (bytes == 0) {
    buffer = Napi::Buffer<uint8_t>::New(env, 0);
  } else {
    // Zero copy: the Buffer keeps a reference to the tensor until V8 collects it.
    auto* holder = new at::Tensor(cpu);
    buffer = Napi::Buffer<uint8_t>::New(
        env, static_cast<uint8_t*>(holder->data_ptr()), bytes, [](Napi::Env, uint8_t*, at::Tensor* hint) { delete hint; }, holder);
  }
  result.Set("data", buffer);
  result.Set("shape", shape);
  result.Set("dtype", Napi::String::New(env, scalarTypeName(cpu.scalar_type())));
  return result;
}

}  // namespace fc
