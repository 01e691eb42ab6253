/* CUDA's dialect of the kernels in kernels/ on the CPU, for the tests: what the kernels use of CUDA,
 * in C++.
 *
 * A kernel whose threads never wait for each other (ARTEM_INDEPENDENT_THREADS) runs each as a plain call.
 * Otherwise a launch runs its blocks one after another; a block's threads are fibers (ucontext) taking turns on
 * one OS thread, each running until it waits at a barrier: __syncthreads() for the block, and the
 * warp-wide mma_and_popc, __ballot_sync and __shfl_xor_sync, whose 32 lanes hand in their fragments
 * or values, wait for each other, and each read back its share. One warp runs as far as it can before the next gets a turn (the
 * first warp first, or the last), so that warps drift apart as far as the barriers let them, as they
 * may on a GPU. So code that only the binary tensor cores run (mma.m16n8k256 .and.popc) is held to
 * its NumPy twins bit for bit on machines without a GPU, and a missing barrier shows.
 *
 * Fragment layout (PTX ISA, mma.m16n8k256 .b1, lane = 4g + q), the one xnor_conv_mma.cu was written to
 * and matched its twins with on an H200: a[r] is row g + 8 (r % 2) at word q + 4 (r / 2) of the
 * 256-bit step; b[r] is column g at word q + 4 r; d[r] is row g + 8 (r / 2), column 2q + r % 2.
 *
 * copy_async (cp.async) lands at its issue or at the copy_async_wait that covers it, the earliest and
 * the latest a GPU may land it, as the caller asks; one not aligned to its size ends the launch (the
 * GPU would fault).
 *
 * A block whose threads do not all reach the same barriers (a deadlock on a GPU) and __trap() end the
 * launch with an error; __shared__ arrays are static, so they live across blocks, which the kernels
 * must not rely on (compute-sanitizer's initcheck on a GPU would say so). */
#ifndef ARTEM_CUDA_EMULATOR_H
#define ARTEM_CUDA_EMULATOR_H

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#define ARTEM_EMULATOR 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct uint2 {
    unsigned x, y;
};

struct emu_dim3 {
    unsigned x, y, z;
};
static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline float __fmul_rn(float a, float b) { return a * b; }

