"""`python experiments.py`: select runs of an experiment, write their configs, launch them.

Everything the user typed is validated before anything is written: a bad experiment id, run spec,
override or Slurm option ends with a one-line error and exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semiseg.data.datasets import DATASETS
from semiseg.data.errors import DataError
from semiseg.engine.runlock import describe_owner
from semiseg.experiments import get_experiment, get_runs, list_experiments, with_overrides, with_world
from semiseg.experiments.config import with_seed
from semiseg.experiments.files import ExperimentFileError, FileExperiment
from semiseg.experiments.io import generated_config_dir, load_config, save_experiment_configs
from semiseg.experiments.overrides import OverrideError, parse_cfg_options
from semiseg.experiments.registry import UnknownExperiment, experiment_dirs_added
from semiseg.experiments.selection import SPEC_HELP, RunSpecError, parse_run_spec
from semiseg.launch.claim import SubmissionLock, busy_line, who_trains
from semiseg.launch.local import LaunchError
from semiseg.launch.options import SlurmOptions, SlurmOptionsError
from semiseg.launch.rundir import find_finished, find_resumable, run_dir_path, unfinished_with_other_config
from semiseg.methods.registry import METHODS, method_info
from semiseg.utils.cli import EXIT_ABORTED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, OneLineParser, UsageError
from semiseg.utils.errors import CheckpointError
from semiseg.utils.run_files import CONFIG_FILE
from semiseg.utils.textfiles import TextFileError

log = logging.getLogger('semiseg.cli')

LAUNCHERS = ('local', 'slurm', 'debug')
# Slurm flags -> SlurmOptions fields (flag dest == field name)
SLURM_FLAGS = ('partition', 'time_min', 'account', 'qos', 'constraint', 'mem_gb', 'nodes',
               'gpus_per_node', 'cpus_per_task', 'array_parallelism', 'max_array_size', 'extra_sbatch')


class RunError(RuntimeError):
    """A run could not start or finish (data, disk, checkpoint...); one line, exit code 1."""



def gpu_count(text: str) -> int | str:
    """`--ngpus`: a whole number, or 'auto' (what this machine has)."""
    return 'auto' if text == 'auto' else int(text)


def _visible_gpu_count(args: argparse.Namespace) -> int:
    """`--ngpus auto`: this machine's CUDA devices (1 without CUDA: one process), said in one line."""
    if args.launcher in ('slurm', 'debug'):
        raise UsageError('--ngpus auto counts the GPUs of this machine; with --launcher slurm give a number')
    from semiseg.launch.local import cuda_device_count
    visible = cuda_device_count()
    log.warning('--ngpus auto: %d CUDA device(s) visible; each run trains on %d process(es), and its config and '
                'name say so', visible, max(1, visible))
    return max(1, visible)


