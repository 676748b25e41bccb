// Reads the plain objects TypeScript builds (already validated there) into C++ structs.
// Checks stay here too, so a caller that skips the TS layer gets an error, never a crash.
#pragma once

#include <napi.h>

#include "js_tensor.h"
#include "model.h"
#include "pipeline.h"

namespace fc {

ModelSpec modelSpecFromJs(const Napi::Object& obj);
SchedulerConfig schedulerConfigFromJs(const Napi::Value& value);
// Token ids are checked against maxLength, the text encoder's context length (model.json).
// subjectsFollow: the subject embeddings are computed later from the pictures (generate()).
PromptJob promptJobFromJs(const Napi::Object& obj, int64_t maxLength, bool subjectsFollow = false);
// Sizes are checked against the model's latent channels, VAE scale factor and context length.
DenoiseJob denoiseJobFromJs(const Napi::Object& obj, const ModelSpec& spec);
// A picture side in pixels (1..4096), e.g. the image encoder's input size: ERR_INVALID_ARGUMENT naming it otherwise.
int64_t pixelSizeFromJs(Napi::Env env, const Napi::Value& value, const char* name);
// An array of uint8 [H,W,3] RGB tensors (decoded subject pictures, any size), checked with
// checkSubjectImages (subject_pixels.h). Views of the JS bytes, not copies (a 12 MP photo would
// cost ~30 ms of page faults and memcpy on the main thread): `keepAlive` holds their buffers.
std::vector<at::Tensor> subjectImagesFromJs(Napi::Env env, const Napi::Value& value, const char* what, JsKeepAlive& keepAlive);
PromptEmbeds promptEmbedsFromJs(const Napi::Object& obj, int64_t maxLength);  // host tensors
Napi::Object promptEmbedsToJs(Napi::Env env, const PromptEmbeds& embeds);

}  // namespace fc
