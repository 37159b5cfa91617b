"""The GPU measurements the issues ask for, as one prepared run: `python -m semiseg.tools.device_checks`.

    python -m semiseg.tools.device_checks --out DIR [--groups exp40 exp40_4x4 eval allspark unimatch v2]
                                          [--iters 20] [--warmup 5] [--no-compile]

Each group is a `semiseg.tools.bench` comparison on random inputs of the run's shapes, written to
`DIR/<group>.json` and printed as a table as soon as it finishes (so a time limit loses only the
group in progress):
- exp40 / exp40_4x4: SemiVL exp 40 run 0 training at 2+2 and 4+4 images: the release-like fp32
  (no fused AdamW), fp32, tf32, bf16, bf16 + compile, bf16 + compile + activation checkpointing;
  the release measured 0.392 s / 18.1 GiB and 0.694 s / 34.7 GiB on an H100 (fp32);
- eval: its zegclip sliding-window evaluation of a 512x683 image, one window at a time (release-like)
  and batched, fp32 / tf32 / bf16 (+ compile); the release: 0.045-0.053 s per image;
- allspark: AllSpark VOC (exp 50 run 0), crop 513, 2+2, fp32;
- unimatch: UniMatch DeepLabV3+ R101 VOC (exp 30 run 0), crop 321, 8+8, fp32;
- v2: UniMatch V2 DINOv2-B VOC 92 (exp 60 run 5), crop 518, 4+4, fp32 and bf16.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import torch

from semiseg.tools.bench import Setting, benchmark, format_table
from semiseg.utils.cli import OneLineParser, output_dir
from semiseg.utils.files import atomic_write_json

COMPILE = 'inductor'
GROUPS: dict[str, tuple[int, int, str, list[Setting], dict]] = {
    'exp40': (40, 0, 'train', [
        Setting(batch=2, fused=False), Setting(batch=2), Setting(batch=2, precision='tf32'),
        Setting(batch=2, precision='bf16'), Setting(batch=2, precision='bf16', compile=COMPILE),
        Setting(batch=2, precision='bf16', compile=COMPILE, checkpointing=True)], {}),
    'exp40_4x4': (40, 0, 'train', [
        Setting(batch=4, fused=False), Setting(batch=4), Setting(batch=4, precision='tf32'),
        Setting(batch=4, precision='bf16'), Setting(batch=4, precision='bf16', compile=COMPILE),
        Setting(batch=4, precision='bf16', compile=COMPILE, checkpointing=True)], {}),
    'eval': (40, 0, 'eval', [
        Setting(max_windows=1), Setting(), Setting(precision='tf32'), Setting(precision='bf16'),
        Setting(precision='bf16', compile=COMPILE)], {'eval_size': (512, 683)}),
    'allspark': (50, 0, 'train', [Setting(batch=2, crop=513)], {}),
    'unimatch': (30, 0, 'train', [Setting(batch=8, crop=321)], {}),
    'v2': (60, 5, 'train', [Setting(batch=4, crop=518), Setting(batch=4, crop=518, precision='bf16')], {}),
}


def run_group(name: str, out_dir: Path, iters: int, warmup: int, compile_ok: bool, device: torch.device) -> dict:
    """Benchmark one group, write its JSON, print its table."""
    exp, run, what, settings, extra = GROUPS[name]
    if not compile_ok:
        settings = [s for s in settings if s.compile is None]
    t0 = time.time()
    result = benchmark(exp, run, what, settings, device, iters, warmup, eval_size=extra.get('eval_size'))
    result['group'], result['wall_s'] = name, round(time.time() - t0, 1)
    atomic_write_json(out_dir / f'{name}.json', result)
    print(f'== {name} ({result["wall_s"]} s)\n{format_table(result)}', flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog='python -m semiseg.tools.device_checks', description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=output_dir, required=True, help='folder for <group>.json')
    parser.add_argument('--groups', nargs='+', choices=list(GROUPS), default=list(GROUPS))
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--no-compile', action='store_true', help='skip the torch.compile settings')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available():
        print('device_checks: error: no CUDA device; these measurements are for a GPU machine', file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.groups:
        try:
            run_group(name, args.out, args.iters, args.warmup, not args.no_compile, torch.device('cuda'))
        except Exception as err:  # noqa: BLE001 - one failed group must not cost the others
            print(f'device_checks: group {name} failed: {type(err).__name__}: {err}', file=sys.stderr)
            failed.append(name)
        torch.cuda.empty_cache()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
