// generate(): one call, or several compatible calls as one batch. Their inputs are read and
// checked on the main thread (readGenerateCall); the work runs on the model's job thread.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>
#include <vector>

#include "addon_data.h"
#include "js_tensor.h"
#include "pipeline.h"
#include "workers.h"

namespace fc {

// generate()'s inputs, read and checked on the main thread.
struct GenerateCall {
  std::vector<at::Tensor> images;  // views of the subject pictures' JS buffers
  int64_t subjectSize = 0;
  PromptJob prompt;
  DenoiseJob job;
};

// The subject pictures are views of JS buffers: read them (pad + resize into a tensor of our
// own) only while their environment is alive. A job that starts after a worker thread ended
// would read freed memory otherwise.
at::Tensor readSubjectPixels(EnvJobs& envJobs, const std::vector<at::Tensor>& images, int64_t size);

// `keepAlive` gets the references that keep the pictures' buffers alive.
GenerateCall readGenerateCall(Napi::Env env, const Napi::Object& obj, const ModelSpec& spec, JsKeepAlive& keepAlive);

// What generate() hands back: the denoised latents (and maps), the pictures, the stage times.
struct GenerateOutput {
  bool aborted = false;  // a batch member whose own flag was set: no result
  DenoiseResult denoised;
  at::Tensor images;
  double encodeSubjectsMs = 0, encodePromptMs = 0, denoiseMs = 0, decodeMs = 0, totalMs = 0;
  int64_t batchedCalls = 1;  // the calls that shared the UNet batch (this one included)
};

// The whole generation: subjects, prompt, denoising, decoding, each timed.
void runGenerate(const std::shared_ptr<Model>& model, EnvJobs& envJobs, GenerateCall& call, const ProgressFn& progress,
                 const std::atomic<bool>& aborted, GenerateOutput& out);

// Several batchable calls (pipeline.h): the subjects of all of them through the image encoder
// at once, each prompt encoded, one denoising loop, one decode. A call whose flag is set leaves
// the batch (its output says aborted); `aborted` stops them all. Stage times are the batch's.
void runGenerateBatch(const std::shared_ptr<Model>& model, EnvJobs& envJobs, std::vector<GenerateCall>& calls,
                      const std::vector<AbortFlag>& flags, const ProgressFn& progress, const std::atomic<bool>& aborted,
                      std::vector<GenerateOutput>& outs);

Napi::Object denoiseResultToJs(Napi::Env env, const DenoiseResult& result);
Napi::Value generateOutputToJs(Napi::Env env, const GenerateOutput& out);

}  // namespace fc
