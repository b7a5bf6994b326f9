"""Training: the command line and resolved configuration (`config`), the one training/evaluation engine
(`engine`) and multi-process helpers (`dist`). Built on `models` and `utils.data`; nothing below imports it."""
