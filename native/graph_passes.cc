#include "graph_passes.h"

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/subgraph_rewrite.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace fc {
namespace {

using torch::jit::Graph;
using torch::jit::Node;

int countKind(const Graph& graph, const char* kind) {
  const auto symbol = c10::Symbol::fromQualString(kind);
  int count = 0;
  for (const Node* node : graph.nodes())
    if (node->kind() == symbol) ++count;
  return count;
}

void rewrite(std::shared_ptr<Graph>& graph, const std::string& pattern, const std::string& replacement) {
  torch::jit::SubgraphRewriter rewriter;
  rewriter.RegisterRewritePattern(pattern, replacement);
  rewriter.runOnGraph(graph);
}

// group_norm(x, ...) [then silu] -> fastcomposer::group_norm(x, ..., silu).
std::string groupNormIR(bool silu, bool replaced) {
  const std::string head = "graph(%x, %groups, %weight, %bias, %eps, %cudnn):\n";
  if (replaced)
    return head + "  %silu : bool = prim::Constant[value=" + (silu ? "1" : "0") +
           "]()\n  %z = fastcomposer::group_norm(%x, %groups, %weight, %bias, %eps, %cudnn, %silu)\n  return (%z)";
  return head + "  %y = aten::group_norm(%x, %groups, %weight, %bias, %eps, %cudnn)\n" +
         (silu ? "  %z = aten::silu(%y)\n  return (%z)" : "  return (%y)");
}

void rewriteGroupNorms(std::shared_ptr<Graph>& graph, GraphPassCounts& counts) {
  // The silu pattern first, so that a group norm followed by silu becomes one call.
  rewrite(graph, groupNormIR(true, false), groupNormIR(true, true));
  counts.fusedSilus += countKind(*graph, "fastcomposer::group_norm");
  rewrite(graph, groupNormIR(false, false), groupNormIR(false, true));
}

// Only a plain .contiguous() (memory_format=torch.contiguous_format) whose result feeds nothing
// but convolutions and additions: those accept any layout, while a later view() or an in-place
// op could depend on the copy.
bool droppable(const Node* node) {
  static const c10::Symbol contiguous = c10::Symbol::fromQualString("aten::contiguous");
  if (node->kind() != contiguous || node->inputs().size() != 2) return false;
  std::optional<c10::IValue> format = torch::jit::toIValue(node->input(1));
  if (!format || !format->isInt() || format->toInt() != static_cast<int64_t>(c10::MemoryFormat::Contiguous)) return false;
  static const std::vector<c10::Symbol> readers = {c10::Symbol::fromQualString("aten::_convolution"),
                                                   c10::Symbol::fromQualString("aten::conv2d"), c10::Symbol::fromQualString("aten::add")};
  for (const torch::jit::Use& use : node->output()->uses())
    if (std::find(readers.begin(), readers.end(), use.user->kind()) == readers.end()) return false;
  return !node->output()->uses().empty();
}

int dropContiguous(Graph& graph) {
  std::vector<Node*> found;
  for (Node* node : graph.nodes())
    if (droppable(node)) found.push_back(node);
  for (Node* node : found) {
    node->output()->replaceAllUsesWith(node->input(0));
    node->destroy();
  }
  return static_cast<int>(found.size());
}

}  // namespace

GraphPassCounts optimizeForInference(torch::jit::Module& module, bool channelsLast) {
  GraphPassCounts counts;
  for (const torch::jit::Method& method : module.get_methods()) {
    std::shared_ptr<Graph> graph = method.graph();
    torch::jit::Inline(*graph);
    if (channelsLast) counts.droppedContiguous += dropContiguous(*graph);
    rewriteGroupNorms(graph, counts);
    counts.groupNorms += countKind(*graph, "fastcomposer::group_norm");
    torch::jit::EliminateDeadCode(graph);
  }
  return counts;
}

}  // namespace fc
