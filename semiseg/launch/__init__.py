"""Launching runs: run folders, local (in-process / torchrun) and Slurm (submitit) launchers.

Light imports only; the engine, torch and submitit load when a launch actually happens.
"""
from .local import LaunchError, build_torchrun_command, launch_local
from .options import SlurmOptions
from .rundir import create_run_dir, find_finished, find_resumable, is_finished

__all__ = ['LaunchError', 'SlurmOptions', 'build_torchrun_command', 'create_run_dir', 'find_finished',
           'find_resumable', 'is_finished', 'launch_local']
