// CWavelaneGlibcCompat has no API: glibc_compat.c only defines hidden replacements for glibc
// symbols newer than 2.34 (see there), linked into libwavelane.so. This header exists because
// SwiftPM C targets have a public headers directory.
#ifndef WAVELANE_GLIBC_COMPAT_H
#define WAVELANE_GLIBC_COMPAT_H
#endif
