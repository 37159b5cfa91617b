"""Small helpers and constants shared by every package (one home each; see docs/ARCHITECTURE.md).

Modules: `labels` (ignore / padding ids), `imaging` (normalisation constants, palettes,
colouring), `files` (atomic writes), `modules` (DDP unwrapping), `pos_embed` (position-embedding
resampling), `timefmt` (durations).
"""
