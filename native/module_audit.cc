#include "module_audit.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <map>
#include <set>
#include <unordered_set>

#include "errors.h"

namespace fc {
namespace {

using torch::jit::Block;
using torch::jit::Function;
using torch::jit::Graph;
using torch::jit::Node;

// ---------------------------------------------------------------------------------------------
// The list. An operator (a graph node's kind, `namespace::name`) runs when its namespace is one
// of the families below and neither it nor its namespace is refused. Everything else refuses the
// file. What the exporter emits today (tiny, golden and full-size exports alike): about forty
// aten:: operators (convolution, linear, attention, norms, activations, reshapes, indexing,
// upsampling) and seven prim:: kinds (Constant, GetAttr, List/Tuple Construct/Unpack,
// NumToTensor); the families are wider so that another torch's tracer, which may pick other
// aten:: overloads, still passes.
//
//  aten::         tensor math, neural-network layers, and TorchScript's built-in number, string,
//                 list and dict operations: each computes its outputs from its inputs. The few
//                 that reach further are refused by name below, and so is any aten:: operator
//                 libtorch itself declares to have side effects (Node::hasSideEffects).
//  prim::         only kPrimAllowed: constants, attribute reads, containers, control flow, type
//                 refinements, tensor metadata and raising an exception. The rest of prim:: is
//                 interpreter machinery (threads, Python calls, profiling, setting attributes)
//                 that no export needs.
//  fastcomposer:: our own operators (group_norm_op.cc), which graph_passes.cc puts in at load
//                 after this audit; a file may carry them too.
// ---------------------------------------------------------------------------------------------

const std::set<std::string> kPrimAllowed = {
    // values and module attributes (weights, submodules)
    "prim::Constant",
    "prim::GetAttr",
    // containers
    "prim::ListConstruct",
    "prim::ListUnpack",
    "prim::TupleConstruct",
    "prim::TupleUnpack",
    "prim::TupleIndex",
    "prim::DictConstruct",
    // control flow (their blocks are inspected too) and raising an error, which only stops the call
    "prim::If",
    "prim::Loop",
    "prim::RaiseException",
    // type refinements, the compiler's placeholders
    "prim::unchecked_cast",
    "prim::unchecked_unwrap_optional",
    "prim::isinstance",
    "prim::Uninitialized",
    // tensor metadata and scalar helpers
    "prim::NumToTensor",
    "prim::device",
    "prim::dtype",
    "prim::layout",
    "prim::is_cuda",
    "prim::is_cpu",
    "prim::requires_grad",
    "prim::min",
    "prim::max",
    "prim::abs",
    // calls: the callee must be TorchScript of this file, which is inspected in its own right
    // (checkCall); after inlining, only calls through an interface remain
    "prim::CallMethod",
    "prim::CallFunction",
};

// Refused by name, with the reason the error gives. Each reaches beyond the values it returns.
const std::map<std::string, std::string> kRefused = {
    // files
    {"aten::save", "writes a file"},
    {"aten::from_file", "reads (memory-maps) a file"},
    // the terminal
    {"prim::Print", "prints to the terminal"},
    {"aten::_print", "prints to the terminal"},
    {"aten::warn", "writes a warning to the terminal"},
    // other threads: work that outlives the call, off the device's job thread
    {"prim::fork", "runs code on another thread"},
    {"aten::wait", "waits for code running on another thread"},
    {"prim::awaitable", "defers code to run later"},
    {"prim::awaitable_nowait", "defers code to run later"},
    {"prim::awaitable_wait", "runs deferred code"},
    // other processes and the network (torch.distributed.rpc)
    {"prim::rpc_async", "calls another process over the network"},
    {"prim::rpc_sync", "calls another process over the network"},
    {"prim::rpc_remote", "calls another process over the network"},
    {"aten::to_here", "fetches a value from another process over the network"},
    {"aten::local_value", "reads a distributed reference"},
    {"aten::owner", "reads a distributed reference"},
    {"aten::owner_name", "reads a distributed reference"},
    {"aten::is_owner", "reads a distributed reference"},
    {"aten::confirmed_by_owner", "reads a distributed reference"},
    // Python (not loadable without Python, refused all the same)
    {"prim::PythonOp", "calls Python"},
    {"prim::IgnoredPythonOp", "calls Python"},
    // process-wide state other code depends on
    {"aten::manual_seed", "reseeds the process's random generator"},
    {"aten::seed", "reseeds a random generator from the operating system"},
    {"aten::set_grad_enabled", "switches autograd on or off for the whole thread"},
    {"aten::backward", "runs autograd and writes gradients into the weights"},
    {"aten::_cufft_set_plan_cache_max_size", "changes a process-wide CUDA setting"},
    {"aten::_cufft_clear_plan_cache", "changes a process-wide CUDA setting"},
    // profiling
    {"prim::AddStatValue", "records profiler statistics"},
    {"prim::TimePoint", "reads the clock for the profiler"},
    // the module's own state, and objects made while running
    {"prim::SetAttr", "changes the module's state from one call to the next"},
    {"prim::CreateObject", "makes an object while running"},
    {"prim::Enter", "calls a context manager"},
    {"prim::Exit", "calls a context manager"},
};

// Namespaces refused as a whole.
const std::map<std::string, std::string> kRefusedNamespaces = {
    {"profiler", "drives the profiler (records and writes traces)"},
    {"c10d", "communicates with other processes (torch.distributed)"},
    {"_c10d_functional", "communicates with other processes (torch.distributed)"},
    {"_c10d_functional_autograd", "communicates with other processes (torch.distributed)"},
    {"_dtensor", "communicates with other processes (torch.distributed)"},
    {"symm_mem", "shares memory with other processes (torch.distributed)"},
    {"cuda", "changes the process's CUDA devices and streams"},
    {"debugprims", "reads tensors from files (a debugging aid)"},
};

const char* kOutsideFamilies = "is outside the operator families fastcomposer's exporter emits (aten, prim, fastcomposer)";
const char* kTorchBindPrefix = "__torch__.torch.classes.";

std::string namespaceOf(const std::string& kind) { return kind.substr(0, kind.find("::")); }

// Why `node` may not run, or nullopt when it may.
std::optional<std::string> refusal(const Node* node) {
  const std::string kind = node->kind().toQualString();
  if (auto it = kRefused.find(kind); it != kRefused.end()) return it->second;
  const std::string ns = namespaceOf(kind);
  if (auto it = kRefusedNamespaces.find(ns); it != kRefusedNamespaces.end()) return it->second;
  if (ns == "fastcomposer") return std::nullopt;
  if (ns == "prim") {
    if (kPrimAllowed.count(kind)) return std::nullopt;
    return std::string("is TorchScript interpreter machinery that no export uses");
  }
  if (ns == "aten") {
    bool sideEffects = true;
    try {
      sideEffects = node->hasSideEffects();
    } catch (...) {
      // An operator libtorch cannot classify is refused all the same.
    }
    if (sideEffects) return std::string("is declared by libtorch to have side effects");
    return std::nullopt;
  }
  return std::string(kOutsideFamilies);
}

std::string where(const Function& fn, const Node* node) {
  std::string at = fn.qualname().qualifiedName();
  if (auto loc = node->sourceRange().file_line_col()) at += " (" + std::get<0>(*loc) + ":" + std::to_string(std::get<1>(*loc)) + ")";
  return at;
}

bool isTorchBind(const std::string& name) { return name.rfind(kTorchBindPrefix, 0) == 0; }

class Auditor {
 public:
  explicit Auditor(std::string file) : file_(std::move(file)) {}

