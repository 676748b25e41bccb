#include "graph_passes.h"

#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/subgraph_rewrite.h>

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

void rewriteGroupNorms(std::shared_ptr<Graph>& graph, GraphPassCounts& counts) {
  // The silu pattern first, so that a group norm followed by silu becomes one call.
  torch::jit::SubgraphRewriter rewriter;
  rewriter.RegisterRewritePattern(R"IR(
graph(%x, %groups, %weight, %bias, %eps, %cudnn):
  %y = aten::group_norm(%x, %groups, %weight, %bias, %eps, %cudnn)
  %z = aten::silu(%y)
  return (%z))IR",
                                  R"IR(
graph(%x, %groups, %weight, %bias, %eps, %cudnn):
  %silu : bool = prim::Constant[value=1]()
  %z = fastcomposer::group_norm(%x, %groups, %weight, %bias, %eps, %cudnn, %silu)
  return (%z))IR");
  rewriter.runOnGraph(graph);
  counts.fusedSilus += countKind(*graph, "fastcomposer::group_norm");
  torch::jit::SubgraphRewriter plain;
  plain.RegisterRewritePattern(R"IR(
graph(%x, %groups, %weight, %bias, %eps, %cudnn):
  %y = aten::group_norm(%x, %groups, %weight, %bias, %eps, %cudnn)
  return (%y))IR",
                               R"IR(
graph(%x, %groups, %weight, %bias, %eps, %cudnn):
  %silu : bool = prim::Constant[value=0]()
  %y = fastcomposer::group_norm(%x, %groups, %weight, %bias, %eps, %cudnn, %silu)
  return (%y))IR");
  plain.runOnGraph(graph);
}

int dropContiguous(Graph& graph) {
  const auto contiguous = c10::Symbol::fromQualString("aten::contiguous");
  std::vector<Node*> found;
  for (Node* node : graph.nodes())
    if (node->kind() == contiguous) found.push_back(node);
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
