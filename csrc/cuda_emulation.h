// A CPU stand-in for the parts of CUDA that synth_cuda.cu uses, so that the kernels' own code (indexing,
// barriers, shared-memory layouts, halos, the block reductions) runs on machines without a GPU:
// module_cuda_emulated.cpp compiles synth_cuda.cu as C++ against this header into uptal._C_cuda_emulated
// (CMake option UPTAL_CUDA_EMULATION, on in CI), which tests/ops/test_synthesize_cuda_emulated.py compares
// with the reference.
//
// Blocks run one after another. A block's threads are fibers (own stacks) on the calling thread: each runs until
// it reaches a barrier (__syncthreads: every thread of the block; __syncwarp and the shuffles: the threads of
// its warp), then the next one runs; a barrier opens once every thread it waits for is there (or has exited,
// as on the GPU). Shared memory thus needs no locks and every run is deterministic. Barriers that can never
// open (a __syncthreads that some threads skip, lanes of one warp at different barriers) are reported as a
// launch error, where a GPU would hang or be undefined, as is a write just outside the dynamic shared memory
// (guard bands). Launches check the block size and the dynamic shared memory against the limits a GPU enforces
// (48 KiB unless cudaFuncSetAttribute raised it, up to the opt-in maximum the emulated device reports:
// optin_shared_bytes, which the module's synthesize takes).
//
// Not modelled: timing, concurrency between blocks, memory ordering beyond the barriers, and the device's
// arithmetic: both sides are IEEE float32 without contraction (--fmad=false there, -ffp-contract=off here),
// so results match where the kernels use only + - * / and the comparisons, as synth_math.h does.
#pragma once

#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define UPTAL_EMULATION_ASAN 1
#else
#define UPTAL_EMULATION_ASAN 0
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

// --- the runtime API subset ------------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorLaunchFailure = 4,
  cudaErrorInvalidConfiguration = 9,
};
using cudaStream_t = void*;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one copy for all of a block's fibers (blocks run one at a time)

