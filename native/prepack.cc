#include "prepack.h"

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace fc {
namespace {

using torch::jit::Graph;
using torch::jit::Module;
using torch::jit::NamedValue;
using torch::jit::Node;
using torch::jit::Value;

const c10::Symbol kGetAttr = c10::Symbol::fromQualString("prim::GetAttr");
const c10::Symbol kListConstruct = c10::Symbol::fromQualString("prim::ListConstruct");
const c10::Symbol kConvolution = c10::Symbol::fromQualString("aten::_convolution");
const c10::Symbol kConv2d = c10::Symbol::fromQualString("aten::conv2d");
const c10::Symbol kLinear = c10::Symbol::fromQualString("aten::linear");
const c10::Symbol kContiguous = c10::Symbol::fromQualString("aten::contiguous");
const c10::Symbol kConvPointwise = c10::Symbol::fromQualString("mkldnn::_convolution_pointwise");
const c10::Symbol kLinearPointwise = c10::Symbol::fromQualString("mkldnn::_linear_pointwise");

// A module attribute read by a chain of prim::GetAttr from the method's `self`.
struct AttrPath {
  std::vector<std::string> modules;  // submodule names from the top
  std::string name;                  // the attribute on the last one
  std::string key() const {
    std::string k;
    for (const std::string& m : modules) k += m + ".";
    return k + name;
  }
};

std::optional<AttrPath> attrPath(const Value* v, const Value* self) {
  if (v->node()->kind() != kGetAttr) return std::nullopt;
  AttrPath path;
  path.name = v->node()->s(c10::attr::name);
  for (v = v->node()->input(0); v != self; v = v->node()->input(0)) {
    if (v->node()->kind() != kGetAttr) return std::nullopt;
    path.modules.push_back(v->node()->s(c10::attr::name));
  }
  std::reverse(path.modules.begin(), path.modules.end());
  return path;
}

Module ownerOf(Module module, const AttrPath& path) {
  for (const std::string& m : path.modules) module = module.attr(m).toModule();
  return module;
}

// An int[] that is a constant, or (as traced graphs build them) a list of int constants.
std::optional<std::vector<int64_t>> constantInts(const Value* v) {
  if (std::optional<c10::IValue> iv = torch::jit::toIValue(v); iv && iv->isIntList()) return iv->toIntVector();
  if (v->node()->kind() != kListConstruct) return std::nullopt;
  std::vector<int64_t> out;
  for (const Value* e : v->node()->inputs()) {
    std::optional<c10::IValue> iv = torch::jit::toIValue(e);
    if (!iv || !iv->isInt()) return std::nullopt;
    out.push_back(iv->toInt());
  }
  return out;
}

std::optional<int64_t> constantInt(const Value* v) {
  std::optional<c10::IValue> iv = torch::jit::toIValue(v);
  if (!iv || !iv->isInt()) return std::nullopt;
  return iv->toInt();
}

// The weight in the blocked layout oneDNN picks for an input of `side` x `side`.
at::Tensor reorderConvolutionWeight(const at::Tensor& weight, const std::vector<int64_t>& padding, const std::vector<int64_t>& stride,
                                    const std::vector<int64_t>& dilation, int64_t groups, int64_t side = 32) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mkldnn::_reorder_convolution_weight", "")
          .typed<at::Tensor(const at::Tensor&, at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, at::OptionalIntArrayRef)>();
  const std::vector<int64_t> hint = {2, weight.size(1) * groups, side, side};
  return op.call(weight.contiguous(), padding, stride, dilation, groups, hint);
}

at::Tensor reorderLinearWeight(const at::Tensor& weight) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                       .typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>();
  return op.call(weight.contiguous(), std::nullopt);
}

// The size of the weight whose fresh reorder must match the cache's before the rest is trusted.
constexpr size_t kCheckedCacheBytes = 64 * 1024;

class Prepacker {
 public:
  Prepacker(Module& module, const PrepackOptions& options) : module_(module), options_(options) {}

  void run() {
    for (const torch::jit::Method& method : module_.get_methods()) {
      std::shared_ptr<Graph> graph = method.graph();
      torch::jit::Inline(*graph);
      rewriteBlock(*graph, graph->block());
      torch::jit::EliminateDeadCode(graph);
    }
    releaseUnread();
  }

  const PrepackCounts& counts() const { return counts_; }

