// Internal functions for the test suite (not part of the public API): exposed under `testing`.
#pragma once

#include <napi.h>

namespace fc {
Napi::Object testingExports(Napi::Env env);
}