namespace uptal::emulation {

constexpr int kWarpSize = 32;
constexpr unsigned kMaxBlockThreads = 1024;
constexpr size_t kDefaultSharedBytes = 48 * 1024;
constexpr size_t kFiberStackBytes = 128 * 1024;   // the kernels use a few KiB
constexpr size_t kGuardBytes = 4096;              // below each stack, not accessible: an overflow faults

inline cudaError_t last_error = cudaSuccess;
inline std::string last_error_message;
inline int optin_shared_bytes = 227 * 1024;          // an H100's, the default; the tests also try an A100's and less
inline std::map<const void*, int> max_dynamic_shared;  // per kernel, as cudaFuncSetAttribute set it

inline void fail(cudaError_t error, const std::string& message) {
  if (last_error == cudaSuccess) last_error = error, last_error_message = message;
}

// --- fibers: a stack each, switched by saving the callee-saved registers (x86-64 System V) ---------------------
// (glibc's swapcontext also saves the signal mask, a system call per switch: with it, 40 of the first 41
// emulated tests took 143 s; without, all 41 took 29 s.)
// switch_fiber(from, to) pushes rbp, rbx, r12-r15, stores the stack pointer in *from, takes `to` as the stack
// pointer and pops the same registers there; `ret` continues where that stack left off.
extern "C" void uptal_emulation_switch_fiber(void** from, void* to);
asm(R"(
  .text
  .p2align 4
  .globl uptal_emulation_switch_fiber
  .hidden uptal_emulation_switch_fiber
  .type uptal_emulation_switch_fiber, @function
uptal_emulation_switch_fiber:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size uptal_emulation_switch_fiber, .-uptal_emulation_switch_fiber
)");

// The scheduler's stack, as a fiber learns it when it starts (for AddressSanitizer: switch_stack).
inline const void* scheduler_stack_bottom = nullptr;
inline size_t scheduler_stack_size = 0;

// Continues on the stack pointer `to` of the stack [bottom, bottom + size), the running stack's pointer saved
// in *from; `exiting`: the running fiber never resumes. In an AddressSanitizer build (UPTAL_SANITIZE) it tells
// the sanitizer which stack runs, without which it would take the other stacks' memory for overflows.
inline void switch_stack(void** from, void* to, const void* bottom, size_t size, bool exiting = false) {
#if UPTAL_EMULATION_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(exiting ? nullptr : &fake_stack, bottom, size);
#else
  (void)bottom, (void)size, (void)exiting;
#endif
  uptal_emulation_switch_fiber(from, to);
#if UPTAL_EMULATION_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

// Stacks for up to a block's threads, kept for every launch of the process.
class FiberStacks {
 public:
  char* top(int fiber) {
    while ((int)stacks_.size() <= fiber) {
      void* base = mmap(nullptr, kGuardBytes + kFiberStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
      if (base == MAP_FAILED) throw std::bad_alloc();
      mprotect(base, kGuardBytes, PROT_NONE);
      stacks_.push_back(static_cast<char*>(base));
    }
    return bottom(fiber) + kFiberStackBytes;
  }
  char* bottom(int fiber) const { return stacks_[fiber] + kGuardBytes; }

 private:
  std::vector<char*> stacks_;
};
inline FiberStacks fiber_stacks;

// The stack pointer that starts `entry` on a fresh stack: six zero registers for switch_fiber to pop, then
// entry as its return address, entered with the stack aligned as after a call (entry never returns).
inline void* start_on(char* top, void (*entry)()) {
  void** sp = reinterpret_cast<void**>(top);   // 16-byte aligned
  *--sp = nullptr;                             // entry's return address: none
  *--sp = reinterpret_cast<void*>(entry);
  for (int r = 0; r < 6; ++r) *--sp = nullptr;
  return sp;
}

// The block being run and its fibers.
enum class Wait { kNone, kBlock, kWarp, kDone };
struct Block {
  int threads = 0;
  int current = 0;
  void* scheduler = nullptr;                    // the scheduler's stack pointer while a fiber runs
  std::vector<void*> fibers;                    // each waiting fiber's stack pointer
  std::vector<Wait> waits;
  std::vector<unsigned char> shared;            // dynamic shared memory, in guard bands
  std::vector<uint64_t> exchange;               // [threads] the shuffles' values
  void (*body)(void*) = nullptr;
  void* body_state = nullptr;
};
inline Block* running = nullptr;

// The calling fiber waits at a barrier of kind `wait` until the scheduler opens it.
inline void wait_at(Wait wait) {
  Block& b = *running;
  const int me = b.current;
  b.waits[me] = wait;
  switch_stack(&b.fibers[me], b.scheduler, scheduler_stack_bottom, scheduler_stack_size);
}

inline void fiber_main() {
#if UPTAL_EMULATION_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &scheduler_stack_bottom, &scheduler_stack_size);
#endif
  Block& b = *running;
  b.body(b.body_state);
  b.waits[b.current] = Wait::kDone;
  void* finished;
  switch_stack(&finished, b.scheduler, scheduler_stack_bottom, scheduler_stack_size, /*exiting=*/true);
}

// Opens every barrier whose threads are all there; false if none could open.
inline bool open_barriers(Block& b) {
  bool opened = false;
  for (int warp = 0; warp * kWarpSize < b.threads; ++warp) {
    const int first = warp * kWarpSize, end = std::min(b.threads, first + kWarpSize);
    bool all_there = true, any_waiting = false;
    for (int t = first; t < end; ++t) {
      all_there = all_there && (b.waits[t] == Wait::kWarp || b.waits[t] == Wait::kDone);
      any_waiting = any_waiting || b.waits[t] == Wait::kWarp;
    }
    if (all_there && any_waiting) {
      for (int t = first; t < end; ++t) {
        if (b.waits[t] == Wait::kWarp) b.waits[t] = Wait::kNone;
      }
      opened = true;
    }
  }
  if (opened) return true;
  bool all_there = true, any_waiting = false;
  for (int t = 0; t < b.threads; ++t) {
    all_there = all_there && (b.waits[t] == Wait::kBlock || b.waits[t] == Wait::kDone);
    any_waiting = any_waiting || b.waits[t] == Wait::kBlock;
  }
  if (!(all_there && any_waiting)) return false;
  for (int t = 0; t < b.threads; ++t) {
    if (b.waits[t] == Wait::kBlock) b.waits[t] = Wait::kNone;
  }
  return true;
}

// Runs one block of `threads` fibers, each calling body(state), to the end; false if its barriers deadlock.
// Each round runs every fiber that can run, in order of threadIdx, then opens the barriers it can, except that
// `late` (a thread index; -1: none) runs only when nothing else can move. Thread 0 late lets the other warps
// run ahead through the barriers that do not wait for it: a read of shared memory by thread 0 after a barrier
// then meets the writes of the other threads' next steps, so a missing barrier between the two shows (in
// threadIdx order thread 0 always reads first).
inline bool run_block(Block& b, int threads, int late) {
  b.threads = threads;
  b.fibers.resize(threads);
  b.waits.assign(threads, Wait::kNone);
  b.exchange.assign(threads, 0);
  for (int t = 0; t < threads; ++t) b.fibers[t] = start_on(fiber_stacks.top(t), fiber_main);
  auto run = [&](int t) {
    b.current = t;
    threadIdx = uint3{(unsigned)t, 0, 0};
    switch_stack(&b.scheduler, b.fibers[t], fiber_stacks.bottom(t), kFiberStackBytes);
  };
  for (;;) {
    bool ran = false;
    for (int t = 0; t < threads; ++t) {
      if (t != late && b.waits[t] == Wait::kNone) run(t), ran = true;
    }
    if (ran || open_barriers(b)) continue;   // `late` waits until nothing else can move
    if (late >= 0 && b.waits[late] == Wait::kNone) {
      run(late);
      continue;
    }
    for (int t = 0; t < threads; ++t) {
      if (b.waits[t] != Wait::kDone) return false;   // waiting at a barrier that cannot open
    }
    return true;
  }
}

// The dynamic shared memory sits between two guard bands of kGuardByte (a multiple of 16 bytes: the memory
// keeps the allocation's 16-byte alignment).
constexpr size_t kGuardBand = 256;
constexpr unsigned char kGuardByte = 0xa5;
inline bool guard_bands_intact(const std::vector<unsigned char>& shared, size_t shared_bytes) {
  for (size_t i = 0; i < kGuardBand; ++i) {
    if (shared[i] != kGuardByte || shared[kGuardBand + shared_bytes + i] != kGuardByte) return false;
  }
  return true;
}

// kernel<<<grid, block, shared_bytes>>>(args...): every block in turn, blockIdx.x fastest.
template <class... Params>
struct Launch {
  void (*kernel)(Params...);
  dim3 grid, block;
  size_t shared_bytes;

  Launch(void (*kernel_)(Params...), dim3 grid_, dim3 block_, size_t shared_bytes_)
      : kernel(kernel_), grid(grid_), block(block_), shared_bytes(shared_bytes_) {}

  template <class... Args>
  void operator()(Args... args) const {
    const unsigned threads = block.x * block.y * block.z;
    if (block.y != 1 || block.z != 1 || grid.z != 1) return fail(cudaErrorInvalidConfiguration, "1-D blocks only");
    if (threads == 0 || threads > kMaxBlockThreads || grid.x == 0 || grid.y == 0) {
      return fail(cudaErrorInvalidConfiguration, "block of " + std::to_string(threads) + " threads");
    }
    const auto raised = max_dynamic_shared.find(reinterpret_cast<const void*>(kernel));
    const size_t allowed = raised == max_dynamic_shared.end() ? kDefaultSharedBytes : (size_t)raised->second;
    if (shared_bytes > allowed) {
      return fail(cudaErrorInvalidValue, std::to_string(shared_bytes) + " bytes of dynamic shared memory, " +
                                             std::to_string(allowed) + " allowed");
    }
    struct State {
      void (*kernel)(Params...);
      std::tuple<Args...> args;
    } state{kernel, std::tuple<Args...>(args...)};
    Block b;
    b.body = [](void* s) {
      State& st = *static_cast<State*>(s);
      std::apply(st.kernel, st.args);
    };
    b.body_state = &state;
    // NaN floats, -1 integers: reads before writes show; guard bands either side: writes outside show
    b.shared.assign(kGuardBand + shared_bytes + kGuardBand, 0xff);
    std::memset(b.shared.data(), kGuardByte, kGuardBand);
    std::memset(b.shared.data() + kGuardBand + shared_bytes, kGuardByte, kGuardBand);
    Block* outer = running;
    running = &b;
    gridDim = grid, blockDim = block;
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = uint3{x, y, 0};
        // every other block with thread 0 late (see run_block)
        const int late = (x + y) % 2 == 1 ? 0 : -1;
        const char* error = !run_block(b, (int)threads, late)     ? "barrier deadlock"
                            : !guard_bands_intact(b.shared, shared_bytes) ? "write outside the dynamic shared memory"
                                                                           : nullptr;
        if (error != nullptr) {
          running = outer;
          return fail(cudaErrorLaunchFailure,
                      std::string(error) + " in block (" + std::to_string(x) + ", " + std::to_string(y) + ")");
        }
      }
    }
    running = outer;
  }
};

inline void* dynamic_shared() { return running->shared.data() + kGuardBand; }

template <class T>
T shuffle(T value, int from_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>, "shuffled values are <= 8 bytes");
  Block& b = *running;
  const int me = b.current, warp_first = me / kWarpSize * kWarpSize;
  std::memcpy(&b.exchange[me], &value, sizeof(T));
  wait_at(Wait::kWarp);
  T out = value;
  if (warp_first + from_lane < b.threads) std::memcpy(&out, &b.exchange[warp_first + from_lane], sizeof(T));
  wait_at(Wait::kWarp);  // nobody overwrites the exchange before every lane has read it
  return out;
}

