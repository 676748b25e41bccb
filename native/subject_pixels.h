// Subject pictures -> the uint8 [S,size,size,3] input of image_encoder.pt, as FastComposer's
// inference prepares them (fastcomposer/pipeline.py `_encode_augmented_prompt`, torchvision 0.14):
// uint8 HWC -> CHW, PadToSquare(fill=0), F.interpolate(float32, bilinear, align_corners=False,
// antialias=True), torch.round -> uint8. Runs on the worker thread (docs/IMAGES.md).
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace fc {

// Throws CodedError ERR_INVALID_ARGUMENT (not a uint8 [H,W,3] tensor) or ERR_IMAGE (H or W is 0),
// naming `subjectImages[i]`. Cheap: reads shapes only.
void checkSubjectImages(const std::vector<at::Tensor>& rgbImages);

// rgbImages: uint8 [H,W,3] each (any size, CPU). Returns uint8 [S,size,size,3], CPU, contiguous.
at::Tensor prepareSubjectPixels(const std::vector<at::Tensor>& rgbImages, int64_t size);

}  // namespace fc
