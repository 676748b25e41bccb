#include "module_limits.h"

#include <torch/csrc/jit/api/function_impl.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "errors.h"
#include "value_walk.h"

namespace fc {
namespace {

[[noreturn]] void refuse(const std::string& file, const std::string& what) {
  throw CodedError("ERR_MODEL", "Refusing to load " + file + ": " + what +
                                    ". The limit is far above anything the exporter writes; it keeps a crafted file from "
                                    "exhausting the stack of the process that reads it");
}

bool isWordChar(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

// Longest chain below each node of a graph given by `childrenOf`, without recursion: a depth-first
// walk with its own stack. Refuses (through `tooDeep` / `cycle`) a chain longer than `limit` or a
// node reached again from inside itself; `tooDeep` is told the key of the chain's second node.
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
        if (static_cast<int>(path.size()) + found->second > limit) tooDeep(path.size() > 1 ? path[1].id : id);
        continue;
      }
      if (static_cast<int>(path.size()) + 1 > limit) tooDeep(path.size() > 1 ? path[1].id : id);
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

void checkRecordSizes(caffe2::serialize::PyTorchStreamReader& reader, uint64_t fileBytes, const std::string& file) {
  auto endsWith = [](const std::string& s, std::string_view end) {
    return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
  };
  for (const std::string& record : reader.getAllRecords()) {
    const size_t bytes = reader.getRecordSize(record);
    if (bytes > fileBytes)
      refuse(file, "its record " + record + " unpacks to " + std::to_string(bytes) + " bytes, more than the whole file holds (" +
                       std::to_string(fileBytes) + ")");
    if (endsWith(record, ".pkl") && !endsWith(record, ".debug_pkl") && bytes > kMaxPickleBytes)
      refuse(file, "its archive " + record + " is " + std::to_string(bytes) + " bytes, more than the " + std::to_string(kMaxPickleBytes) +
                       " this package reads");
    if (record.rfind("code/", 0) == 0 && endsWith(record, ".py") && bytes > kMaxCodeBytes)
      refuse(file, "its code " + record + " is " + std::to_string(bytes) + " bytes, more than the " + std::to_string(kMaxCodeBytes) +
                       " this package reads");
  }
}

void checkPickle(const char* data, size_t size, const std::string& record, const std::string& file) {
  size_t at = 0;
  auto bad = [&](const std::string& what) { refuse(file, "its archive " + record + " " + what + " at byte " + std::to_string(at)); };
  auto need = [&](size_t n) {
    if (size - at < n) bad("ends inside an instruction");
  };
  auto uint = [&](size_t n) {
    need(n);
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(static_cast<unsigned char>(data[at + k])) << (8 * k);
    at += n;
    return v;
  };
  auto line = [&] {
    const void* end = std::memchr(data + at, '\n', size - at);
    if (!end) bad("ends inside a name");
    at = static_cast<size_t>(static_cast<const char*>(end) - data) + 1;
  };
  auto memo = [&](uint64_t index) {
    if (index > size) bad("puts a value at memo index " + std::to_string(index) + ", past the archive's size");
  };
  while (at < size) {
    const auto op = static_cast<unsigned char>(data[at++]);
    switch (op) {
      case '(':
      case ')':
      case ']':
      case '}':
      case 'N':
      case 't':
      case 'a':
      case 'e':
      case 'l':
      case 'd':
      case 's':
      case 'u':
      case 'b':
      case 'R':
      case 'Q':
      case 0x81:
      case 0x85:
      case 0x86:
      case 0x87:
      case 0x88:
      case 0x89:
        break;  // no argument
      case '.':
        return;  // STOP: the unpickler reads no further
      case 0x80:
      case 'K':
      case 'h':
        uint(1);
        break;  // PROTO, BININT1, BINGET
      case 'M':
        uint(2);
        break;  // BININT2
      case 'J':
      case 'j':
        uint(4);
        break;  // BININT, LONG_BINGET
      case 'G':
        uint(8);
        break;  // BINFLOAT
      case 'q':
        memo(uint(1));
        break;  // BINPUT
      case 'r':
        memo(uint(4));
        break;  // LONG_BINPUT
      case 0x8a:
        uint(uint(1));
        break;     // LONG1: a length, then that many bytes
      case 'X': {  // BINUNICODE: a length, then that many bytes
        const uint64_t n = uint(4);
        need(n);
        at += n;
        break;
      }
      case 'c':  // GLOBAL: module and name, a line each
        line();
        line();
        break;
      default:
        --at;
        bad("holds an instruction this package does not read (" + std::to_string(op) + ")");
    }
  }
}

void checkTypeName(const std::string& name, const std::string& file) {
  if (name.size() > kMaxTypeNameBytes)
    refuse(file, "it names a class or type of " + std::to_string(name.size()) + " characters, more than the " +
                     std::to_string(kMaxTypeNameBytes) + " this package reads");
}

void checkCode(const std::string& record, std::string_view code, int& functions, const std::string& file) {
  // A rough tokenizer, enough to bound the parser's recursion; where it cannot tell, it counts
  // more tokens, never fewer. A word or number is one token, a string literal one, any other
  // character one (`->` is two). Whitespace is what TorchScript's lexer takes for it: any
  // isspace() character but the newline, at the start of a line too (`\r` there is indentation,
  // not a line end). A comment counts a token per character: the lexer parses `# type:` comments.
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
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
      while (i + spaces < n && space(code[i + spaces])) ++spaces;
      if (i + spaces == n || code[i + spaces] == '\n') {  // blank: no indentation
        i += spaces + 1;
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
    if (space(c)) {
      ++i;
      continue;
    }
    if (c == '\\' && i + 1 < n && code[i + 1] == '\n') {  // continued line
      i += 2;
      continue;
    }
    if (c == '#') {
      for (; i < n && code[i] != '\n'; ++i)
        if (!space(code[i])) ++tokens;
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
      [&](const void*) {
        refuse(file, "its " + what + " nests values (objects, lists, tuples, dicts) more than " + std::to_string(kMaxValueDepth) + " deep");
      },
      [&] { refuse(file, "its " + what + " holds a value that contains itself"); });
}

void checkStorageSizes(const c10::IValue& root, const std::unordered_map<const void*, size_t>& recordBytes, const std::string& file) {
  forEachTensor(root, [&](const at::Tensor& t) {
    if (t.storage().nbytes() == 0) return;
    auto found = recordBytes.find(t.storage().data_ptr().get());
    const size_t bytes = found == recordBytes.end() ? 0 : found->second;
    if (t.storage().nbytes() > bytes)
      throw CodedError("ERR_MODEL", "Refusing to load " + file + ": a tensor's storage claims " + std::to_string(t.storage().nbytes()) +
                                        " bytes, but its record holds " + std::to_string(bytes) +
                                        " (a damaged or crafted file: reading the storage would run past the record)");
  });
}

void checkCallDepth(const torch::jit::Module& module, const std::string& file) {
  using torch::jit::Block;
  using torch::jit::Function;
  // A function's callees, and each nested block as a level of its own (the inliner and the graph
  // passes recurse into blocks as into calls). From the top: every function the file compiled,
  // so that code only reached through an interface (whose calls are not followed: nothing inlines
  // them) is measured as well.
  struct Item {
    Function* fn = nullptr;
    const Block* block = nullptr;
  };
  std::vector<Function*> all;
  if (auto cu = module._ivalue()->compilation_unit()) all = cu->get_functions();
  for (const torch::jit::Method& method : module.get_methods()) all.push_back(&method.function());
  for (Function* hook : module.type()->getForwardPreHooks()) all.push_back(hook);
  for (Function* hook : module.type()->getForwardHooks()) all.push_back(hook);
  const Item top{};
  auto key = [&](const Item& item) -> const void* {
    if (item.fn) return item.fn;
    return item.block ? static_cast<const void*>(item.block) : static_cast<const void*>(&top);
  };
  auto children = [&](const Item& item) {
    std::vector<Item> out;
    if (!item.fn && !item.block) {
      for (Function* fn : all) out.push_back({fn, nullptr});
      return out;
    }
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
  // The top adds a level of its own.
  checkDepth(
      top, key, children, kMaxCallDepth + 1,
      [&](const void* under) {
        // Under the top: one of `all`, whose key is the function itself.
        const auto* fn = static_cast<const Function*>(under);
        refuse(file, "its function " + fn->qualname().qualifiedName() + " calls functions (or nests blocks) more than " +
                         std::to_string(kMaxCallDepth) + " deep");
      },
      [&] { refuse(file, "its functions call each other in a cycle"); });
}

}  // namespace fc
