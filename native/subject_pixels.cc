#include "subject_pixels.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <string>

#include "errors.h"

namespace fc {
namespace {

std::string label(size_t i) { return "subjectImages[" + std::to_string(i) + "]"; }

std::string shapeText(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? "," : "") + std::to_string(t.size(d));
  return s + "]";
}

// Rows of the picture resized along x per band, so a large photo never exists in float32 at
// once (the reference converts it whole; each output value is the same either way).
constexpr int64_t kBandBytes = int64_t{16} << 20;

at::Tensor prepareOne(const at::Tensor& image, int64_t size) {
  const int64_t h = image.size(0), w = image.size(1);
  // PadToSquare: floor(|h - w| / 2) black on both sides of the short axis (an odd difference
  // leaves the canvas one pixel short of square, as the original does).
  int64_t left = 0, top = 0;
  if (h > w) left = (h - w) / 2;
  if (w > h) top = (w - h) / 2;
  const int64_t pw = w + 2 * left, ph = h + 2 * top;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);

  // at::_upsample_bilinear2d_aa on CPU is separable: one pass along x (when the width changes),
  // then one along y (when the height changes), each output value a sum over its own taps. The
  // x pass is run here on bands of rows, the y pass on the whole [1,3,ph,tw] intermediate:
  // the same arithmetic as one call on the padded float32 picture. Pad rows stay exact zeros.
  const int64_t tw = pw != size ? size : pw;
  at::Tensor canvas = at::zeros({1, 3, ph, tw}, f32);
  const int64_t band = std::max<int64_t>(1, kBandBytes / std::max<int64_t>(1, pw * 3 * 4));
  for (int64_t r0 = 0; r0 < h; r0 += band) {
    const int64_t r1 = std::min(h, r0 + band);
    at::Tensor rows = image.slice(0, r0, r1).permute({2, 0, 1}).unsqueeze(0).to(at::kFloat).contiguous();
    if (left > 0) rows = at::constant_pad_nd(rows, {left, left}, 0);
    at::Tensor dst = canvas.slice(2, top + r0, top + r1);
    if (pw != size)
      dst.copy_(at::_upsample_bilinear2d_aa(rows, {r1 - r0, size}, /*align_corners=*/false, std::nullopt, std::nullopt));
    else
      dst.copy_(rows);
  }
  at::Tensor out =
      ph != size ? at::_upsample_bilinear2d_aa(canvas, {size, size}, /*align_corners=*/false, std::nullopt, std::nullopt) : canvas;
  // torch.round is half to even; the filter's weights are >= 0 and sum to 1, so the clamp only
  // guards the cast.
  return out.round().clamp(0, 255).to(at::kByte).permute({0, 2, 3, 1});
}

}  // namespace

void checkSubjectImages(const std::vector<at::Tensor>& rgbImages) {
  for (size_t i = 0; i < rgbImages.size(); ++i) {
    const at::Tensor& t = rgbImages[i];
    if (!t.defined() || t.dim() != 3 || t.size(2) != 3 || t.scalar_type() != at::kByte)
      throw CodedError("ERR_INVALID_ARGUMENT",
                       label(i) + ": expected a uint8 [H,W,3] RGB tensor, got " +
                           (t.defined() ? std::string(c10::toString(t.scalar_type())) + " " + shapeText(t) : "nothing"));
    if (t.size(0) < 1 || t.size(1) < 1)
      throw CodedError("ERR_IMAGE",
                       label(i) + ": the image is empty (" + std::to_string(t.size(1)) + "x" + std::to_string(t.size(0)) + ")");
  }
}

at::Tensor prepareSubjectPixels(const std::vector<at::Tensor>& rgbImages, int64_t size) {
  if (size < 1 || size > 4096)
    throw CodedError("ERR_INVALID_ARGUMENT", "subject image size must be between 1 and 4096, got " + std::to_string(size));
  checkSubjectImages(rgbImages);
  c10::InferenceMode guard;
  std::vector<at::Tensor> out;
  out.reserve(rgbImages.size());
  for (const at::Tensor& image : rgbImages) out.push_back(prepareOne(image.to(at::kCPU), size));
  if (out.empty()) return at::empty({0, size, size, 3}, at::TensorOptions().dtype(at::kByte));
  return at::cat(out, 0).contiguous();
}

}  // namespace fc
