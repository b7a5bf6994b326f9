"""Training: the command line and resolved configuration (`config`), the one training/evaluation engine
(`engine`, over its parts `run`, `data`, `trainer`, `evaluator`, `checkpointer`, `reporter`), multi-process
helpers (`dist`), mixed precision (`amp`), optimizers (`optim`), the feature cache (`feature_cache`) and
the VisualDL log (`visualdl`). Built on `models` and `utils.data`; nothing below imports it."""