namespace emu {

enum Result { OK = 0, DEADLOCK = 1, TRAP = 2, BAD_LAUNCH = 3, MISALIGNED = 4 };

#ifdef ARTEM_INDEPENDENT_THREADS
/* A kernel whose threads never wait for each other (no barrier, no warp-wide function, no shared memory,
 * no asynchronous copy, no __trap: without them it does not compile here): every thread of the grid is
 * a plain call, one after another, the first block's first thread first, or the last block's last
 * (last_first); a result that depends on the order is a race between threads. No fibers: a launch
 * of a million threads takes a fraction of a second. */
inline Result launch(unsigned grid_x, unsigned grid_y, unsigned threads, bool last_first, const std::function<void()>& kernel)
{
    if (threads == 0 || threads % 32 != 0 || threads > 1024) return BAD_LAUNCH;
    gridDim = {grid_x, grid_y, 1};
    blockDim = {threads, 1, 1};
    unsigned long blocks = (unsigned long)grid_x * grid_y;
    for (unsigned long b = 0; b < blocks; ++b) {
        unsigned long block = last_first ? blocks - 1 - b : b;
        blockIdx = {(unsigned)(block % grid_x), (unsigned)(block / grid_x), 0};
        for (unsigned t = 0; t < threads; ++t) {
            threadIdx = {last_first ? threads - 1 - t : t, 0, 0};
            kernel();
        }
    }
    return OK;
}
#else
struct Copy {
    void* dst;
    const void* src;
    int size;
    bool valid;
};

struct Fiber {
    ucontext_t context;
    int thread;
    bool done;
    std::vector<Copy> open;                /* copy_async since the last commit */
    std::vector<std::vector<Copy>> groups; /* committed, not yet waited for, oldest first */
};

struct Barrier {
    int arrived = 0;
    long generation = 0;
};

struct Fragments { /* what each lane of a warp hands in to one mma */
    unsigned a[32][4], b[32][2];
    int d[32][4];
};

struct Lanes { /* what each lane of a warp hands in to one vote or shuffle */
    bool votes[32];
    float values[32];
};

static ucontext_t scheduler;
static Fiber* current;
static long progress; /* barriers released and threads finished: turns without either are a deadlock */
static bool trapped;
static Barrier block_barrier;
static std::vector<Barrier> warp_barriers;
static std::vector<Fragments> warp_fragments;
static std::vector<Lanes> warp_lanes;
static const std::function<void()>* body;
static bool eager_copies; /* copy_async lands at its issue, else at its wait */
static bool misaligned;   /* a copy_async not aligned to its size: ends the launch like __trap() */

inline void land(const Copy& c)
{
    if (c.valid)
        std::memcpy(c.dst, c.src, c.size);
    else
        std::memset(c.dst, 0, c.size);
}

inline void yield()
{
    swapcontext(&current->context, &scheduler);
}

inline void wait(Barrier& barrier, int parties)
{
    long generation = barrier.generation;
    if (++barrier.arrived == parties) {
        barrier.arrived = 0;
        ++barrier.generation;
        ++progress;
        return;
    }
    while (barrier.generation == generation) yield();
}

inline void run_thread()
{
    (*body)();
    current->done = true;
    ++progress;
} /* returns to the scheduler (uc_link) */

/* Every block of the grid, each to its end: OK, or why it stopped. */
inline Result launch(unsigned grid_x, unsigned grid_y, unsigned threads, bool last_warp_first,
                     const std::function<void()>& kernel)
{
    if (threads == 0 || threads % 32 != 0 || threads > 1024) return BAD_LAUNCH;
    const size_t stack_size = 256 * 1024;
    std::vector<Fiber> fibers(threads);
    std::vector<std::vector<char>> stacks(threads, std::vector<char>(stack_size));
    warp_barriers.assign(threads / 32, Barrier());
    warp_fragments.assign(threads / 32, Fragments());
    warp_lanes.assign(threads / 32, Lanes());
    gridDim = {grid_x, grid_y, 1};
    blockDim = {threads, 1, 1};
    body = &kernel;
    trapped = misaligned = false;
    for (unsigned by = 0; by < grid_y; ++by)
        for (unsigned bx = 0; bx < grid_x; ++bx) {
            blockIdx = {bx, by, 0};
            block_barrier = Barrier();
            for (unsigned t = 0; t < threads; ++t) {
                Fiber& f = fibers[t];
                f.thread = (int)t;
                f.done = false;
                f.open.clear();
                f.groups.clear();
                getcontext(&f.context);
                f.context.uc_stack.ss_sp = stacks[t].data();
                f.context.uc_stack.ss_size = stack_size;
                f.context.uc_link = &scheduler;
                makecontext(&f.context, run_thread, 0);
            }
            /* One warp runs as far as it can before the next gets a turn (the first warp first, or the last
             * one): warps drift apart as far as barriers let them, as they may on a GPU. */
            unsigned warps = threads / 32, finished = 0;
            while (finished < threads) {
                bool moved = false;
                for (unsigned k = 0; k < warps && !moved; ++k) {
                    unsigned warp = last_warp_first ? warps - 1 - k : k;
                    for (long before = -1; before != progress;) {
                        before = progress;
                        for (unsigned t = 32 * warp; t < 32 * warp + 32; ++t) {
                            Fiber& f = fibers[t];
                            if (f.done) continue;
                            current = &f;
                            threadIdx = {(unsigned)f.thread, 0, 0};
                            swapcontext(&scheduler, &f.context);
                            if (trapped) return TRAP;
                            if (misaligned) return MISALIGNED;
                            finished += f.done;
                        }
                        moved = moved || progress != before;
                    }
                }
                if (!moved) return DEADLOCK;
            }
        }
    return OK;
}

#endif

} // namespace emu

