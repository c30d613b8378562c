/* Software prefetch, which Swift has no spelling for. */
static inline void cprefetch_lines_for_reading(const void *start, long bytes) {
    const char *p = (const char *)start;
    for (long offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}
