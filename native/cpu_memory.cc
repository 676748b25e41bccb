#include "cpu_memory.h"

#include <cstdlib>

namespace fc {

void preferHugePagesForLargeTensors() {
#ifdef __linux__
  // setenv with overwrite 0: the user's own value wins. c10 reads the variable once, at the first
  // CPU allocation; the addon is initialised before any (the module loads come later).
  ::setenv("THP_MEM_ALLOC_ENABLE", "1", 0);
#endif
}

}  // namespace fc
