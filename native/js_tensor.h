// Tensors across the boundary: JS `{ data: Buffer, shape: number[], dtype: string }` <-> at::Tensor.
#pragma once

#include <ATen/ATen.h>
#include <napi.h>

#include <string>

namespace fc {

// Parses a dtype name ("float32", "int64", ...); throws Napi::TypeError naming `what` otherwise.
at::ScalarType scalarTypeFromName(Napi::Env env, const std::string& name, const char* what);
const char* scalarTypeName(at::ScalarType type);

// Copies a JS tensor into an owned CPU tensor. A copy, not a view: the worker thread must not
// read a Buffer that JavaScript may change or collect meanwhile, and JS Buffers need not be
// aligned for the dtype. Inputs are small (pixels, latents), so the copy is cheap.
at::Tensor tensorFromJs(Napi::Env env, const Napi::Value& value, const char* what);

// Hands a tensor to JS without copying: the Buffer points into the tensor's storage and its
// finalizer releases the tensor. Moves to CPU and makes contiguous first when needed.
Napi::Object tensorToJs(Napi::Env env, const at::Tensor& tensor);

}  // namespace fc
