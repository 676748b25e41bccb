// The FastComposer pipeline on a loaded Model, in stages that can also run one by one:
// encode subjects -> encode prompt (fuse) -> denoise -> decode. generate() chains them.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model.h"
#include "schedulers/scheduler.h"

namespace fc {

// The three prompt embeddings of one prompt, each [1,L,D] in the model's dtype on its device
// (L: the text encoder's context length, model.json maxLength).
struct PromptEmbeds {
  at::Tensor fused;     // text with subject embeddings fused in at the subject tokens
  at::Tensor textOnly;  // the prompt without <|image|>, for the early (text-only) steps
  at::Tensor negative;  // the negative prompt, for classifier-free guidance
};

struct PromptJob {
  at::Tensor inputIds;                    // int64 [1,L]: prompt, image tokens removed
  at::Tensor textOnlyIds;                 // int64 [1,L]
  at::Tensor negativeIds;                 // int64 [1,L]
  std::vector<int64_t> subjectPositions;  // one per subject, into inputIds
  at::Tensor objectEmbeds;                // [S,D] from encodeSubjects (undefined when S = 0)
};

struct DenoiseJob {
  int64_t steps = 50;
  double guidanceScale = 5.0;
  // Steps i <= mergeThreshold use the text-only embedding: (1 - alpha) * steps, or the
  // caller's startMergeStep.
  double mergeThreshold = 0.0;
  uint64_t seed = 0;
  int64_t width = 512, height = 512, numImages = 1;
  std::string scheduler = "pndm";
  SchedulerConfig schedulerConfig;
  at::Tensor latents;  // optional float32 [N,4,h,w] (before the init sigma), CPU
  // Localized attention: subject attention maps and regions.
  bool attentionMaps = false;
  std::vector<int64_t> subjectPositions;
  at::Tensor regionInside;      // optional float32 [S,h,w]: fraction of each latent cell inside the subject's region
  std::vector<bool> hasRegion;  // per subject: was a region given (else its regionInside is all ones)
  double regionStrength = 1.0;
  bool regionExclusive = false;
};

struct StepEvent {
  int64_t step;   // 1-based, after the step
  int64_t steps;  // total UNet calls
  double timestep;
  int64_t member = -1;  // in a batch (Pipeline::denoiseBatch): whose step this was
};

using ProgressFn = std::function<void(const StepEvent&)>;

struct DenoiseResult {
  at::Tensor latents;        // float32 [N,4,h,w], CPU
  at::Tensor attentionMaps;  // float32 [N,S,h,w], CPU, each map sums to 1 (undefined unless asked)
};

// One call of a batch that denoises several calls as one UNet batch (Pipeline::denoiseBatch).
struct BatchMember {
  PromptEmbeds embeds;  // on the model's device, in its dtype
  DenoiseJob job;
  const std::atomic<bool>* aborted = nullptr;  // this call's own abort flag: it leaves the batch at the next step
};

// What became of one batch member: its result, or aborted.
struct BatchOutcome {
  bool aborted = false;
  DenoiseResult result;
};

// Calls that can share a UNet batch: the same size, steps and scheduler (so the same timesteps),
// and neither attention maps nor regions (localized attention takes per-call subject positions).
bool batchable(const DenoiseJob& a, const DenoiseJob& b);
bool usesLocalizedAttention(const DenoiseJob& job);

class Pipeline {
 public:
  explicit Pipeline(std::shared_ptr<Model> model) : model_(std::move(model)) {}

  // [S,224,224,3] from prepareSubjectPixels (subject_pixels.h) -> [S,D] (device, model dtype)
  at::Tensor encodeSubjects(const at::Tensor& pixelsU8);
  PromptEmbeds encodePrompt(const PromptJob& job);
  DenoiseResult denoise(const PromptEmbeds& embeds, const DenoiseJob& job, const ProgressFn& progress, const std::atomic<bool>& aborted);
  // Several batchable() jobs, each with its own seed, guidance scale, alpha and scheduler state,
  // as one UNet batch per step. Each member's numbers are those of denoise() on its own, up to the
  // kernels' batch-size dependent rounding. Progress events carry the member index.
  std::vector<BatchOutcome> denoiseBatch(const std::vector<BatchMember>& members, const ProgressFn& progress,
                                         const std::atomic<bool>& aborted);
  at::Tensor decode(const at::Tensor& latents);  // float32 [N,4,h,w] -> uint8 [N,H,W,3] CPU

 private:
  std::shared_ptr<Model> model_;
};

}  // namespace fc
