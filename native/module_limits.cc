#include "module_limits.h"

#include <torch/csrc/jit/api/function_impl.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "errors.h"

namespace fc {
namespace {

[[noreturn]] void refuse(const std::string& file, const std::string& what) {
  throw CodedError("ERR_MODEL", "Refusing to load " + file + ": " + what +
                                    ". The limit is far above anything the exporter writes; it keeps a crafted file from "
                                    "exhausting the stack of the process that reads it");
}

bool isWordChar(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

// The values a value holds directly (none for tensors, strings, numbers). Only these kinds come
// out of an archive (module_loader.cc's unpickler: lists, tuples, dicts, objects).
std::vector<c10::IValue> childrenOf(const c10::IValue& v) {
  std::vector<c10::IValue> out;
  if (v.isObject()) {
    const auto& slots = v.toObjectRef().slots();
    out.assign(slots.begin(), slots.end());
  } else if (v.isList()) {
    for (const c10::IValue& e : v.toListRef()) out.push_back(e);
  } else if (v.isTuple()) {
    const auto& elements = v.toTupleRef().elements();
    out.assign(elements.begin(), elements.end());
  } else if (v.isGenericDict()) {
    for (const auto& entry : v.toGenericDict()) {
      out.push_back(entry.key());
      out.push_back(entry.value());
    }
  }
  return out;
}

bool holdsValues(const c10::IValue& v) { return v.isObject() || v.isList() || v.isTuple() || v.isGenericDict(); }

// Longest chain below each node of a graph given by `childrenOf`, without recursion: a depth-first
// walk with its own stack. Refuses (through `tooDeep` / `cycle`) a chain longer than `limit` or a
// node reached again from inside itself.
template <typename Node, typename Key, typename Children, typename TooDeep, typename Cycle>
void checkDepth(const Node& root, Key key, Children children, int limit, TooDeep tooDeep, Cycle cycle) {
  struct Frame {
    const void* id;
    std::vector<Node> next;
    size_t index = 0;
    int below = 0;  // the longest chain under it found so far
  };
  std::unordered_map<const void*, int> height;  // finished nodes: the longest chain from them down
  std::unordered_set<const void*> onPath;
  std::vector<Frame> path;
  path.push_back({key(root), children(root)});
  onPath.insert(path.back().id);
  while (!path.empty()) {
    Frame& top = path.back();
    if (top.index < top.next.size()) {
      const Node child = top.next[top.index++];
      const void* id = key(child);
      if (!id) continue;
      if (onPath.count(id)) cycle();
      auto found = height.find(id);
      if (found != height.end()) {
        top.below = std::max(top.below, found->second);
        if (static_cast<int>(path.size()) + found->second > limit) tooDeep();
        continue;
      }
      if (static_cast<int>(path.size()) + 1 > limit) tooDeep();
      path.push_back({id, children(child)});
      onPath.insert(id);
      continue;
    }
    const int h = top.below + 1;
    height[top.id] = h;
    onPath.erase(top.id);
    path.pop_back();
    if (!path.empty()) path.back().below = std::max(path.back().below, h);
  }
}

}  // namespace

void checkPickleSize(const std::string& record, size_t bytes, const std::string& file) {
  if (bytes > kMaxPickleBytes)
    refuse(file, "its archive " + record + " is " + std::to_string(bytes) + " bytes, more than the " + std::to_string(kMaxPickleBytes) +
                     " this package reads");
}

void checkCode(const std::string& record, std::string_view code, int& functions, const std::string& file) {
  // A rough tokenizer, enough to bound the parser's recursion: a word or number is one token, a
  // string literal one, any other character one (counting `->` as two only over-counts).
  int tokens = 0;
  int brackets = 0;
  bool lineStart = true;    // at the start of a logical line: its indentation comes next
  bool firstToken = false;  // the next token is the logical line's first
  std::vector<size_t> indents{0};
  size_t i = 0;
  const size_t n = code.size();
  auto endLogicalLine = [&] {
    if (tokens > kMaxStatementTokens)
      refuse(file, "its code " + record + " has a statement of " + std::to_string(tokens) + " tokens, more than the " +
                       std::to_string(kMaxStatementTokens) + " this package reads");
    tokens = 0;
    lineStart = true;
  };
  while (i < n) {
    if (lineStart) {
      size_t spaces = 0;
      while (i + spaces < n && (code[i + spaces] == ' ' || code[i + spaces] == '\t')) ++spaces;
      const char c = i + spaces < n ? code[i + spaces] : '\n';
      if (c == '\n' || c == '\r' || c == '#') {  // blank or comment-only: no indentation
        i += spaces;
        while (i < n && code[i] != '\n') ++i;
        ++i;
        continue;
      }
      if (spaces > indents.back()) {
        indents.push_back(spaces);
        if (static_cast<int>(indents.size()) - 1 > kMaxIndent)
          refuse(file, "its code " + record + " nests blocks more than " + std::to_string(kMaxIndent) + " deep");
      }
      while (spaces < indents.back()) indents.pop_back();
      i += spaces;
      lineStart = false;
      firstToken = true;
      continue;
    }
    const char c = code[i];
    if (c == '\n') {
      ++i;
      if (brackets == 0) endLogicalLine();
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
      continue;
    }
    if (c == '\\' && i + 1 < n && code[i + 1] == '\n') {  // continued line
      i += 2;
      continue;
    }
    if (c == '#') {
      while (i < n && code[i] != '\n') ++i;
      continue;
    }
    ++tokens;
    if (c == '"' || c == '\'') {
      const bool triple = i + 2 < n && code[i + 1] == c && code[i + 2] == c;
      i += triple ? 3 : 1;
      while (i < n) {
        if (code[i] == '\\') {
          i += 2;
        } else if (code[i] == c && (!triple || (i + 2 < n && code[i + 1] == c && code[i + 2] == c))) {
          i += triple ? 3 : 1;
          break;
        } else {
          ++i;
        }
      }
    } else if (isWordChar(c)) {
      const size_t start = i;
      while (i < n && isWordChar(code[i])) ++i;
      if (firstToken && code.substr(start, i - start) == "def" && ++functions > kMaxFunctions)
        refuse(file, "its code defines more than " + std::to_string(kMaxFunctions) + " functions");
    } else {
      if (c == '(' || c == '[' || c == '{') ++brackets;
      if ((c == ')' || c == ']' || c == '}') && brackets > 0) --brackets;
      ++i;
    }
    firstToken = false;
  }
  endLogicalLine();
}

void checkValueNesting(const c10::IValue& root, const std::string& what, const std::string& file) {
  if (!holdsValues(root)) return;
  checkDepth(
      root, [](const c10::IValue& v) -> const void* { return holdsValues(v) ? v.internalToPointer() : nullptr; }, childrenOf,
      kMaxValueDepth,
      [&] {
        refuse(file, "its " + what + " nests values (objects, lists, tuples, dicts) more than " + std::to_string(kMaxValueDepth) + " deep");
      },
      [&] { refuse(file, "its " + what + " holds a value that contains itself"); });
}

void checkCallDepth(const torch::jit::Module& module, const std::string& file) {
  using torch::jit::Block;
  using torch::jit::Function;
  // A function's callees, and each nested block as a level of its own (the inliner and the graph
  // passes recurse into blocks as into calls).
  struct Item {
    Function* fn = nullptr;
    const Block* block = nullptr;
  };
  auto key = [](const Item& item) -> const void* { return item.fn ? static_cast<const void*>(item.fn) : item.block; };
  auto children = [](const Item& item) {
    std::vector<Item> out;
    const Block* block = item.block;
    if (item.fn) {
      torch::jit::GraphFunction* graphFn = torch::jit::tryToGraphFunction(*item.fn);
      if (!graphFn) return out;
      block = graphFn->graph()->block();
    }
    for (const torch::jit::Node* node : block->nodes()) {
      for (const Block* inner : node->blocks()) out.push_back({nullptr, inner});
      if (node->kind() == c10::prim::CallFunction) {
        if (auto type = node->inputs().at(0)->type()->cast<c10::FunctionType>()) out.push_back({type->function(), nullptr});
      } else if (node->kind() == c10::prim::CallMethod) {
        if (auto cls = node->inputs().at(0)->type()->cast<c10::ClassType>())
          if (Function* method = cls->findMethod(node->s(c10::attr::name))) out.push_back({method, nullptr});
      }
    }
    return out;
  };
  auto check = [&](Function* fn) {
    checkDepth(
        Item{fn, nullptr}, key, children, kMaxCallDepth,
        [&] {
          refuse(file, "its function " + fn->qualname().qualifiedName() + " calls functions (or nests blocks) more than " +
                           std::to_string(kMaxCallDepth) + " deep");
        },
        [&] { refuse(file, "its function " + fn->qualname().qualifiedName() + " calls itself"); });
  };
  for (const torch::jit::Method& method : module.get_methods()) check(&method.function());
  for (Function* hook : module.type()->getForwardPreHooks()) check(hook);
  for (Function* hook : module.type()->getForwardHooks()) check(hook);
}

}  // namespace fc
