/* One kernel source for CUDA (nvcc, NVRTC through CuPy) and OpenCL C 1.2 (PoCL in the tests, where no
 * GPU is): the qualifiers, indices and integer names each kernel uses, spelled once per runtime. */
#ifndef ARTEM_PRELUDE_H
#define ARTEM_PRELUDE_H

#ifdef __OPENCL_VERSION__
typedef uint u32;
#define KERNEL __kernel
#define GLOBAL __global
#define LOCAL __local
#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
#define GLOBAL_ID_X ((int)get_global_id(0))
#define GROUP_ID_X ((int)get_group_id(0))
#define GROUP_ID_Y ((int)get_group_id(1))
#define LOCAL_ID_X ((int)get_local_id(0))
#define POPC(v) ((int)popcount((u32)(v)))
#else
typedef unsigned int u32;
#define KERNEL extern "C" __global__
#define GLOBAL
#define LOCAL __shared__
#define BARRIER() __syncthreads()
#define GLOBAL_ID_X ((int)(blockIdx.x * blockDim.x + threadIdx.x))
#define GROUP_ID_X ((int)blockIdx.x)
#define GROUP_ID_Y ((int)blockIdx.y)
#define LOCAL_ID_X ((int)threadIdx.x)
#define POPC(v) __popc(v)
#endif

#endif
