#pragma once
// A scratch folder for fuzz targets, in memory (/dev/shm) when there is one, removed with the
// object. Failing to create it ends the run (it is not a finding in the code under test).
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace aefx::fuzz {

struct ScratchDir {
  std::filesystem::path path;
  /// `tag` names the folder: /dev/shm/aefx-fuzz-<tag>-XXXXXX.
  explicit ScratchDir(const std::string& tag) {
    namespace fs = std::filesystem;
    const fs::path base =
        fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string tmpl = (base / ("aefx-fuzz-" + tag + "-XXXXXX")).string();
    if (!::mkdtemp(tmpl.data())) {
      std::fprintf(stderr, "fuzz: cannot create a scratch folder under %s\n", base.c_str());
      std::abort();
    }
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

}  // namespace aefx::fuzz
