// A JS-visible handle on an atomic flag: TypeScript flips it when an AbortSignal fires; the
// denoising loop reads it once per step on its worker thread.
#pragma once

#include <napi.h>

#include "workers.h"

namespace fc {

class AbortFlagWrap : public Napi::ObjectWrap<AbortFlagWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "AbortFlag",
                       {InstanceMethod<&AbortFlagWrap::Abort>("abort"), InstanceAccessor<&AbortFlagWrap::Aborted>("aborted")});
  }
  explicit AbortFlagWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<AbortFlagWrap>(info), flag_(std::make_shared<std::atomic<bool>>(false)) {}

  const AbortFlag& flag() const { return flag_; }

 private:
  Napi::Value Abort(const Napi::CallbackInfo& info) {
    flag_->store(true);
    return info.Env().Undefined();
  }
  Napi::Value Aborted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag_->load()); }

  AbortFlag flag_;
};

}  // namespace fc
