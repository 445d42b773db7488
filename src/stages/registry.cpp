#include "aefx/stages/stages.h"

namespace aefx::stages {

engine::StageRegistry builtin_stages() {
  engine::StageRegistry r;
  r.add("pretrain", pretrain, &engine::RunFolder::pretrain_state, /*distributed=*/true);
  r.add("classify", classify, &engine::RunFolder::classify_state, /*distributed=*/true);
  r.add("baseline", baseline);
  r.add("evaluate", evaluate);
  r.add("export", export_models);
  return r;
}

}  // namespace aefx::stages
