// The CUDA dialect of the shared kernel bodies (see ssd_scan.h), for mx.fast.cuda_kernel.
#define MEQG_FN static __device__ __forceinline__
#define MEQG_IN const float* __restrict__
#define MEQG_OUT float*
#define MEQG_LOAD(p) (*(p))
#define MEQG_STORE(p, v) (*(p) = (v))
#define MEQG_ADD(p, v) atomicAdd((p), (v))
#define MEQG_FLOAT_FROM_BITS(i) __int_as_float(i)
