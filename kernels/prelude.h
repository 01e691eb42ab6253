/* One kernel source for CUDA (nvcc, NVRTC through CuPy) and OpenCL C 1.2 (PoCL in the tests, where no
 * GPU is): the qualifiers, indices and integer names each kernel uses, spelled once per runtime. The
 * CUDA spelling also compiles as C++ on the CPU under tests/cuda_emulator.h. */
#ifndef ARTEM_PRELUDE_H
#define ARTEM_PRELUDE_H

#ifdef __OPENCL_VERSION__
typedef uint u32;
typedef uchar u8;
#define KERNEL __kernel
#define GLOBAL __global
#define LOCAL __local
#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
#define GLOBAL_ID_X ((int)get_global_id(0))
#define GROUP_ID_X ((int)get_group_id(0))
#define GROUP_ID_Y ((int)get_group_id(1))
#define LOCAL_ID_X ((int)get_local_id(0))
#define POPC(v) ((int)popcount((u32)(v)))
#define MUL(a, b) ((a) * (b)) /* a file that needs it unfused says `#pragma OPENCL FP_CONTRACT OFF` */
#define SQRT(x) sqrt(x) /* float32's, correctly rounded when built with -cl-fp32-correctly-rounded-divide-sqrt */
#else
typedef unsigned int u32;
typedef unsigned char u8;
#define KERNEL extern "C" __global__
#define GLOBAL
#define LOCAL __shared__
#define BARRIER() __syncthreads()
#define GLOBAL_ID_X ((int)(blockIdx.x * blockDim.x + threadIdx.x))
#define GROUP_ID_X ((int)blockIdx.x)
#define GROUP_ID_Y ((int)blockIdx.y)
#define LOCAL_ID_X ((int)threadIdx.x)
#define POPC(v) __popc(v)
#define MUL(a, b) __fmul_rn((a), (b)) /* rounded on its own, never fused into an add (an FMA rounds once) */
#define SQRT(x) sqrtf(x) /* float32's (C++'s sqrt of a float may be double's), correctly rounded but under -use_fast_math */
#endif

/* Binary tensor cores (sm_80 and later), and what the kernels use of them: the one instruction
 * d += Σ popcount(a AND b) over a 16 x 256 by 256 x 8 bit product (mma.m16n8k256 .and.popc), each
 * lane holding its fragments of a, b and d as the PTX ISA lays them out; and copies from global to
 * shared memory that bypass registers (cp.async): copy_async<SIZE>(dst, src, valid) of 4 or 16
 * bytes (zeros where !valid, src then unread), in flight until copy_async_wait<n>() leaves at most n of the groups closed by
 * copy_async_commit() pending. tests/cuda_emulator.h gives the same functions on the CPU
 * (ARTEM_EMULATOR), with the same layout and the same deferred copies, for the tests. */
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

template <int SIZE> __device__ __forceinline__ void copy_async(u32* dst, const u32* src, bool valid)
{
    unsigned shared, bytes = valid ? SIZE : 0;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(shared) : "l"(dst));
    if (SIZE == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared), "l"(src), "r"(bytes) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared), "l"(src), "r"(bytes) : "memory");
}

__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int PENDING> __device__ __forceinline__ void copy_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}
#endif

#endif
