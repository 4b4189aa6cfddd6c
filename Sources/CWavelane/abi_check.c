// The C ABI's header lives in include/wavelane.h (this target's public headers, also linked from
// the repository's top-level include/). This file only pins the event layout the bindings rely on.
#include "wavelane.h"
_Static_assert(sizeof(wl_event) == 32, "wl_event layout changed: bump WL_ABI_VERSION");