  // Queues every method (and hook) of a class for inspection.
  void addClass(const c10::ClassTypePtr& cls) {
    if (!cls || !classes_.insert(cls.get()).second) return;
    const std::string name = cls->name() ? cls->name()->qualifiedName() : "(unnamed class)";
    if (isTorchBind(name)) refuse("the class " + name, "is a C++ class (TorchBind) whose methods are native code");
    for (Function* fn : cls->methods()) add(fn);
    for (Function* fn : cls->getForwardHooks()) add(fn);
    for (Function* fn : cls->getForwardPreHooks()) add(fn);
  }

  void add(Function* fn) {
    if (fn && queued_.insert(fn).second) pending_.push_back(fn);
  }

  // Classes of the objects the module holds, however deep (modules, scripted classes, lists of them).
  void addValue(const c10::IValue& value) {
    if (value.isObject()) {
      const auto& obj = value.toObjectRef();
      if (!objects_.insert(&obj).second) return;
      addClass(obj.type());
      for (const c10::IValue& slot : obj.slots()) addValue(slot);
    } else if (value.isList()) {
      for (const c10::IValue& v : value.toListRef()) addValue(v);
    } else if (value.isTuple()) {
      for (const c10::IValue& v : value.toTupleRef().elements()) addValue(v);
    } else if (value.isGenericDict()) {
      for (const auto& entry : value.toGenericDict()) {
        addValue(entry.key());
        addValue(entry.value());
      }
    } else if (value.isCapsule() || value.isFuture() || value.isRRef() || value.isAwait()) {
      refuse("an attribute", "holds a native handle (capsule, future or distributed reference)");
    }
  }

