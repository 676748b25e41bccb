// NativeModel: the JS object over a loaded Model. Each method validates its arguments on the
// main thread, then hands the work to a worker; the model is shared with in-flight workers so
// dispose() never frees it under their feet.
#pragma once

#include <napi.h>

#include <memory>

#include "model.h"

namespace fc {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);

  // Wraps a freshly loaded model into a new JS object.
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<Model> model);

 private:
  std::shared_ptr<Model> modelOrThrow(Napi::Env env) const;
  Napi::Value EncodeSubjects(const Napi::CallbackInfo& info);
  Napi::Value EncodePrompt(const Napi::CallbackInfo& info);
  Napi::Value Denoise(const Napi::CallbackInfo& info);
  Napi::Value Decode(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value GenerateBatch(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);

  std::shared_ptr<Model> model_;
};

}  // namespace fc
