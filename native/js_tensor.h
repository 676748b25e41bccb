// Tensors across the boundary: JS `{ data: Buffer, shape: number[], dtype: string }` <-> at::Tensor.
#pragma once

#include <ATen/ATen.h>
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

namespace fc {

// Parses a dtype name ("float32", "int64", ...); throws Napi::TypeError naming `what` otherwise.
at::ScalarType scalarTypeFromName(Napi::Env env, const std::string& name, const char* what);
const char* scalarTypeName(at::ScalarType type);

// Copies a JS tensor into an owned CPU tensor. A copy, not a view: the worker thread must not
// read a Buffer that JavaScript may change or collect meanwhile, and JS Buffers need not be
// aligned for the dtype. Inputs are small (pixels, latents), so the copy is cheap.
at::Tensor tensorFromJs(Napi::Env env, const Napi::Value& value, const char* what);

// References that keep JS ArrayBuffers alive. Create, hold and destroy them on the main thread
// only (a worker's lambda that captures them is destroyed there, after OnOK/OnError).
using JsKeepAlive = std::vector<Napi::ObjectReference>;

// A CPU tensor over the JS typed array's own bytes, no copy (a copy when they are misaligned for
// the dtype), for large inputs read on a worker: `keepAlive` gets a reference to the ArrayBuffer.
// The caller must not change the bytes until the call ends (lib/ passes buffers it owns).
at::Tensor tensorViewOfJs(Napi::Env env, const Napi::Value& value, const char* what, JsKeepAlive& keepAlive);

// Hands a tensor to JS without copying: the Buffer points into the tensor's storage and its
// finalizer releases the tensor. Moves to CPU and makes contiguous first when needed.
Napi::Object tensorToJs(Napi::Env env, const at::Tensor& tensor);

}  // namespace fc