  // Inspects each queued function's own graph, until none is left (compiling one may queue more).
  void drain() {
    while (!pending_.empty()) {
      Function* fn = pending_.back();
      pending_.pop_back();
      torch::jit::GraphFunction* graphFn = torch::jit::tryToGraphFunction(*fn);
      if (!graphFn) refuse(fn->qualname().qualifiedName(), "is native code, not TorchScript");
      walk(*graphFn->graph()->block(), *fn);
    }
  }

  // The same, with every call inlined: what the function runs, whatever defines it.
  void inlined(Function& fn) {
    torch::jit::GraphFunction* graphFn = torch::jit::tryToGraphFunction(fn);
    if (!graphFn) refuse(fn.qualname().qualifiedName(), "is native code, not TorchScript");
    std::shared_ptr<Graph> graph = graphFn->graph()->copy();
    torch::jit::Inline(*graph);
    walk(*graph->block(), fn);
    drain();
  }

  std::vector<std::string> operators() const { return {operators_.begin(), operators_.end()}; }

 private:
  [[noreturn]] void refuse(const std::string& what, const std::string& why) const {
    throw CodedError("ERR_MODEL", refusalMessage(file_, what + " " + why));
  }

  void walk(const Block& block, const Function& fn) {
    for (const Node* node : block.nodes()) {
      operators_.insert(node->kind().toQualString());
      if (auto why = refusal(node)) refuse("the code of " + where(fn, node) + " calls " + node->kind().toQualString() + ", which", *why);
      const c10::Symbol kind = node->kind();
      if (kind == c10::prim::CallMethod || kind == c10::prim::CallFunction) checkCall(node, fn);
      for (const Block* inner : node->blocks()) walk(*inner, fn);
      for (const c10::Symbol& name : node->attributeNames()) {
        if (node->kindOf(name) == torch::jit::AttributeKind::g) walk(*node->g(name)->block(), fn);
        if (node->kindOf(name) == torch::jit::AttributeKind::gs)
          for (const auto& g : node->gs(name)) walk(*g->block(), fn);
      }
    }
  }

  // A call runs TorchScript of this file, queued for inspection; a call whose target is not
  // known before it runs is allowed only through an interface, whose implementations are the
  // classes this file loaded (all queued by addValue).
  void checkCall(const Node* node, const Function& fn) {
    const c10::TypePtr target = node->inputs().at(0)->type();
    if (node->kind() == c10::prim::CallFunction) {
      auto function = target->cast<c10::FunctionType>();
      if (!function) refuse("the code of " + where(fn, node), "calls a function that is not known before it runs");
      add(function->function());
      return;
    }
    if (target->cast<c10::InterfaceType>()) return;
    auto cls = target->cast<c10::ClassType>();
    if (!cls) refuse("the code of " + where(fn, node), "calls a method of a value that is not a class");
    addClass(cls);
  }

  std::string file_;
  std::unordered_set<const c10::ClassType*> classes_;
  std::unordered_set<const c10::ivalue::Object*> objects_;
  std::unordered_set<Function*> queued_;
  std::vector<Function*> pending_;
  std::set<std::string> operators_;
};

}  // namespace

std::string refusalMessage(const std::string& file, const std::string& what) {
  return "Refusing to load " + file + ": " + what +
         ". A model directory is code; fastcomposer runs only the operators its exporter emits (tensor math and "
         "neural-network operators, control flow and containers, its own fastcomposer:: operators). Re-export the "
         "model from weights you trust with `npx fastcomposer export`.";
}

void checkLoadableClass(const std::string& qualifiedName, const std::string& file) {
  if (isTorchBind(qualifiedName))
    throw CodedError("ERR_MODEL", refusalMessage(file, "it holds an object of the C++ class " + qualifiedName +
                                                           " (TorchBind), whose loading runs native code"));
}

std::vector<std::string> auditModule(const torch::jit::Module& module, const std::string& file) {
  Auditor auditor(file);
  // Everything the file compiled: every method of every class, free functions, hooks.
  if (auto cu = module._ivalue()->compilation_unit())
    for (Function* fn : cu->get_functions()) auditor.add(fn);
  auditor.addValue(module._ivalue());
  auditor.drain();
  // What the entry points run, calls inlined (graph_passes.cc and the executor see this form).
  for (const torch::jit::Method& method : module.get_methods()) auditor.inlined(method.function());
  for (Function* hook : module.type()->getForwardPreHooks()) auditor.inlined(*hook);
  for (Function* hook : module.type()->getForwardHooks()) auditor.inlined(*hook);
  return auditor.operators();
}

}  // namespace fc
