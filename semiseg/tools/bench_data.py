"""The bench's `data` phase: samples per second per CPU core of the training pipeline, by view set.

    python -m semiseg.tools.bench --exp 30 --run 0 --what data [--crop 321 512] [--compare-release]
    python -m semiseg.tools.bench_data [--exp E --run R] [--crop S ...] [--paths release fast device]
        [--samples 32] [--repeats 3] [--batch 2] [--step-times 0.392 0.065 0.040] [--compare-release]
        [--data-dir DIR] [--out FILE.json]

One process, one thread (torch, OpenCV), on generated VOC-sized samples (500x375 JPEGs, palette PNG
masks; `semiseg.data.voc_like`). Each sample is seeded as training seeds it, and timed by stage:
decode (`SemiDataset.load`), geometric (`geometry`: rescale, pad, crop, flip), photometric
(`build_views`: strong views and the uint8 -> normalised step) and collate (`default_collate` of
`--batch` samples, per sample). View sets: labeled, unlabeled (with its strong views and CutMix
boxes), partner (the unlabeled ids again with the partner views), as the method of `--exp/--run`
asks (default UniMatch's), with its crop and rescale rule (default: UniMatch's long-side rescale,
the release's). Paths: `release` (the default pipeline, the release's pixels), `fast`
(augment=fast), `device` (augment=fast, photometric_device: what is left on the CPU; the device ops
are timed separately on this CPU as `device_ops`). `--compare-release` times the UniMatch release's
own `SemiDataset` (imported from a local copy, `semiseg.tools.release_pipeline`) on the same files,
seeds and crop, interleaved with ours. Each repeat runs every path once over the samples; the
median over repeats is reported. Cores per GPU at a step time T = batch x (labeled + unlabeled +
partner seconds per sample) / T.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import torch
from torch.utils.data import default_collate

from semiseg.data.semi_dataset import AugConfig, SemiDataset
from semiseg.data.voc_like import make_voc_like
from semiseg.engine.loaders import STREAM_LABELED, STREAM_PARTNER, STREAM_UNLABELED, seed_sample
from semiseg.utils.cli import OneLineParser, output_file
from semiseg.utils.files import atomic_write_json

PATHS = {'release': {}, 'fast': {'augment': 'fast'},
         'device': {'augment': 'fast', 'photometric_device': True},
         'release+device': {'photometric_device': True}}
STAGES = ('decode', 'geometric', 'photometric', 'collate')
STEP_TIMES = (0.392, 0.065, 0.040)    # the release's H100 step (README Speed), our target range
RELEASE = 'unimatch-release'


@dataclass
class ViewSets:
    """What one training iteration loads, per stream."""

    labeled: tuple[str, ...] = ('img_x', 'mask_x')
    unlabeled: tuple[str, ...] = ('img_w', 'img_s1', 'img_s2', 'ignore', 'box1', 'box2')
    partner: tuple[str, ...] = ('img_w', 'img_s1', 'img_s2', 'ignore')
    img_scale: tuple[int, int] | None = None
    scale_ratio_range: tuple[float, float] = (0.5, 2.0)

    def streams(self) -> list[tuple[str, str, tuple[str, ...], int]]:
        out = [('labeled', 'train_l', self.labeled, STREAM_LABELED)]
        if self.unlabeled:
            out.append(('unlabeled', 'train_u', self.unlabeled, STREAM_UNLABELED))
        if self.partner:
            out.append(('partner', 'train_u', self.partner, STREAM_PARTNER))
        return out


@dataclass
class StageTimes:
    seconds: dict[str, list[float]] = field(default_factory=dict)   # per repeat, per sample

    def add(self, stage: str, value: float) -> None:
        self.seconds.setdefault(stage, []).append(value)

    def median_ms(self) -> dict[str, float]:
        return {k: 1e3 * statistics.median(v) for k, v in self.seconds.items()}


def view_sets(exp: int | None, run: int | None) -> tuple[ViewSets, int | None]:
    """The view sets, rescale rule and crop of a run (UniMatch's defaults without one)."""
    if exp is None:
        return ViewSets(), None
    from semiseg.api import run_config
    from semiseg.methods import method_info
    cfg = run_config(exp, run or 0)
    info = method_info(cfg['method'])
    aug = AugConfig.from_cfg(cfg)
    return ViewSets(info.labeled_views, info.unlabeled_views, info.partner_views, aug.img_scale,
                    aug.scale_ratio_range), aug.crop_size


def _ours(ds: SemiDataset, stream: int):
    """One seeded sample of ours, timed by stage: (sample, {stage: seconds})."""
    def sample(i: int, epoch: int) -> tuple[dict, dict[str, float]]:
        seed_sample(0, stream, epoch, i)
        t0 = time.perf_counter()
        img, mask = ds.load(i)
        t1 = time.perf_counter()
        img, mask = ds.geometry(img, mask)
        t2 = time.perf_counter()
        out = ds.build_views(img, mask)
        t3 = time.perf_counter()
        return out, {'decode': t1 - t0, 'geometric': t2 - t1, 'photometric': t3 - t2}
    return sample


def _theirs(ds: Any, stream: int):
    """One seeded sample of the release's SemiDataset: its whole __getitem__ as one stage."""
    def sample(i: int, epoch: int) -> tuple[Any, dict[str, float]]:
        seed_sample(0, stream, epoch, i)
        t0 = time.perf_counter()
        out = ds[i]
        return out, {'item': time.perf_counter() - t0}
    return sample


def measure(crop: int, paths: list[str], sets: ViewSets, data_dir: Path, entries, repeats: int, batch: int,
            compare_release: bool) -> dict[str, dict[str, dict[str, float]]]:
    """{path: {stream: {stage: ms per sample}}} for one crop. Paths are interleaved sample by sample,
    so a shared machine's load changes hit them alike."""
    runners = []
    for path in paths:
        aug = AugConfig(crop_size=crop, img_scale=sets.img_scale, scale_ratio_range=sets.scale_ratio_range,
                        **PATHS[path])
        for name, mode, views, stream in sets.streams():
            ds = SemiDataset(data_dir, entries, mode, aug, views=views, check_first=0)
            runners.append((path, name, _ours(ds, stream)))
    if compare_release:
        from semiseg.tools.release_pipeline import load_release_semi, release_path
        semi = load_release_semi()
        if semi is None:
            raise ValueError(f'--compare-release: the UniMatch release source is not at {release_path()}; fetch '
                             'LiheYoung/UniMatch there or set SEMISEG_UNIMATCH_RELEASE')
        if sets.img_scale is not None:
            raise ValueError("--compare-release times UniMatch's long-side rescale; use a run without img_scale "
                             '(e.g. exp 30) or no --exp')
        id_path = data_dir / 'list.txt'
        rel_l = semi.SemiDataset('pascal', str(data_dir), 'train_l', crop, str(id_path))
        rel_u = semi.SemiDataset('pascal', str(data_dir), 'train_u', crop, str(id_path))
        runners += [(RELEASE, 'labeled', _theirs(rel_l, STREAM_LABELED)),
                    (RELEASE, 'unlabeled', _theirs(rel_u, STREAM_UNLABELED)),
                    (RELEASE, 'partner', _theirs(rel_u, STREAM_PARTNER))]   # the release loads it the same way
    n = len(entries)
    times: dict[tuple[str, str], StageTimes] = {(path, name): StageTimes() for path, name, _ in runners}
    for rep in range(-1, repeats):      # repeat -1 warms caches up (files, imports, allocator); not kept
        acc = {key: {} for key in times}
        samples = {key: [] for key in times}
        for i in range(n):
            for path, name, run in runners:
                out, stages = run(i, rep)
                samples[path, name].append(out)
                for k, v in stages.items():
                    acc[path, name][k] = acc[path, name].get(k, 0.0) + v
        for key, stages in acc.items():
            t0 = time.perf_counter()
            batches = [default_collate(samples[key][b:b + batch]) for b in range(0, n - batch + 1, batch)]
            stages['collate'] = time.perf_counter() - t0
            if rep < 0:
                continue
            for k, v in stages.items():
                if k != 'item':
                    times[key].add(k, v / n)
            times[key].add('total', sum(stages.values()) / n)
            if PATHS.get(key[0], {}).get('photometric_device'):
                from semiseg.data.device_photometric import finish_batch
                t0 = time.perf_counter()
                for b in batches:
                    finish_batch(b, torch.device('cpu'))
                times[key].add('device_ops', (time.perf_counter() - t0) / (len(batches) * batch))
    result: dict[str, dict[str, dict[str, float]]] = {}
    for (path, name), t in times.items():
        result.setdefault(path, {})[name] = t.median_ms()
    return result


def cores_per_gpu(streams: dict[str, dict[str, float]], batch: int, step_time: float) -> float:
    """CPU cores one GPU needs so loading keeps up with a step of `step_time` seconds."""
    return batch * sum(s['total'] for s in streams.values()) / 1e3 / step_time


def format_report(result: dict) -> str:
    lines = []
    batch, steps = result['batch'], result['step_times']
    for crop, paths in result['crops'].items():
        lines.append(f'crop {crop}: ms per sample (share of the total), one thread, median of {result["repeats"]} '
                     f'repeats over {result["samples"]} generated 500x375 samples')
        lines.append('| path | view set | decode | geometric | photometric | collate | total | samples/s/core |'
                     ' device ops (this CPU) |')
        lines.append('| --- | --- | --: | --: | --: | --: | --: | --: | --: |')
        for path, streams in paths.items():
            for name, ms in streams.items():
                cells = [f'{ms[s]:.1f} ({100 * ms[s] / ms["total"]:.0f}%)' if s in ms else '' for s in STAGES]
                dev = f'{ms["device_ops"]:.1f}' if 'device_ops' in ms else ''
                lines.append(f'| {path} | {name} | {" | ".join(cells)} | {ms["total"]:.1f} | '
                             f'{1e3 / ms["total"]:.1f} | {dev} |')
        base_name = RELEASE if RELEASE in paths else next(iter(paths))
        base = paths[base_name]
        key = 'unlabeled' if 'unlabeled' in base else 'labeled'     # the expensive view set of the run
        lines.append(f'\n{key} samples/s/core relative to {base_name}, and cores per GPU at {batch} samples per '
                     'stream per step:')
        lines.append(f'| path | {key} x | ' + ' | '.join(f'cores @ {t * 1e3:.0f} ms' for t in steps) + ' |')
        lines.append('| --- | --: | ' + ' | '.join('--:' for _ in steps) + ' |')
        for path, streams in paths.items():
            ratio = base[key]['total'] / streams[key]['total']
            cores = ' | '.join(f'{cores_per_gpu(streams, batch, t):.1f}' for t in steps)
            lines.append(f'| {path} | {ratio:.2f} | {cores} |')
        lines.append('')
    return '\n'.join(lines)


def run(crops: list[int], paths: list[str], sets: ViewSets, samples: int, repeats: int, batch: int,
        step_times: list[float], compare_release: bool, data_dir: Path | None = None) -> dict:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix='bench-data-')
        data_dir = Path(tmp.name)
    try:
        entries = make_voc_like(data_dir, samples)
        result = {'batch': batch, 'samples': samples, 'repeats': repeats, 'step_times': step_times,
                  'torch': torch.__version__, 'opencv': cv2.__version__, 'crops': {}}
        for crop in crops:
            result['crops'][crop] = measure(crop, paths, sets, data_dir, entries, repeats, batch, compare_release)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog='python -m semiseg.tools.bench --what data',
                           description='Time the training data pipeline per CPU core.')
    parser.add_argument('--exp', type=int, help="take views, crop and rescale rule from this run (default "
                        "UniMatch's views, long-side rescale)")
    parser.add_argument('--run', type=int, default=0)
    parser.add_argument('--what', choices=('data',), default='data', help=argparse.SUPPRESS)   # from bench.py
    parser.add_argument('--crop', type=int, nargs='+', help='crop sizes (default the run\'s, else 321 512)')
    parser.add_argument('--paths', nargs='+', choices=tuple(PATHS), default=['release', 'fast', 'device'])
    parser.add_argument('--samples', type=int, default=32, help='generated samples per view set')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--batch', type=int, default=2, help='samples per stream per step (per GPU)')
    parser.add_argument('--step-times', type=float, nargs='+', default=list(STEP_TIMES),
                        help='step times (s) for the cores-per-GPU column')
    parser.add_argument('--compare-release', action='store_true',
                        help="also time the UniMatch release's SemiDataset on the same samples")
    parser.add_argument('--data-dir', type=Path, help='write the generated samples here (default a temp dir)')
    parser.add_argument('--out', type=output_file, help='write the results as JSON')
    args = parser.parse_args(argv)
    if args.samples < args.batch:
        parser.error('--samples must be at least --batch')
    try:
        sets, run_crop = view_sets(args.exp, args.run)
        crops = args.crop or ([run_crop] if run_crop else [321, 512])
        result = run(crops, args.paths, sets, args.samples, args.repeats, args.batch, args.step_times,
                     args.compare_release, args.data_dir)
    except (KeyError, ValueError, IndexError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(format_report(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
