#pragma once
// The pipeline stages. Each reads what earlier stages wrote in the run folder
// (engine/run_folder.h) and writes its own files there, so any stage can run alone:
//   pretrain -> checkpoints/autoencoder.pt, pretrain.json (resumable: pretrain_last.pt)
//   classify -> checkpoints/head.pt, classify.json (resumable: classify_last.pt; needs pretrain)
//   baseline -> baseline.json: the classify head on raw pixels instead of codes (needs nothing;
//               not in the default stage list)
//   evaluate -> metrics.json, confusion.png, latents.png (needs pretrain and classify)
//   export   -> encoder.pt, autoencoder.pt, classifier.pt (TorchScript), model.json
#include "aefx/engine/runner.h"

namespace aefx::stages {

void pretrain(engine::RunContext& ctx);
void classify(engine::RunContext& ctx);
void baseline(engine::RunContext& ctx);
void evaluate(engine::RunContext& ctx);
void export_models(engine::RunContext& ctx);

/// The registry holding pretrain, classify, baseline, evaluate and export.
engine::StageRegistry builtin_stages();

}  // namespace aefx::stages
