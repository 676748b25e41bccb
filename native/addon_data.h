// Per-environment state of the addon. Node may load it in the main thread and in worker
// threads, each with its own V8 isolate: class references must not be shared between them, so
// they live in the environment's instance data, not in statics.
#pragma once

#include <napi.h>

namespace fc {

struct AddonData {
  Napi::FunctionReference modelClass;
  Napi::FunctionReference abortFlagClass;
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace fc
