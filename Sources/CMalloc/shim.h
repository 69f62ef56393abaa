#ifndef CMALLOC_SHIM_H
#define CMALLOC_SHIM_H
/* glibc's allocator settings (mallopt); part of libc, no library to link. */
#include <malloc.h>
#endif