#ifndef ARTEM_INDEPENDENT_THREADS
inline void __syncthreads()
{
    emu::wait(emu::block_barrier, (int)blockDim.x);
}

[[noreturn]] inline void __trap()
{
    emu::trapped = true;
    emu::yield();
    __builtin_unreachable(); /* the scheduler never resumes a trapped thread */
}

/* mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc: d += Σ popcount(a AND b), warp-wide */
inline void mma_and_popc(int (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
    int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    emu::Fragments& f = emu::warp_fragments[warp];
    for (int r = 0; r < 4; ++r) f.a[lane][r] = a[r], f.d[lane][r] = d[r];
    for (int r = 0; r < 2; ++r) f.b[lane][r] = b[r];
    emu::wait(emu::warp_barriers[warp], 32);
    int g = lane / 4, q = lane % 4, sums[4];
    for (int r = 0; r < 4; ++r) {
        int row = g + 8 * (r / 2), column = 2 * q + r % 2, total = f.d[lane][r];
        for (int word = 0; word < 8; ++word) {
            unsigned a_word = f.a[4 * (row % 8) + word % 4][row / 8 + 2 * (word / 4)];
            unsigned b_word = f.b[4 * column + word % 4][word / 4];
            total += __popc(a_word & b_word);
        }
        sums[r] = total;
    }
    emu::wait(emu::warp_barriers[warp], 32); /* every lane has read before any hands in the next */
    for (int r = 0; r < 4; ++r) d[r] = sums[r];
}

/* __ballot_sync and __shfl_xor_sync over the whole warp (the only mask the kernels use; any other
 * ends the launch as __trap() does): each lane hands in its value, waits for the other 31, reads, and
 * waits again, so that none hands in its next value before all have read this one. A lane that left
 * the kernel early never arrives: a deadlock, as the GPU's behaviour is undefined there. */
inline bool warp_wide(unsigned mask)
{
    if (mask != 0xffffffffu) __trap();
    return true;
}

inline unsigned __ballot_sync(unsigned mask, bool predicate)
{
    int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    emu::Lanes& l = emu::warp_lanes[warp];
    warp_wide(mask);
    l.votes[lane] = predicate;
    emu::wait(emu::warp_barriers[warp], 32);
    unsigned bits = 0u;
    for (int i = 0; i < 32; ++i) bits |= (unsigned)l.votes[i] << i;
    emu::wait(emu::warp_barriers[warp], 32);
    return bits;
}

inline float __shfl_xor_sync(unsigned mask, float value, int lane_mask)
{
    int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    emu::Lanes& l = emu::warp_lanes[warp];
    warp_wide(mask);
    l.values[lane] = value;
    emu::wait(emu::warp_barriers[warp], 32);
    float theirs = l.values[(lane ^ lane_mask) & 31];
    emu::wait(emu::warp_barriers[warp], 32);
    return theirs;
}

/* cp.async: on a GPU a copy may land any time from its issue to the wait that covers it; here it lands
 * at one end or the other (emu::eager_copies), and the tests run each launch both ways, so that a
 * kernel that reads shared memory before waiting, or overwrites words others still read, shows */
template <int SIZE> inline void copy_async(unsigned* dst, const unsigned* src, bool valid)
{
    if ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) % SIZE) { /* the GPU faults */
        emu::misaligned = true;
        emu::yield();
    }
    emu::Copy copy = {dst, src, SIZE, valid};
    if (emu::eager_copies)
        emu::land(copy);
    else
        emu::current->open.push_back(copy);
}

inline void copy_async_commit()
{
    emu::current->groups.push_back(std::move(emu::current->open));
    emu::current->open.clear();
}

template <int PENDING> inline void copy_async_wait()
{
    auto& groups = emu::current->groups;
    while (groups.size() > (size_t)PENDING) {
        for (const emu::Copy& c : groups.front()) emu::land(c);
        groups.erase(groups.begin());
    }
}
#endif

#endif
