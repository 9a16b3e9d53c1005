// The Remat library: the engine core (tensors, ledger, autograd, kernels) re-exported, with
// modules, models, checkpointing, planning and reports built on top as they land.
@_exported import RematCore
