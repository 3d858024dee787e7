"""Training: the step and its execution policy (:mod:`.step`), the loops (:mod:`.fit`), the history
(:mod:`.history`), early stopping and plateaus (:mod:`.stopping`) and threads (:mod:`.parallel`)."""

from fnnet.train.fit import FitResult, evaluate, fit, predict
from fnnet.train.history import History
from fnnet.train.step import (
    ExecutionPolicy,
    LossFn,
    NonFiniteLossError,
    StepMetrics,
    TrainState,
    TrainStep,
    all_finite,
    choose_policy,
    grad_entry_norms,
    init_train_state,
    make_train_step,
)
from fnnet.train.stopping import EarlyStopping, ReduceOnPlateau, StopDecision

__all__ = [
    "EarlyStopping",
    "ExecutionPolicy",
    "FitResult",
    "History",
    "LossFn",
    "NonFiniteLossError",
    "ReduceOnPlateau",
    "StepMetrics",
    "StopDecision",
    "TrainState",
    "TrainStep",
    "all_finite",
    "choose_policy",
    "evaluate",
    "fit",
    "grad_entry_norms",
    "init_train_state",
    "make_train_step",
    "predict",
]
