#pragma once
// What built this binary and what it runs on: recorded in every run folder's run.json so a
// reported figure can be traced to its code and machine.
#include <string>

#include "aefx/util/json.h"

namespace aefx::util {

/// The git commit the binary was built from ("<sha>", "<sha>-dirty" with uncommitted changes
/// to tracked files, or "unknown" outside a git checkout).
std::string git_commit();

/// The machine: CPU model, logical cores, memory and OS, from /proc and /etc/os-release
/// (fields that cannot be read are "unknown").
Json machine_info();

/// The same in one line: "CPU model, N logical cores, M GiB, OS".
std::string machine_summary();

}  // namespace aefx::util
