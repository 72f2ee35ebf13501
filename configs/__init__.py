"""The default configuration, shipped as package data (`clearline.configs`).

Read through `clearline.config`; a deployment copies it with `clearline init DIR` and
points CLEARLINE_CONFIG_DIR (or `--config-dir`) at the copy.
"""
