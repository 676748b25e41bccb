#include "value_walk.h"

#include <unordered_set>

namespace fc {

bool holdsValues(const c10::IValue& v) { return v.isObject() || v.isList() || v.isTuple() || v.isGenericDict(); }

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

void forEachTensor(const c10::IValue& root, const std::function<void(const at::Tensor&)>& visit) {
  std::vector<c10::IValue> pending{root};
  std::unordered_set<const void*> seen;  // containers and storages done
  while (!pending.empty()) {
    const c10::IValue v = std::move(pending.back());
    pending.pop_back();
    if (v.isTensor()) {
      const at::Tensor& t = v.toTensor();
      if (t.defined() && t.layout() == at::kStrided && t.has_storage() && seen.insert(t.storage().unsafeGetStorageImpl()).second) visit(t);
    } else if (holdsValues(v) && seen.insert(v.internalToPointer()).second) {
      for (c10::IValue& child : childrenOf(v)) pending.push_back(std::move(child));
    }
  }
}

}  // namespace fc
