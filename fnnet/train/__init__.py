"""Training: the step and its execution policy (:mod:`.step`), the loops (:mod:`.fit`), the history
(:mod:`.history`), early stopping and plateaus (:mod:`.stopping`) and threads (:mod:`.parallel`).

>>> import numpy as np, fnnet
>>> x = fnnet.key(0).generator().normal(size=(64, 4)).astype(np.float32)   # (N, 4) inputs
>>> t = (x.sum(axis=1) > 0).astype(np.int64)                                 # (N,) labels
>>> model = fnnet.serial(fnnet.Affine(8), fnnet.ReLU(), fnnet.Affine(2))
>>> result = fnnet.train.fit(model, fnnet.optim.sgd(0.5), (x, t), key=fnnet.key(1), epochs=3,
...                          batch_size=16, progress="quiet")
>>> int(result.state.epoch), int(result.state.step), sorted(result.history.epochs[-1])
(3, 12, ['loss', 'time', 'train_acc', 'train_loss'])
"""

from fnnet.train.fit import FitResult, TrainingInterrupted, evaluate, fit, predict
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
    "TrainingInterrupted",
    "all_finite",
    "choose_policy",
    "evaluate",
    "fit",
    "grad_entry_norms",
    "init_train_state",
    "make_train_step",
    "predict",
]
