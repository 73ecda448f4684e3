#pragma once

// Clang's thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html) and a
// mutex they apply to. With clang's -Wthread-safety the compiler checks that data marked
// LOADS_GUARDED_BY(mu) is only touched with mu held, that a LOADS_REQUIRES(mu) function is only
// called with it held, and that a lock is released on every path; under gcc the macros expand to
// nothing. scripts/check-thread-safety.sh runs the analysis over the controller (ctest -L lint).
//
// libstdc++'s std::mutex and std::lock_guard carry no annotations (libc++'s do, and only behind a
// macro), so the analysis cannot see them lock anything: hence loads::Mutex and loads::MutexLock.
// A std::condition_variable waits through MutexLock::native(); its predicate is written as an
// explicit loop (`while (!ready_) cv.wait(lock.native());`), since a lambda is a function of its
// own that the analysis cannot know is called with the lock held.

#include <mutex>

#if defined(__clang__)
#define LOADS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LOADS_THREAD_ANNOTATION(x)
#endif

#define LOADS_CAPABILITY(name) LOADS_THREAD_ANNOTATION(capability(name))
#define LOADS_SCOPED_CAPABILITY LOADS_THREAD_ANNOTATION(scoped_lockable)
// On a member: read or written only with the mutex held.
#define LOADS_GUARDED_BY(mu) LOADS_THREAD_ANNOTATION(guarded_by(mu))
// On a pointer (or smart pointer) member: what it points to is used only with the mutex held.
#define LOADS_PT_GUARDED_BY(mu) LOADS_THREAD_ANNOTATION(pt_guarded_by(mu))
// On a mutex member: the lock order (checked with -Wthread-safety-beta).
#define LOADS_ACQUIRED_BEFORE(...) LOADS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define LOADS_ACQUIRED_AFTER(...) LOADS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
// On a function: called with the mutex held (REQUIRES), or not held (EXCLUDES: it locks it).
#define LOADS_REQUIRES(...) LOADS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define LOADS_EXCLUDES(...) LOADS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// On a function: it locks (ACQUIRE) or unlocks (RELEASE) the mutex and returns.
#define LOADS_ACQUIRE(...) LOADS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define LOADS_RELEASE(...) LOADS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
// On a function the analysis cannot follow: not checked (say why next to it).
#define LOADS_NO_THREAD_SAFETY_ANALYSIS LOADS_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace loads {

// A std::mutex the analysis knows. Locked through MutexLock.
class LOADS_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() LOADS_ACQUIRE() { mu_.lock(); }
  void Unlock() LOADS_RELEASE() { mu_.unlock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// Holds a Mutex for its scope, like std::unique_lock.
class LOADS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) LOADS_ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() LOADS_RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Unlocks early, and locks again, within the scope.
  void Unlock() LOADS_RELEASE() { lock_.unlock(); }
  void Lock() LOADS_ACQUIRE() { lock_.lock(); }

  // For std::condition_variable::wait and its kin, which unlock while they wait and lock again
  // before they return: to the analysis the mutex stays held, as it is whenever the caller runs.
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace loads
