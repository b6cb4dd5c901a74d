// The Metal dialect of the shared kernel bodies (see ssd_scan.h), for mx.fast.metal_kernel.
// Kernels whose rows add into shared elements are built with atomic_outputs=True: every
// output is then a device atomic<float>*, read and written with relaxed atomics.
#ifdef MEQG_ATOMIC_OUTPUTS
#define MEQG_OUT device atomic<float>*
#define MEQG_LOAD(p) atomic_load_explicit((p), memory_order_relaxed)
#define MEQG_STORE(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define MEQG_ADD(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#else
#define MEQG_OUT device float*
#define MEQG_LOAD(p) (*(p))
#define MEQG_STORE(p, v) (*(p) = (v))
#define MEQG_ADD(p, v) (*(p) += (v))
#endif
#define MEQG_FN static inline
#define MEQG_IN const device float*
#define MEQG_FLOAT_FROM_BITS(i) as_type<float>(int(i))
