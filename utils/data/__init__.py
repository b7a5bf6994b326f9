"""Data: HashNet-format lists (`lists`), image loading and preprocessing (`transforms`), the Paddle
datasets and data-set presets (`datasets`), and the generated lite data (`lite_data`)."""
