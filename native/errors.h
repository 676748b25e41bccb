// The one place that turns C++ exceptions (c10::Error included) into JS errors with a stable
// `code`. Workers classify on their own thread (no JS allowed there) and build the JS error
// later on the main thread; synchronous entry points convert on the spot.
#pragma once

#include <c10/util/Exception.h>
#include <napi.h>

#include <exception>
#include <stdexcept>
#include <string>

#include "device_memory.h"

namespace fc {

// An error meant for the user, with the code the TypeScript side maps to FastComposerError.
class CodedError : public std::runtime_error {
 public:
  CodedError(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Thrown inside the denoising loop when the abort flag is seen.
struct AbortedError : CodedError {
  AbortedError() : CodedError("ERR_ABORTED", "The operation was aborted") {}
};

struct ErrorInfo {
  std::string code;
  std::string message;
};

// Must be called inside a catch block: classifies the exception being handled.
inline ErrorInfo classifyCurrentException() {
  try {
    throw;
  } catch (const CodedError& e) {
    return {e.code(), e.what()};
  } catch (const c10::OutOfMemoryError& e) {
    releaseCudaCache();  // so the next, smaller call can succeed
    return {"ERR_OUT_OF_MEMORY", std::string("Out of memory: ") + e.what_without_backtrace()};
  } catch (const c10::Error& e) {
    return {"ERR_NATIVE", e.what_without_backtrace()};
  } catch (const std::invalid_argument& e) {
    return {"ERR_INVALID_ARGUMENT", e.what()};
  } catch (const std::bad_alloc&) {
    return {"ERR_OUT_OF_MEMORY", "Out of host memory"};
  } catch (const Napi::Error& e) {
    return {"ERR_INVALID_ARGUMENT", e.Message()};
  } catch (const std::exception& e) {
    return {"ERR_NATIVE", e.what()};
  } catch (...) {
    return {"ERR_NATIVE", "Unknown native error"};
  }
}

inline Napi::Error toJsError(Napi::Env env, const ErrorInfo& info) {
  Napi::Error error = Napi::Error::New(env, info.message);
  error.Set("code", Napi::String::New(env, info.code));
  return error;
}

// Runs `body` and rethrows any C++ exception as a JS error (node-addon-api then throws it
// into JavaScript). A Napi::Error keeps its code, or gets ERR_INVALID_ARGUMENT.
template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (Napi::Error& e) {
    // Argument errors raised while reading JS values: give them the argument code.
    if (!e.Value().Has("code")) e.Set("code", Napi::String::New(env, "ERR_INVALID_ARGUMENT"));
    throw;
  } catch (...) {
    throw toJsError(env, classifyCurrentException());
  }
}

}  // namespace fc