 private:
  void rewriteBlock(Graph& graph, torch::jit::Block* block) {
    std::vector<Node*> nodes(block->nodes().begin(), block->nodes().end());
    for (Node* node : nodes) {
      for (torch::jit::Block* inner : node->blocks()) rewriteBlock(graph, inner);
      if (options_.convolutions && (node->kind() == kConvolution || node->kind() == kConv2d)) rewriteConvolution(graph, node);
      if (options_.linears && node->kind() == kLinear) rewriteLinear(graph, node);
    }
  }

  // The prepacked copy of the weight at `path` (made once, shared by every method), read from self.
  // `op` names the reorder and its parameters: the cache's key with the path.
  Value* packedWeight(Graph& graph, const AttrPath& path, const std::string& op,
                      const std::function<at::Tensor(const at::Tensor&)>& reorder) {
    auto found = packedNames_.find(path.key());
    if (found == packedNames_.end()) {
      at::Tensor dense = ownerOf(module_, path).attr(path.name).toTensor();
      at::Tensor packed = cachedOrReorder(path.key() + " " + op, dense, reorder);
      const std::string name = "fc_prepacked_" + std::to_string(packedNames_.size());
      module_.register_attribute(name, c10::TensorType::get(), packed, false, false);
      counts_.bytes += static_cast<int64_t>(dense.numel()) * static_cast<int64_t>(dense.element_size());
      ++counts_.weights;
      found = packedNames_.emplace(path.key(), name).first;
      packedPaths_.push_back(path);
    }
    return graph.insertGetAttr(graph.inputs()[0], found->second);
  }

  at::Tensor cachedOrReorder(const std::string& name, const at::Tensor& dense,
                             const std::function<at::Tensor(const at::Tensor&)>& reorder) {
    PackedWeightCache* cache = options_.cache;
    if (!cache) return reorder(dense);
    if (at::Tensor stored = cache->find(name, dense); stored.defined()) {
      if (checkedCache_) {
        ++counts_.fromCache;
        return stored;
      }
      // Packed again and compared, up to the first large weight (prepack_cache.h). The fresh copy
      // is the one used: should a later check fail, nothing points into the file.
      at::Tensor fresh = reorder(dense);
      if (samePackedBytes(fresh, stored)) {
        checkedCache_ = dense.nbytes() >= kCheckedCacheBytes;
        ++counts_.fromCache;
        return fresh;
      }
      cache->discard();
      cache->add(name, dense, fresh);
      return fresh;
    }
    at::Tensor packed = reorder(dense);
    cache->add(name, dense, packed);
    return packed;
  }

  static std::string ints(const std::vector<int64_t>& v) {
    std::string s;
    for (int64_t x : v) {
      if (!s.empty()) s += ',';
      s += std::to_string(x);
    }
    return s;
  }

  void rewriteConvolution(Graph& graph, Node* node) {
    const bool full = node->kind() == kConvolution;  // aten::_convolution has transposed, output_padding, ...
    std::optional<AttrPath> path = attrPath(node->input(1), graph.inputs()[0]);
    auto stride = constantInts(node->input(3));
    auto padding = constantInts(node->input(4));
    auto dilation = constantInts(node->input(5));
    auto groups = constantInt(node->input(full ? 8 : 6));
    if (!path || !stride || !padding || !dilation || !groups || stride->size() != 2) return;
    if (full) {
      std::optional<c10::IValue> transposed = torch::jit::toIValue(node->input(6));
      if (!transposed || !transposed->isBool() || transposed->toBool()) return;
    }
    if (ownerOf(module_, *path).attr(path->name).toTensor().dim() != 4) return;
    torch::jit::WithInsertPoint guard(node);
    const std::string op = "conv p" + ints(*padding) + " s" + ints(*stride) + " d" + ints(*dilation) + " g" + std::to_string(*groups);
    Value* weight = packedWeight(graph, *path, op,
                                 [&](const at::Tensor& w) { return reorderConvolutionWeight(w, *padding, *stride, *dilation, *groups); });
    Value* x = node->input(0);
    if (options_.channelsLast)
      x = graph.insert(kContiguous, {x}, {NamedValue("memory_format", c10::IValue(static_cast<int64_t>(at::MemoryFormat::ChannelsLast)))});
    Value* y = graph.insert(kConvPointwise, {x, weight, node->input(2), c10::IValue(*padding), c10::IValue(*stride), c10::IValue(*dilation),
                                             c10::IValue(*groups), c10::IValue(std::string("none")), emptyScalars(graph), c10::IValue()});
    node->output()->replaceAllUsesWith(y);
    node->destroy();
    ++counts_.convolutions;
  }

