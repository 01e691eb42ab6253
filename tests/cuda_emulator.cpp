/* One kernel of kernels/ built for the CPU under cuda_emulator.h, with one C entry point for ctypes:
 * g++ -shared -fPIC -I kernels -DKERNEL_SOURCE='"NAME.cu"' -DENTRY=NAME (tests/cuda_emulator.py).
 * Every kernel takes pointers, int32 and float32 values; the caller passes each argument as one int64
 * slot (a float32 as its 32 bits). */
#include "cuda_emulator.h"

#include <cstring>
#include <type_traits>
#include <utility>

#include KERNEL_SOURCE

template <class T> static T from_slot(long long slot)
{
    if constexpr (std::is_pointer_v<T>) {
        return reinterpret_cast<T>(slot);
    } else if constexpr (std::is_same_v<T, float>) {
        unsigned bits = (unsigned)slot;
        float value;
        std::memcpy(&value, &bits, sizeof value);
        return value;
    } else {
        return static_cast<T>(slot);
    }
}

template <class... A, size_t... I>
static void call(void (*kernel)(A...), const long long* slots, std::index_sequence<I...>)
{
    kernel(from_slot<A>(slots[I])...);
}

template <class... A> static void call(void (*kernel)(A...), const long long* slots)
{
    call(kernel, slots, std::index_sequence_for<A...>{});
}

template <class... A> static int arity(void (*)(A...)) { return (int)sizeof...(A); }

/* early: copy_async lands at its issue and the first warp runs ahead; else copies land at their wait
 * and the last warp runs ahead. 0 when every block ran to its end; else emu::Result, or -1 for a wrong number of arguments */
extern "C" int emulate(unsigned grid_x, unsigned grid_y, unsigned threads, const long long* slots, int count,
                       int early)
{
    if (count != arity(ENTRY)) return -1;
#ifndef ARTEM_INDEPENDENT_THREADS
    emu::eager_copies = early;
#endif
    return emu::launch(grid_x, grid_y, threads, !early, [slots] { call(ENTRY, slots); });
}
