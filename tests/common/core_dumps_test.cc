#include "server/common/core_dumps.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <unistd.h>

#include <cstdlib>

#include "gtest/gtest.h"

namespace palmgate {
namespace {

// In a child process: the settings cannot be undone.
TEST(CoreDumpsTest, DisableCoreDumpsZeroesTheLimitAndClearsDumpable) {
  EXPECT_EXIT(
      {
        // Start from a state where dumps would be written.
        struct rlimit limit;
        if (::getrlimit(RLIMIT_CORE, &limit) != 0) std::_Exit(2);
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_CORE, &limit) != 0) std::_Exit(2);
        if (::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) std::_Exit(2);
        if (!DisableCoreDumps().ok()) std::_Exit(3);
        if (::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) std::_Exit(4);
        if (::getrlimit(RLIMIT_CORE, &limit) != 0 || limit.rlim_cur != 0 || limit.rlim_max != 0) std::_Exit(5);
        // The hard limit is 0 too: the process cannot raise it again.
        limit.rlim_cur = 1 << 20;
        limit.rlim_max = 1 << 20;
        if (::setrlimit(RLIMIT_CORE, &limit) == 0 && ::geteuid() != 0) std::_Exit(6);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace palmgate