// (An exception cannot leave a fiber: a partial mask is reported as a launch error, and run as a full one.)
inline void check_full_mask(unsigned mask) {
  if (mask != 0xffffffffu) fail(cudaErrorInvalidValue, "the emulation runs full-warp masks only");
}

}  // namespace uptal::emulation

inline void __syncthreads() { uptal::emulation::wait_at(uptal::emulation::Wait::kBlock); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  uptal::emulation::check_full_mask(mask);
  uptal::emulation::wait_at(uptal::emulation::Wait::kWarp);
}
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
  uptal::emulation::check_full_mask(mask);
  const int lane = (int)threadIdx.x % uptal::emulation::kWarpSize;
  const int from = lane + (int)delta;
  return uptal::emulation::shuffle(value, from < uptal::emulation::kWarpSize ? from : lane);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
  uptal::emulation::check_full_mask(mask);
  const int lane = (int)threadIdx.x % uptal::emulation::kWarpSize;
  return uptal::emulation::shuffle(value, lane ^ lane_mask);
}
inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
  const unsigned long long old = *address;  // fibers never interrupt one another
  *address = old + value;
  return old;
}

inline cudaError_t cudaGetLastError() {
  const cudaError_t error = uptal::emulation::last_error;
  uptal::emulation::last_error = cudaSuccess;
  return error;
}
// The last launch error's message (kept after cudaGetLastError), else the code's name.
inline const char* cudaGetErrorString(cudaError_t error) {
  if (!uptal::emulation::last_error_message.empty()) return uptal::emulation::last_error_message.c_str();
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int) {
  if (attribute != cudaDevAttrMaxSharedMemoryPerBlockOptin) return cudaErrorInvalidValue;
  *value = uptal::emulation::optin_shared_bytes;
  return cudaSuccess;
}
template <class... Params>
cudaError_t cudaFuncSetAttribute(void (*kernel)(Params...), cudaFuncAttribute attribute, int value) {
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      value > uptal::emulation::optin_shared_bytes) {
    return cudaErrorInvalidValue;
  }
  uptal::emulation::max_dynamic_shared[reinterpret_cast<const void*>(kernel)] = value;
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t) {
  std::memset(pointer, value, bytes);
  return cudaSuccess;
}

// kernel<<<grid, block, shared_bytes, stream>>> and `extern __shared__ type name[]` (see synth_cuda.cu)
#define UPTAL_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  ::uptal::emulation::Launch(kernel, grid, block, shared_bytes)
#define UPTAL_EXTERN_SHARED(type, name) type* name = static_cast<type*>(::uptal::emulation::dynamic_shared())