def build_parser() -> argparse.ArgumentParser:
    """The experiments.py argument parser."""
    p = OneLineParser(prog='experiments.py', description=__doc__.splitlines()[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--exp', type=int, help='experiment id (see --list)')
    p.add_argument('--run', help=f'runs to use: {SPEC_HELP}')
    p.add_argument('--list', action='store_true',
                   help='list experiments; with --exp, list the runs of that experiment')
    p.add_argument('--list-datasets', action='store_true', help='list the built-in datasets and exit')
    p.add_argument('--list-methods', action='store_true', help='list the training methods and exit')
    p.add_argument('--dry-run', action='store_true',
                   help='write the configs and print the launch command of each run; run nothing')
    p.add_argument('--ngpus', type=gpu_count, help="GPUs per run (default: the run's n_gpus); 'auto': the CUDA "
                   'devices this machine has (1 without CUDA), recorded as such')
    p.add_argument('--data-root', help='folder holding the datasets (default: $SEMISEG_DATA or ~/data)')
    p.add_argument('--launcher', default='local', choices=LAUNCHERS,
                   help='local: this machine; slurm: submitit jobs; debug: submitit in this process')
    p.add_argument('--experiments', action='append', default=[], type=Path, metavar='DIR',
                   help='a folder of experiment files (*.yaml, docs/experiments.md); repeatable; also '
                        '$SEMISEG_EXPERIMENTS (os.pathsep list) and configs/experiments/')
    p.add_argument('--seeds', help='repeat every selected run with these seeds: a list (0,1,2) or a count '
                                   '(3 means 0,1,2); the repeats share one --results row')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='override config keys or engine options, e.g. epochs=2 optimizer.lr=1e-3')
    p.add_argument('--resume', action='store_true',
                   help='resume the unfinished run folder of each selected config (error if none)')
    p.add_argument('--force', action='store_true',
                   help='train again in a new run folder even if this config already finished')
    p.add_argument('--status', action='store_true', help='show the state of the runs and exit')
    p.add_argument('--results', action='store_true',
                   help='one table of the runs\' results next to the published numbers, and exit')
    p.add_argument('--format', default='markdown', choices=('markdown', 'csv', 'json'), help='--results format')
    p.add_argument('--sort', default='run', metavar='KEY',
                   help='--results row order: run, best (highest mIoU first), diff, name, or a swept key')
    p.add_argument('--exp-root', default='exp', type=Path, help='root of the run folders')
    p.add_argument('--verbose', action='store_true', help='debug logging, and tracebacks on the console '
                                                          '(they always go to the run folder\'s train.log)')
    s = p.add_argument_group('Slurm (with --launcher slurm|debug)')
    s.add_argument('--partition', help='Slurm partition')
    s.add_argument('--time-min', type=int, help='wall-time limit per job in minutes')
    s.add_argument('--account', help='Slurm account')
    s.add_argument('--qos', help='Slurm QOS')
    s.add_argument('--constraint', help='node constraint, e.g. a100')
    s.add_argument('--mem-gb', type=int, help='memory per node in GB')
    s.add_argument('--nodes', type=int, help='nodes per job')
    s.add_argument('--gpus-per-node', type=int, help='GPUs per node (default: --ngpus or n_gpus)')
    s.add_argument('--cpus-per-task', type=int, help='CPU cores per task')
    s.add_argument('--max-parallel', '--array-parallelism', dest='array_parallelism', type=int,
                   help='at most this many runs of a resource group train at once (the array throttle %%P)')
    s.add_argument('--max-array-size', type=int,
                   help="the cluster's MaxArraySize (default: read from `scontrol show config`); larger "
                        'sweeps are split into several arrays')
    s.add_argument('--sbatch', dest='extra_sbatch', action='append', default=[], metavar='KEY=VALUE',
                   help='extra sbatch parameter (repeatable), e.g. --sbatch mail-type=END')
    s.add_argument('--slurm-defaults', type=Path,
                   help='YAML file with default Slurm options (default: $SEMISEG_SLURM_DEFAULTS, else '
                        '~/.config/semiseg/slurm.yaml if it exists)')
    return p


@dataclass
class Selection:
    """The validated request: which runs, with which configs."""

    exp_id: int
    all_cfgs: list[dict[str, Any]]      # every run of the experiment, as generated (no overrides)
    indices: list[int]                  # selected run indices
    cfgs: list[dict[str, Any]]          # selected configs with --cfg-options applied


def _print_experiments() -> None:
    for exp in list_experiments():
        where = f'  ({exp.path})' if isinstance(exp, FileExperiment) else ''
        print(f'{exp.exp_id:>4}  {len(exp.runs):>3} runs  {exp.description}{where}')


def _print_datasets() -> None:
    print('built-in datasets (a custom dataset: --cfg-options dataset=NAME data_root=PATH, with PATH/classes.txt):')
    for info in DATASETS.values():
        splits = ', '.join(info.splits) or '-'
        print(f'  {info.name:<11} {info.nclass:>4} classes  folder {info.folder + "/":<22} splits {splits}')


def _print_methods() -> None:
    for info in METHODS.values():
        print(f'  {info.name:<11} {info.description}')


def _shown(value: Any) -> str:
    return f'{value:g}' if isinstance(value, float) else str(value).replace(' ', '')


def _print_runs(exp_id: int, cfgs: list[dict[str, Any]], indices: list[int] | None = None) -> None:
    exp = get_experiment(exp_id)
    print(f'experiment {exp_id}: {exp.description}' + (f' ({exp.path})' if isinstance(exp, FileExperiment) else ''))
    repeats = any('sweep' in c or 'seed' in c for c in cfgs)   # a file experiment, or --seeds
    rows = [('run', 'dataset', 'split', 'method', 'GPUs') + (('seed', 'swept') if repeats else ()) + ('name',)]
    rows += [(str(i), c['dataset'], str(c['split']), c['method'],
              f'{c["n_nodes"]}x{c["n_gpus"]}' if c['n_nodes'] != 1 else str(c['n_gpus']))
             + ((str(c.get('seed', 0)), ' '.join(f'{k}={_shown(v)}' for k, v in c.get('sweep', {}).items()) or '-')
                if repeats else ()) + (c['name'],)
             for i, c in zip(indices if indices is not None else range(len(cfgs)), cfgs)]
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    for row in rows:
        print('  '.join(v.ljust(w) for v, w in zip(row, widths)) + '  ' + row[-1])


def _select(args: argparse.Namespace) -> Selection:
    """Resolve --exp/--run/--cfg-options into configs, raising UsageError on bad input."""
    try:
        get_experiment(args.exp)
    except UnknownExperiment as e:
        raise UsageError(e.args[0]) from None
    all_cfgs = get_runs(args.exp, args.data_root)
    if args.run is None:
        if not (args.status or args.results):
            raise UsageError(f'--run is required with --exp {args.exp} '
                             f'(experiment {args.exp} has {len(all_cfgs)} runs; {SPEC_HELP})')
        indices = list(range(len(all_cfgs)))
    else:
        indices = parse_run_spec(args.run, len(all_cfgs), args.exp)
    overrides = parse_cfg_options(args.cfg_options)
    try:   # --status / --results only read the configs: no copies of thousands of them
        cfgs = [all_cfgs[i] if not overrides and (args.status or args.results) else
                with_overrides(all_cfgs[i], overrides, args.data_root) for i in indices]
    except ValueError as e:   # a value out of range, an unusable custom dataset, ...
        raise UsageError(str(e)) from None
    gpus = args.ngpus or args.gpus_per_node
    if (gpus or args.nodes) and args.launcher == 'local' and not (args.status or args.results):
        _check_local_world(cfgs, gpus, args.nodes)   # refuse before the note on the global batch
    if gpus or args.nodes:    # the batch size is per GPU: say what this does to the global batch
        for k, cfg in enumerate(cfgs):
            cfgs[k], warning = with_world(cfg, gpus, args.nodes)
            if warning:
                log.warning('%s', warning)
    if args.seeds is not None:
        indices, cfgs = _with_seeds(indices, cfgs, parse_seeds(args.seeds))
    return Selection(args.exp, all_cfgs, indices, cfgs)


def _check_local_world(cfgs: list[dict[str, Any]], gpus: int | None, nodes: int | None) -> None:
    """LaunchError when this machine cannot run --ngpus / --nodes (launch/local.py `check_local_hardware`)."""
    from semiseg.launch.local import check_local_hardware, visible_gpus
    cuda = visible_gpus(cfgs)
    for cfg in cfgs:
        wanted = gpus or int(cfg.get('n_gpus') or 1)
        check_local_hardware({**cfg, 'n_nodes': nodes or cfg.get('n_nodes') or 1}, wanted, cuda)
        if wanted > 1 and wanted > cuda:
            raise LaunchError(f'run {cfg["name"]} wants {wanted} GPUs but only {cuda} are visible; '
                              f'pass --ngpus {cuda} (or fewer, or --ngpus auto)')


def parse_seeds(text: str) -> list[int]:
    """`--seeds`: '0,1,2' -> [0, 1, 2]; a single number is a count: '3' -> [0, 1, 2]."""
    parts = [t.strip() for t in text.split(',')]
    if not all(t.isdigit() for t in parts):
        raise UsageError(f'--seeds {text!r}: give seeds as 0,1,2 or a count such as 3 (= 0,1,2)')
    seeds = [int(t) for t in parts]
    if len(parts) == 1:
        if seeds[0] < 1:
            raise UsageError('--seeds 0 repeats nothing; give a count >= 1 or a list such as 0,1,2')
        return list(range(seeds[0]))
    if len(set(seeds)) != len(seeds):
        raise UsageError(f'--seeds {text!r} lists a seed twice')
    return seeds


def _with_seeds(indices: list[int], cfgs: list[dict[str, Any]], seeds: list[int]) -> tuple[list[int], list[dict]]:
    """Every selected run once per seed (same run index); a config reached twice is kept once."""
    out_indices, out_cfgs = [], []
    for index, cfg in zip(indices, cfgs):
        for seed in seeds:
            seeded = with_seed(cfg, seed)
            if seeded not in out_cfgs:
                out_indices.append(index)
                out_cfgs.append(seeded)
    return out_indices, out_cfgs


def _slurm_options(args: argparse.Namespace) -> SlurmOptions:
    values = {name: getattr(args, name) for name in SLURM_FLAGS}
    if values['gpus_per_node'] is None and args.ngpus is not None:
        values['gpus_per_node'] = args.ngpus
    from semiseg.launch.slurm import SlurmError, parse_extra_sbatch
    from semiseg.launch.slurm_defaults import load_options  # adds ~/.config/semiseg/slurm.yaml
    opts = load_options(values, args.slurm_defaults)
    try:
        parse_extra_sbatch(opts.extra_sbatch)   # reject malformed --sbatch before writing anything
    except SlurmError as e:
        raise UsageError(str(e)) from None
    return opts


@dataclass
class Decision:
    """What happens to one selected run."""

    index: int
    cfg: dict[str, Any]
    action: str                 # 'new', 'resume', 'skip' (finished) or 'busy' (another live process has it)
    run_dir: Path               # folder to create, to resume, that already finished, or being trained


def _decide(sel: Selection, args: argparse.Namespace) -> list[Decision]:
    """Apply the resume policy to every selected run (reads run folders, writes nothing).

    An unfinished folder with this exact config resumes. A config that another live process launches
    or trains now (its claim or its folder's run lock is held) is left to it: one line says who, and
    --force starts a repeat on purpose (launch/claim.py). An unfinished folder of this run whose
    config.yaml was edited (or cannot be read) is never skipped silently: --resume continues it with
    its own config, --force starts afresh, otherwise the command stops and says so.
    """
    decisions = []
    for index, cfg in zip(sel.indices, sel.cfgs):
        resumable = None if args.force else find_resumable(cfg, args.exp_root)
        busy = None if args.force else who_trains(cfg, args.exp_root, resumable)
        if busy is not None:
            owner, folder = busy
            if args.resume:
                raise UsageError(f'--resume: run {index} ({folder or cfg["name"]}) is being trained right now by '
                                 f'{describe_owner(owner)}; wait for it or stop it first')
            print(busy_line(index, cfg, owner, folder))
            decisions.append(Decision(index, cfg, 'busy', folder or run_dir_path(cfg, args.exp_root)))
            continue
        if resumable is not None:
            decisions.append(Decision(index, cfg, 'resume', resumable))
            continue
        edited = [] if args.force else unfinished_with_other_config(cfg, args.exp_root)
        if edited:
            folder, what = edited[0]
            if args.resume and not what.startswith('an unreadable'):
                print(f'run {index}: resuming {folder} with its own config.yaml ({what[2:]})')
                decisions.append(Decision(index, load_config(folder / CONFIG_FILE), 'resume', folder))
                continue
            raise UsageError(f'run {index}: the unfinished folder {folder} has {what}; continue it with --resume '
                             f'(its config.yaml wins) or `python -m semiseg.engine.run --run-dir {folder}`, or '
                             'start afresh with --force (the folder is kept)')
        if args.resume:
            raise UsageError(f'--resume: run {index} ({cfg["name"]}) has no unfinished run folder with '
                             f'this exact config under {args.exp_root}/exp-{sel.exp_id}; drop --resume '
                             f'to start it')
        finished = None if args.force else find_finished(cfg, args.exp_root)
        if finished is not None:
            decisions.append(Decision(index, cfg, 'skip', finished))
        else:
            decisions.append(Decision(index, cfg, 'new', run_dir_path(cfg, args.exp_root)))
    return decisions


def _prepare_data(cfgs: list[dict[str, Any]]) -> None:
    """Before any folder exists: generate the toy dataset (idempotent), then take a cheap look at
    each run's data (class list, split lists, the first files, the first samples' label ids)."""
    from semiseg.data.build import check_data
    from semiseg.data.datasets import ensure_generated
    for name, root in sorted({(c['dataset'], c['data_root']) for c in cfgs}):
        ensure_generated(name, root)          # generated datasets (toy) are made on first use
    for cfg in cfgs:
        check_data(cfg, method_info(cfg['method']))


def _print_sbatch(decisions: list[Decision], slurm: SlurmOptions, cluster: str) -> None:
    """The sbatch script of each job (array) a Slurm submission would create."""
    from semiseg.launch.slurm import SlurmError, dry_run_text
    try:
        todo = [d for d in decisions if d.action in ('new', 'resume')]
        labels = [f'{d.index}' + (f's{d.cfg["seed"]}' if d.cfg.get('seed') else '') for d in todo]   # 0, 0s1, ...
        print(dry_run_text([(d.cfg, d.run_dir) for d in todo], slurm, cluster, labels=labels))
    except SlurmError as e:
        raise UsageError(str(e)) from None


def _local_plans(decisions: list[Decision], ngpus: int | None) -> tuple[int, dict[int, Any]]:
    """Visible GPUs and the local plan of every run to start (LaunchError if impossible)."""
    from semiseg.launch.local import plan_local, visible_gpus
    cuda = visible_gpus([d.cfg for d in decisions if d.action in ('new', 'resume')])
    return cuda, {d.index: plan_local(d.cfg, ngpus, cuda) for d in decisions if d.action in ('new', 'resume')}


def _dry_run(decisions: list[Decision], args: argparse.Namespace, slurm: SlurmOptions | None,
             plans: dict[int, Any]) -> None:
    from semiseg.launch.local import describe
    if args.cfg_options:
        print(f'with --cfg-options {" ".join(args.cfg_options)}')
    for d in decisions:
        print(f'run {d.index}: {d.cfg["name"]}')
        if d.action == 'skip':
            print(f'  already finished in {d.run_dir}; would skip it (--force trains it again)')
            continue
        if d.action == 'busy':
            print(f'  another process trains it ({d.run_dir}); would move on (--force starts a repeat)')
            continue
        print(f'  {"resume" if d.action == "resume" else "new folder"}: {d.run_dir}')
        if slurm is None:
            print(f'  {describe(plans[d.index], d.run_dir)}')
    if slurm is not None:
        _print_sbatch(decisions, slurm, args.launcher)


def _launch(decisions: list[Decision], args: argparse.Namespace, slurm: SlurmOptions | None,
            cuda: int) -> int:
    from semiseg.launch.rundir import create_run_dir
    for d in decisions:
        if d.action == 'skip':
            print(f'run {d.index} ({d.cfg["name"]}) already finished in {d.run_dir}; not training it '
                  f'again. Pass --force to train it again in a new folder.')
    todo = [d for d in decisions if d.action in ('new', 'resume')]
    if not todo:
        return 0
    if slurm is None:   # each run under its config's claim, decided again when its turn comes
        from semiseg.launch.local import launch_claimed
        try:
            return launch_claimed(todo, args.exp_root, args.ngpus, cuda_count=cuda, force=args.force,
                                  prepare=_prepare_data)
        except OSError as err:
            raise RunError(f'cannot create a run folder under {args.exp_root} ({err.strerror or err}); choose '
                           'a writable --exp-root') from None
    _prepare_data([d.cfg for d in todo])
    runs = []
    for d in todo:
        if d.action == 'resume':
            print(f'run {d.index}: resuming {d.run_dir}')
            runs.append((d.cfg, d.run_dir))
        else:
            try:
                run_dir = create_run_dir(d.cfg, args.exp_root)
            except OSError as err:
                where = args.exp_root / f'exp-{d.cfg["exp"]}'
                raise RunError(f'cannot create a run folder under {where} ({err.strerror or err}); choose a '
                               'writable --exp-root') from None
            print(f'run {d.index}: new run folder {run_dir}')
            runs.append((d.cfg, run_dir))
    if slurm is not None:
        from semiseg.launch.slurm import SlurmError, submit
        try:
            submit(runs, slurm, cluster=args.launcher)
        except SlurmError as e:  # e.g. unknown partition: undo the folders made for this call
            for d, (_, run_dir) in zip(todo, runs):
                if d.action == 'new' and [p.name for p in run_dir.iterdir()] == [CONFIG_FILE]:
                    shutil.rmtree(run_dir)
            raise UsageError(str(e)) from None
        from semiseg.launch.runindex import scan_run_folders
        for exp_id in sorted({int(d.cfg['exp']) for d in todo}):   # a sweep's configs into the folder index
            try:                                                     # now, so --status need not parse them
                scan_run_folders(args.exp_root, exp_id)
            except OSError as err:   # submitted all the same; --status parses them later
                log.warning('could not index the run folders of experiment %d (%s)', exp_id, err)
    return 0


def run(args: argparse.Namespace) -> int:
    """Execute parsed arguments; raises UsageError (and friends) on bad input."""
    if args.list_datasets or args.list_methods:
        _print_datasets() if args.list_datasets else _print_methods()
        return 0
    if args.list and args.exp is None:
        _print_experiments()
        return 0
    if args.exp is None:
        ids = ', '.join(str(e.exp_id) for e in list_experiments())
        raise UsageError(f'--exp is required (valid: {ids}; --list describes them)')
    if args.resume and args.force:
        raise UsageError('--resume and --force contradict each other; use one')
    if args.ngpus == 'auto':
        args.ngpus = _visible_gpu_count(args)
    if args.ngpus is not None and args.ngpus < 1:
        raise UsageError(f'--ngpus must be at least 1, got {args.ngpus}')
    if args.list:
        try:
            if args.seeds is None:
                _print_runs(args.exp, get_runs(args.exp, args.data_root))
            else:
                all_cfgs = get_runs(args.exp, args.data_root)
                indices, cfgs = _with_seeds(list(range(len(all_cfgs))), all_cfgs, parse_seeds(args.seeds))
                _print_runs(args.exp, cfgs, indices)
        except UnknownExperiment as e:
            raise UsageError(e.args[0]) from None
        return 0
    sel = _select(args)
    args.exp_root = args.exp_root.expanduser().absolute()  # jobs may start in another folder
    if args.status:
        from semiseg.launch.status import print_status
        print_status(sel.exp_id, sel.cfgs, args.exp_root, sel.indices)
        return 0
    if args.results:
        from semiseg.launch.results import results_table
        try:   # --seeds and the seeds of a file experiment: the repeats of a run are one row
            print(results_table(sel.exp_id, sel.cfgs, args.exp_root, sel.indices, args.format, args.sort), end='')
        except ValueError as e:   # a --sort key that is neither a column nor a swept key
            raise UsageError(str(e)) from None
        return 0
    slurm = _slurm_options(args) if args.launcher in ('slurm', 'debug') else None
    if slurm is not None and not args.dry_run:   # one submitter per experiment; held until run() returns
        submitting = SubmissionLock(args.exp_root, sel.exp_id)  # noqa: F841
    decisions = _decide(sel, args)
    cuda, plans = _local_plans(decisions, args.ngpus) if slurm is None else (0, {})
    changed = [c for i, c in zip(sel.indices, sel.cfgs) if c != sel.all_cfgs[i]]
    paths = save_experiment_configs(sel.exp_id, sel.all_cfgs + changed)
    print(f'wrote {len(paths)} configs to {generated_config_dir() / f"exp-{sel.exp_id}"}')
    if args.dry_run:
        _dry_run(decisions, args, slurm, plans)
        return 0
    return _launch(decisions, args, slurm, cuda)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code: 0 done, 1 a run failed or could not start, 2 bad usage,
    3 interrupted (latest.pth saved; the same command resumes), 130 aborted by a second Ctrl-C."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    if args.verbose:
        from semiseg.engine.logging_utils import show_tracebacks
        show_tracebacks()
    from semiseg.engine.signals import StopBeforeTraining, startup_stop_handlers
    try:
        with startup_stop_handlers(), experiment_dirs_added(args.experiments):
            return run(args)
    except StopBeforeTraining as stop:
        print(f'experiments.py: interrupted ({stop}) outside a training loop; nothing is lost: the same command '
              f'continues', file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, RunSpecError, OverrideError, SlurmOptionsError, LaunchError, ExperimentFileError) as e:
        print(f'experiments.py: error: {e}', file=sys.stderr)
        return EXIT_USAGE
    except (RunError, DataError, CheckpointError, TextFileError, OSError) as e:
        print(f'experiments.py: error: {e}', file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print('experiments.py: aborted (an unfinished run resumes with the same command from its latest.pth)',
              file=sys.stderr)
        return EXIT_ABORTED