  void rewriteLinear(Graph& graph, Node* node) {
    std::optional<AttrPath> path = attrPath(node->input(1), graph.inputs()[0]);
    if (!path || ownerOf(module_, *path).attr(path->name).toTensor().dim() != 2) return;
    torch::jit::WithInsertPoint guard(node);
    Value* weight = packedWeight(graph, *path, "linear", reorderLinearWeight);
    Value* y = graph.insert(kLinearPointwise,
                            {node->input(0), weight, node->input(2), c10::IValue(std::string("none")), emptyScalars(graph), c10::IValue()});
    node->output()->replaceAllUsesWith(y);
    node->destroy();
    ++counts_.linears;
  }

  // The ops' `Scalar?[] scalars`: no post-op, so none.
  static Value* emptyScalars(Graph& graph) {
    return graph.insertNode(graph.createList(c10::OptionalType::create(c10::NumberType::get()), {}))->output();
  }

  // Dense weights that no method reads any more (all their uses were prepacked) are replaced by
  // empty tensors: the packed copies would otherwise double the model's memory.
  void releaseUnread() {
    std::set<std::string> read;
    for (const torch::jit::Method& method : module_.get_methods()) {
      const Value* self = method.graph()->inputs()[0];
      std::vector<const torch::jit::Block*> blocks = {method.graph()->block()};
      while (!blocks.empty()) {
        const torch::jit::Block* block = blocks.back();
        blocks.pop_back();
        for (const Node* node : block->nodes()) {
          for (const torch::jit::Block* inner : node->blocks()) blocks.push_back(inner);
          if (node->kind() != kGetAttr) continue;
          if (std::optional<AttrPath> path = attrPath(node->output(), self)) read.insert(path->key());
        }
      }
    }
    for (const AttrPath& path : packedPaths_) {
      if (read.count(path.key())) continue;
      Module owner = ownerOf(module_, path);
      at::Tensor dense = owner.attr(path.name).toTensor();
      owner.setattr(path.name, at::empty({0}, dense.options()));
    }
  }

  Module& module_;
  PrepackOptions options_;
  PrepackCounts counts_;
  bool checkedCache_ = false;
  std::map<std::string, std::string> packedNames_;  // weight path -> packed attribute on the top module
  std::vector<AttrPath> packedPaths_;
};

}  // namespace

namespace {

// Weights of SD1.5's shapes whose layout changed with the input's size where it did (AVX2
// brgconv: Acdb16a, 24a or 32a by size), at latent sizes a 256x256 and a 512x512 picture give.
// Values without a pattern (sin of the index, also distinct enough in bfloat16, where large
// integers round together), so that two layouts never hold the same bytes. A probe that fails
// keeps convolutions packed, as before there was one.
bool probeLayouts(at::ScalarType dtype) {
  struct Probe {
    int64_t out, in, a, b;
  };
  try {
    for (const Probe& p : {Probe{1280, 1280, 8, 32}, Probe{1280, 1920, 16, 32}, Probe{128, 256, 16, 64}}) {
      const at::Tensor w = at::arange(p.out * p.in * 9, at::kFloat).sin_().reshape({p.out, p.in, 3, 3}).to(dtype);
      const std::vector<int64_t> one = {1, 1}, pad = {1, 1};
      const at::Tensor a = reorderConvolutionWeight(w, pad, one, one, 1, p.a);
      if (!packedBytes(a)) return false;
      if (!samePackedBytes(a, reorderConvolutionWeight(w, pad, one, one, 1, p.b))) return true;
    }
  } catch (const std::exception&) {
    return false;
  }
  return false;
}

}  // namespace

bool convolutionLayoutsDependOnInputSize(at::ScalarType dtype) {
  static std::mutex mutex;
  static std::map<std::pair<at::ScalarType, int>, bool> probed;
  std::lock_guard<std::mutex> lock(mutex);
  const std::pair<at::ScalarType, int> key{dtype, at::get_num_threads()};
  auto it = probed.find(key);
  if (it == probed.end()) it = probed.emplace(key, probeLayouts(dtype)).first;
  return it->second;
}

PrepackCounts prepackForCpu(torch::jit::Module& module, const PrepackOptions& options) {
  Prepacker prepacker(module, options);
  prepacker.run();
  return prepacker.counts();
}

}  // namespace fc
