#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace loads::common {

// Starts a program: argv[0] is its path. The child gets an empty signal mask whatever the caller
// blocks (the controller blocks SIGINT and SIGTERM in every thread to take them with sigwait; a
// child must still be stoppable). env replaces the environment when given; stdout_fd, when >= 0,
// becomes the child's stdout; own_group puts the child in a new process group, so that
// kill(-pid, ...) reaches whatever it starts. Returns 0, or the errno value of the failure.
int Spawn(const std::vector<std::string>& argv, const std::vector<std::string>* env, int stdout_fd,
          bool own_group, pid_t* pid);

}  // namespace loads::common
