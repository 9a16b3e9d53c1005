// The Remat library for users: every layer re-exported (`import Remat`), from the bottom up.
// Each layer is its own target and sees only the ones below it:
//   RematCore        tensors, dtypes, the memory ledger, RNG, kernels, autograd (saved-tensor slot,
//                    hooks, the op-definition helper, op interceptors and observers)
//   RematIO          safetensors, CSV, atomic files, the BERT tokenizer
//   RematNN          Module (its one call entry point and execution), layers, models, optimizers
//   RematCheckpoint  the recompute engine (CheckpointRegion), policies, selective decisions, chain schedules
//   RematPlanning    step capture, profile files, the simulator, solvers, plans
//   RematTraining    the trainer, datasets, workloads, budgets over a training loop, explain
//   RematSVG         charts as SVG (scales, palette, line, area, point and bar charts); no dependency
//   RematReport      what the reports draw: the ledger timeline by category, per-op profiles
@_exported import RematCore
@_exported import RematIO
@_exported import RematNN
@_exported import RematCheckpoint
@_exported import RematPlanning
@_exported import RematTraining
@_exported import RematSVG
@_exported import RematReport
