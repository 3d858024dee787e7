"""Training: the step and its execution policy (:mod:`.step`), the loops (:mod:`.fit`) and threads
(:mod:`.parallel`)."""

from fnnet.train.fit import FitResult, History, evaluate, fit, predict
from fnnet.train.step import (
    ExecutionPolicy,
    LossFn,
    NonFiniteLossError,
    StepMetrics,
    TrainState,
    all_finite,
    choose_policy,
    init_train_state,
    make_train_step,
)

__all__ = [
    "ExecutionPolicy",
    "FitResult",
    "History",
    "LossFn",
    "NonFiniteLossError",
    "StepMetrics",
    "TrainState",
    "all_finite",
    "choose_policy",
    "evaluate",
    "fit",
    "init_train_state",
    "make_train_step",
    "predict",
]
