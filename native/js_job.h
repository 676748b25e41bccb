// Reads the plain objects TypeScript builds (already validated there) into C++ structs.
// Checks stay here too, so a caller that skips the TS layer gets an error, never a crash.
#pragma once

#include <napi.h>

#include "model.h"
#include "pipeline.h"

namespace fc {

ModelSpec modelSpecFromJs(const Napi::Object& obj);
SchedulerConfig schedulerConfigFromJs(const Napi::Value& value);
// subjectsFollow: the subject embeddings are computed later from pixels (generate()).
PromptJob promptJobFromJs(const Napi::Object& obj, bool subjectsFollow = false);
DenoiseJob denoiseJobFromJs(const Napi::Object& obj);
PromptEmbeds promptEmbedsFromJs(const Napi::Object& obj, const Model& model);
Napi::Object promptEmbedsToJs(Napi::Env env, const PromptEmbeds& embeds);

}  // namespace fc
