"""The names of the files in a run folder (docs/ARCHITECTURE.md §2), in one place for every writer
and reader (engine, launch, tools). Torch-free and import-free, so any layer may read them."""
from __future__ import annotations

CONFIG_FILE = 'config.yaml'       # the run config (written before training starts)
LOG_FILE = 'train.log'            # text log of rank 0, tracebacks of failures
STATE_FILE = 'state.json'         # running | interrupted | finished | failed, progress
RESULTS_FILE = 'results.json'     # final and best mIoU; `finished: true` marks the run done
LATEST_CHECKPOINT = 'latest.pth'  # what a resumed run restores
BEST_CHECKPOINT = 'best.pth'      # the state of the best evaluation of the trained model
DEBUG_DIR = 'debug'               # debug panels
LOCK_FILE = '.lock'               # the writer's flock
JOB_FILE = 'slurm_job.json'       # job id and log paths, written at submission (--status reads it)
ATTEMPTS_FILE = 'slurm_attempts.jsonl'   # one line per Slurm job start (requeues add lines)
