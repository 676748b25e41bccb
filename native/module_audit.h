// What a model file may run. A model directory is code: TorchScript can read and write files,
// print, start threads and change process-wide state, and people share model folders the way
// they share checkpoints. Before anything of a module runs (the warm-up, a graph pass, a
// generate), every function it carries is inspected here, and one operator outside the families
// the exporter emits, or one whose effects reach beyond its return value, refuses the file.
// module_loader.h makes sure that reading the file runs nothing either.
#pragma once

#include <torch/script.h>

#include <string>
#include <vector>

namespace fc {

// Inspects every function of `module`'s code: each method of each class it loaded (modules and
// submodules, scripted classes held as attributes, forward hooks and pre-hooks, and any function
// they call), one by one and, for the top-level methods, with every call inlined. Returns the
// distinct operators used, sorted. Throws CodedError("ERR_MODEL") naming `file`, the function,
// the operator and why it is refused.
std::vector<std::string> auditModule(const torch::jit::Module& module, const std::string& file);

// Throws CodedError("ERR_MODEL") when a class of this name may not be loaded from `file`: C++
// classes (TorchBind, `__torch__.torch.classes.*`), whose pickled state runs native code as the
// file is read. Called by module_loader.cc for every class the file names.
void checkLoadableClass(const std::string& qualifiedName, const std::string& file);

// The message of every refusal: the file, what is refused, why, and what to do.
std::string refusalMessage(const std::string& file, const std::string& what);

}  // namespace fc
