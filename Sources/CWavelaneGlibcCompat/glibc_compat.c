// glibc compatibility for the manylinux wheel: libwavelane.so is linked on this machine's glibc
// (2.36) with the Swift runtime, libstdc++ and libgcc linked statically. Those archives reference
// three symbols newer than glibc 2.34; defining them here (hidden: they never leave the library)
// lets the library load on glibc 2.34 (RHEL 9, Ubuntu 22.04, Debian 12 ...). The floor stays
// 2.34 because glibc 2.34 moved pthread_* and dl* into libc.so.6 and every object linked here
// binds them to their GLIBC_2.34 versions.
//
//   arc4random        (GLIBC_2.36)  getrandom(2), falling back to /dev/urandom; aborts rather
//                                   than returning weak randomness.
//   hypotf            (GLIBC_2.35)  the older hypotf@GLIBC_2.2.5 of the same libm (2.35 only
//                                   replaced the implementation).
//   _dl_find_object   (GLIBC_2.35)  libgcc's unwinder (static libgcc_eh) looks up the eh_frame
//                                   of a PC with it; dl_iterate_phdr gives the same answer (what
//                                   libgcc itself used before glibc 2.35).
#if defined(__linux__)
#define _GNU_SOURCE 1
#include <features.h>
#endif
#if defined(__linux__) && defined(__GLIBC__) && defined(__x86_64__)
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define WL_HIDDEN __attribute__((visibility("hidden")))

static void wl_random_bytes(void *buf, size_t len) {
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    if (len == 0) return;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && len > 0) {
        ssize_t n = read(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (!(n < 0 && errno == EINTR)) {
            break;
        }
    }
    if (fd >= 0) close(fd);
    if (len != 0) abort();  // arc4random cannot fail
}

WL_HIDDEN uint32_t arc4random(void) {
    uint32_t v;
    wl_random_bytes(&v, sizeof v);
    return v;
}

WL_HIDDEN void arc4random_buf(void *buf, size_t n) { wl_random_bytes(buf, n); }

WL_HIDDEN uint32_t arc4random_uniform(uint32_t upper) {
    if (upper < 2) return 0;
    uint32_t min = -upper % upper;  // reject the low values that would bias the modulo
    for (;;) {
        uint32_t r = arc4random();
        if (r >= min) return r % upper;
    }
}

extern float wl_hypotf_2_2_5(float, float);
__asm__(".symver wl_hypotf_2_2_5, hypotf@GLIBC_2.2.5");
WL_HIDDEN float hypotf(float x, float y) { return wl_hypotf_2_2_5(x, y); }

struct wl_find { uintptr_t pc; struct dl_find_object *out; };

static int wl_find_phdr(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct wl_find *f = data;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    const void *eh = NULL;
    int inside = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD) {
            uintptr_t end = start + ph->p_memsz;
            if (start < lo) lo = start;
            if (end > hi) hi = end;
            if (f->pc >= start && f->pc < end) inside = 1;
        } else if (ph->p_type == PT_GNU_EH_FRAME) {
            eh = (const void *)start;
        }
    }
    if (!inside) return 0;
    memset(f->out, 0, sizeof *f->out);
    f->out->dlfo_map_start = (void *)lo;
    f->out->dlfo_map_end = (void *)hi;
    f->out->dlfo_eh_frame = (void *)eh;
    return 1;
}

WL_HIDDEN int _dl_find_object(void *pc, struct dl_find_object *result) {
    struct wl_find f = { (uintptr_t)pc, result };
    return dl_iterate_phdr(wl_find_phdr, &f) == 1 ? 0 : -1;
}
#endif
