#ifndef WAVELANE_ZLIB_SHIM_H
#define WAVELANE_ZLIB_SHIM_H
#include <zlib.h>

// deflateInit2 / inflateInit2 are macros; Swift sees these functions instead.
static inline int wavelane_deflate_init(z_streamp strm, int level, int window_bits, int mem_level, int strategy) {
    return deflateInit2(strm, level, Z_DEFLATED, window_bits, mem_level, strategy);
}
static inline int wavelane_inflate_init(z_streamp strm, int window_bits) {
    return inflateInit2(strm, window_bits);
}
#endif
