// How libtorch gets its CPU memory.
//
// c10 can ask Linux for transparent huge pages (2 MB) for every CPU tensor of 2 MB or more, but
// only when THP_MEM_ALLOC_ENABLE=1 is in the environment at its first allocation. Where the kernel
// gives huge pages on request only (transparent_hugepage "madvise", the common default), each
// fresh 4 kB page of a weight or activation otherwise costs a page fault: a full-size SD1.5 load
// took 1.9 M of them, and the system time rivalled the work (docs/PERFORMANCE.md, "Load").
#pragma once

namespace fc {

// Once per process, before libtorch allocates: sets THP_MEM_ALLOC_ENABLE=1 unless the environment
// already sets it (THP_MEM_ALLOC_ENABLE=0 keeps 4 kB pages). Linux only; elsewhere nothing.
void preferHugePagesForLargeTensors();

}  // namespace fc
