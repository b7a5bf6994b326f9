"""Data: HashNet-format lists (`lists`), image loading and preprocessing (`transforms`), the Paddle
datasets and data-set presets (`datasets`), and the generated lite data (`lite_data`); lists for your
own images (scripts/build_lists.py): their sources, folders or a CSV (`sources`), the seeded stratified
split (`split`), building and writing them (`custom_lists`), and the split checks (`split_check`)."""
