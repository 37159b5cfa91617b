"""Small helpers and constants shared by every package (one home each; see docs/ARCHITECTURE.md).

Modules: `labels` (ignore / padding ids), `imaging` (normalisation constants, palettes,
colouring), `files` (atomic writes), `modules` (DDP unwrapping), `pos_embed` (position-embedding
resampling), `timefmt` (durations), `textfiles` (UTF-8 text with or without BOM, any line ending),
`safe_yaml` (every YAML/JSON read, with size, alias and depth limits), `cli` (exit codes, the
one-line argument parser, usage errors, output-path checks), `checkpoint_io` (safe checkpoint
reads that say what a wrong file is), `errors` (one-line failure messages).
"""
