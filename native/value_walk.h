// Walks of the values a module holds (objects' attributes, lists, tuples, dicts), without
// recursion: a file decides how deep they nest (module_limits.h).
#pragma once

#include <torch/script.h>

#include <functional>
#include <vector>

namespace fc {

// Whether `v` holds other values: an object, a list, a tuple or a dict.
bool holdsValues(const c10::IValue& v);

// The values `v` holds directly (none for tensors, strings, numbers); a dict's keys and values.
std::vector<c10::IValue> childrenOf(const c10::IValue& v);

// Every dense tensor reachable from `root`, once per storage; each container once.
void forEachTensor(const c10::IValue& root, const std::function<void(const at::Tensor&)>& visit);

}  // namespace fc
