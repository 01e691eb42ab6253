/* One kernel source for CUDA (nvcc, NVRTC through CuPy) and OpenCL C 1.2 (PoCL in the tests, where no
 * GPU is): the qualifiers, indices and integer names each kernel uses, spelled once per runtime. The
 * CUDA spelling also compiles as C++ on the CPU under tests/cuda_emulator.h. */
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

/* Binary tensor cores (sm_80 and later), and their one instruction the kernels use:
 * d += Σ popcount(a AND b) over a 16 x 256 by 256 x 8 bit product (mma.m16n8k256 .and.popc), each
 * lane holding its fragments of a, b and d as the PTX ISA lays them out. tests/cuda_emulator.h gives
 * the same function on the CPU (ARTEM_EMULATOR), with the same layout, for the tests. */
#if defined(ARTEM_EMULATOR)
#define BINARY_MMA 1
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define BINARY_MMA 1
__device__ __forceinline__ void mma_and_popc(int (&d)[4], const u32 (&a)[4], const u32 (&b)[2])
{
    asm volatile("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

#endif
