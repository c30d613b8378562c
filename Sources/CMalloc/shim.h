#include <malloc.h>

/* glibc's allocator tuning; the M_ constants are macros, so they are passed through here. */
static inline void cmalloc_keep_large_blocks_in_heap(int bytes) {
    mallopt(M_MMAP_THRESHOLD, bytes);
    mallopt(M_TRIM_THRESHOLD, bytes);
}
