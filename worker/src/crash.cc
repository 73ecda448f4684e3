// Crash reports (loads/worker/crash.h) and the guarded coroutine stacks they rely on to tell a
// stack overflow apart (worker/src/fiber.h).

#include "loads/worker/crash.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>

#include "worker/src/fiber.h"

namespace boost::coroutines {

namespace {
size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}
}  // namespace

template <>
void basic_standard_stack_allocator<stack_traits>::allocate(stack_context& ctx, std::size_t size) {
  const size_t page = PageSize();
  size = (size + page - 1) / page * page;
  // Reserved, not committed: the kernel gives the pages a user really touches.
  void* base = ::mmap(nullptr, size + page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) throw std::bad_alloc();
  ::mprotect(base, page, PROT_NONE);  // the guard page: stacks grow down into it
  ctx.size = size;
  ctx.sp = static_cast<char*>(base) + page + size;
}

template <>
void basic_standard_stack_allocator<stack_traits>::deallocate(stack_context& ctx) {
  const size_t page = PageSize();
  ::munmap(static_cast<char*>(ctx.sp) - ctx.size - page, ctx.size + page);
}

}  // namespace boost::coroutines

namespace loads::worker {
namespace {

constexpr size_t kAltStackSize = 64 * 1024;
std::atomic<CrashWriter> g_writer{nullptr};
const char* g_test = "";

// A tiny async-signal-safe string builder: no allocation, truncates at the end.
class Line {
 public:
  void Add(const char* text) {
    while (*text && size_ + 1 < sizeof(buffer_)) buffer_[size_++] = *text++;
  }
  void Add(int64_t n) {
    char digits[24];
    size_t count = 0;
    uint64_t v = n < 0 ? static_cast<uint64_t>(-(n + 1)) + 1 : static_cast<uint64_t>(n);
    do {
      digits[count++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    if (n < 0) Add("-");
    while (count) {
      const char c[2] = {digits[--count], 0};
      Add(c);
    }
  }
  const char* data() const { return buffer_; }
  size_t size() const { return size_; }

 private:
  char buffer_[512];
  size_t size_ = 0;
};

const char* Describe(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV (invalid memory access)";
    case SIGBUS:
      return "SIGBUS (bus error)";
    case SIGFPE:
      return "SIGFPE (arithmetic error)";
    case SIGILL:
      return "SIGILL (illegal instruction)";
    case SIGABRT:
      return "SIGABRT (abort: a failed assert, std::terminate, or heap corruption)";
  }
  return "a fatal signal";
}

// A fault within 64 KiB of the stack pointer is the stack growing into its guard page.
bool LooksLikeStackOverflow(const siginfo_t* info, const void* context) {
#if defined(__x86_64__)
  if (info->si_signo != SIGSEGV || context == nullptr) return false;
  const auto* uc = static_cast<const ucontext_t*>(context);
  const auto sp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  const uintptr_t distance = addr > sp ? addr - sp : sp - addr;
  return distance < 64 * 1024;
#else
  (void)info;
  (void)context;
  return false;
#endif
}

void OnCrash(int sig, siginfo_t* info, void* context) {
  if (CrashWriter writer = g_writer.load()) {
    Line line;
    if (LooksLikeStackOverflow(info, context)) {
      line.Add("stack overflow (SIGSEGV in the guard page below a stack)");
    } else {
      line.Add(Describe(sig));
    }
    const int64_t user = internal::CurrentUserIndex();
    if (user >= 0) {
      line.Add(" in user ");
      line.Add(user);
      line.Add(" of ");
    } else {
      line.Add(" outside any virtual user, running ");
    }
    line.Add(g_test);
    writer(line.data(), line.size());
  }
  // Die of the same signal, so that the parent sees what happened.
  signal(sig, SIG_DFL);
  raise(sig);
}

void* MakeAltStack() {
  void* memory =
      ::mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return nullptr;
  stack_t stack{};
  stack.ss_sp = memory;
  stack.ss_size = kAltStackSize;
  if (sigaltstack(&stack, nullptr) != 0) {
    ::munmap(memory, kAltStackSize);
    return nullptr;
  }
  return memory;
}

}  // namespace

void InstallCrashReport(CrashWriter writer, const char* test) {
  g_test = test;
  g_writer = writer;
  MakeAltStack();  // the calling thread's, for its whole life
  struct sigaction action {};
  action.sa_sigaction = OnCrash;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &action, nullptr);
}

CrashReportStack::CrashReportStack() {
  if (g_writer.load()) memory_ = MakeAltStack();
}

CrashReportStack::~CrashReportStack() {
  if (!memory_) return;
  stack_t off{};
  off.ss_flags = SS_DISABLE;
  sigaltstack(&off, nullptr);
  ::munmap(memory_, kAltStackSize);
}

}  // namespace loads::worker
