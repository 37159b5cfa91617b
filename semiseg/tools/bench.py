"""Benchmark a run's training iteration or evaluation: time, throughput, memory, FLOPs, phases.

    python -m semiseg.tools.bench --exp 40 --run 0 [--what train|eval] [--batch N] [--crop S]
        [--iters N] [--warmup N] [--precision fp32|tf32|bf16] [--compile [BACKEND]]
        [--checkpointing] [--channels-last] [--no-fused] [--max-windows N] [--eval-size HxW]
        [--device auto|cpu|cuda] [--data] [--data-root R] [--workers N] [--flops-only]
        [--out FILE.json] [--compare SETTING [SETTING ...]]

What is measured (one process, one device):
- train: one iteration as training runs it (`semiseg.engine.step.train_step`): `method.step` (under bf16 autocast
  when asked), the weighted loss sum, `zero_grad` + `backward`, `optimizer.step` and the method's
  `after_step` (EMA teachers). The model is random-initialised (`pretrained=False`) with random
  unit-norm text embeddings of the rows the run needs, so no weights, text files or dataset are
  read. The batch holds exactly the views the method's registry entry lists (random images
  N(0, 1), masks in [0, nclass) with ~5% 255, `ignore` 255 on a bottom padding band, CutMix
  boxes), B = --batch (default the run's batch_size) per stream, S = --crop (default crop_size).
  `--data` draws batches from the run's real training loaders instead, so the data phase counts.
  Images per iteration = labeled + unlabeled (the partner stream shares the unlabeled ids), the
  "2+2" of the release's speed figures.
- eval: one `semiseg.evaluation.inference.predict` call in the run's eval mode on --batch random
  images (default 1) of a typical validation size: with `img_scale` (resized val images) short
  side min(img_scale) at 4:3 (512x683 for VOC), 1024x2048 for cityscapes, else crop x 4/3 crop;
  `--eval-size HxW` overrides. `--max-windows` sets predict's windows per forward.

Reported per setting: seconds per iteration (median, p10-p90, mean; the device is synchronised
before and after each iteration), images/s, peak memory (`torch.cuda.max_memory_allocated` over
the timed iterations; on CPU the process's peak RSS so far, which never decreases), FLOPs of one
extra iteration counted with `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions
and attention, forward and backward; the eager model, before compile), achieved TFLOP/s, and a
breakdown by phase: data, pseudo_labels (eval-mode model calls: partner / teacher
pseudo-labels), guidance (`guidance_labels`), main_forward (the `need_fp=True` call, else the
first train-mode call of the step), strong_forward (later train-mode calls), losses_other (the
rest of `method.step` and the loss sum), backward, optimizer. Phases are measured on the timed
iterations themselves, without host synchronisation (CUDA events on GPU), by wrapping the model
in `PhaseProbe`; the methods are unchanged.

Precision: fp32 = full-fp32 matmuls (torch's default; cuDNN convolutions keep torch's default,
as in the releases); tf32 = TF32 matmuls (`set_float32_matmul_precision('high')`); bf16 = bf16
autocast around `method.step` (and `predict`). `--compare A B ...` runs several settings (each a
comma list of key=value: batch, crop, precision, compile (1/0 or a backend name), checkpointing,
channels_last, fused, max_windows) in one process and prints ratios to the first.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from semiseg.engine.fastpath import (
    autocast,
    compile_model,
    precision_mode,
    set_activation_checkpointing,
    set_channels_last,
)
from semiseg.engine.step import train_step
from semiseg.utils.cli import OneLineParser, output_file
from semiseg.utils.labels import IGNORE_INDEX

logger = logging.getLogger(__name__)

TRAIN_PHASES = ('data', 'pseudo_labels', 'guidance', 'main_forward', 'strong_forward', 'losses_other',
                'backward', 'optimizer')
MODEL_PHASES = ('pseudo_labels', 'guidance', 'main_forward', 'strong_forward')   # inside method.step
EVAL_PHASES = ('predict',)
PRECISIONS = ('fp32', 'tf32', 'bf16')
TEXT_DIMS = 512            # CLIP ViT-B/16 text embedding width (every VLM config's text_in_channels)
MASK_IGNORE_FRACTION = 0.05
PAD_FRACTION = 8           # bottom 1/8 of every unlabeled view is padding (ignore = 255)
GIB = 2 ** 30


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Setting:
    """One benchmarked configuration; None means the run's own value (or the default)."""

    batch: int | None = None          # images per stream (labeled = unlabeled); eval: images per call
    crop: int | None = None           # training crop (the model is built for it)
    precision: str = 'fp32'           # fp32 | tf32 | bf16
    compile: str | None = None        # torch.compile backend ('inductor'), None = eager
    checkpointing: bool = False       # activation checkpointing of the ViT blocks (`with_cp`)
    channels_last: bool = False       # decode head (and conv encoder) in channels_last
    fused: bool | None = None         # AdamW fused kernel (None: auto = on CUDA)
    max_windows: int | None = None    # eval: windows per forward (None: predict's default)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {self.precision!r}')
        for key in ('batch', 'crop', 'max_windows'):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f'{key} must be positive, got {value}')

    def label(self, base: Setting | None = None) -> str:
        """key=value for every field differing from `base` (all non-default fields without it)."""
        base = base or Setting()
        parts = [f'{f.name}={_format_value(getattr(self, f.name))}' for f in fields(self)
                 if getattr(self, f.name) != getattr(base, f.name)]
        return ','.join(parts) or 'default'


def _flops_text(flops: float) -> str:
    """FLOPs with a unit: 7.20T, 0.87G, 120.0M."""
    for unit, scale in (('T', 1e12), ('G', 1e9), ('M', 1e6)):
        if flops >= scale:
            return f'{flops / scale:.2f}{unit}'
    return f'{flops:.0f}'


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def _parse_bool(key: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ('1', 'true', 'yes', 'on'):
        return True
    if lowered in ('0', 'false', 'no', 'off'):
        return False
    raise ValueError(f'{key} must be 0/1 (or true/false), got {text!r}')


def parse_setting(text: str, base: Setting) -> Setting:
    """`base` with the comma list `text` applied, e.g. 'precision=bf16,compile=1,batch=4'."""
    changes: dict[str, Any] = {}
    names = {f.name for f in fields(Setting)}
    for item in filter(None, (p.strip() for p in text.split(','))):
        key, sep, value = item.partition('=')
        key = key.strip().replace('-', '_')
        if not sep or key not in names:
            raise ValueError(f'bad setting {item!r}: use key=value with key in {", ".join(sorted(names))}')
        value = value.strip()
        if key in ('batch', 'crop', 'max_windows'):
            changes[key] = None if value.lower() in ('', 'none') else int(value)
        elif key in ('checkpointing', 'channels_last'):
            changes[key] = _parse_bool(key, value)
        elif key == 'fused':
            changes[key] = None if value.lower() in ('auto', 'none') else _parse_bool(key, value)
        elif key == 'compile':
            if value.lower() in ('0', 'false', 'no', 'off', 'none', ''):
                changes[key] = None
            else:
                changes[key] = 'inductor' if value.lower() in ('1', 'true', 'yes', 'on') else value
        else:
            changes[key] = value
    return replace(base, **changes)


# --------------------------------------------------------------------------- timing and FLOPs

def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's FLOP table lacks the CPU flash-attention kernels SDPA dispatches to on CPU
_CUSTOM_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode that also counts CPU attention kernels."""
    return FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS)


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@dataclass
class _Stamp:
    clock: Any        # a recorded torch.cuda.Event, or perf_counter seconds
    flops: int


class PhaseRecorder:
    """Named spans of one iteration: time from CUDA events (no host synchronisation) or
    `time.perf_counter`, FLOPs from an active `FlopCounterMode`. Shared, never copied, by the
    probes of a model and of its deep copies (EMA teachers)."""

    def __init__(self, device: torch.device, counter: FlopCounterMode | None = None) -> None:
        self.cuda = device.type == 'cuda'
        self.counter = counter
        self.spans: list[tuple[str, _Stamp, _Stamp]] = []
        self.main_seen = False          # a main forward already ran in this step
        self.active = False             # inside a probed call (nested calls are not split)

    def __deepcopy__(self, memo: dict) -> PhaseRecorder:
        return self

    def _stamp(self) -> _Stamp:
        if self.cuda:
            clock = torch.cuda.Event(enable_timing=True)
            clock.record()
        else:
            clock = time.perf_counter()
        return _Stamp(clock, self.counter.get_total_flops() if self.counter is not None else 0)

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        start = self._stamp()
        try:
            yield
        finally:
            self.spans.append((name, start, self._stamp()))

    def _seconds(self, a: _Stamp, b: _Stamp) -> float:
        return a.clock.elapsed_time(b.clock) / 1000.0 if self.cuda else b.clock - a.clock

    def totals(self) -> tuple[dict[str, float], dict[str, int]]:
        """(seconds, FLOPs) per phase, after the device was synchronised. The 'step' span
        becomes 'losses_other' = step minus the model calls recorded inside it."""
        seconds: dict[str, float] = defaultdict(float)
        flops: dict[str, int] = defaultdict(int)
        for name, a, b in self.spans:
            seconds[name] += self._seconds(a, b)
            flops[name] += b.flops - a.flops
        if 'step' in seconds:
            step_s, step_f = seconds.pop('step'), flops.pop('step')
            seconds['losses_other'] = max(step_s - sum(seconds[p] for p in MODEL_PHASES), 0.0)
            flops['losses_other'] = max(step_f - sum(flops[p] for p in MODEL_PHASES), 0)
        return dict(seconds), dict(flops)


class PhaseProbe(nn.Module):
    """Wraps a model so its forward and `guidance_labels` calls are recorded by phase.

    A forward of the model in eval mode is 'pseudo_labels'; in train mode, the `need_fp=True`
    call or the first call of the step is 'main_forward', later ones 'strong_forward';
    `guidance_labels` is 'guidance'. Every other attribute is the wrapped model's, so methods
    use the probe as the model. Without a recorder it only forwards.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.recorder: PhaseRecorder | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__['_modules'].get('inner')
            if inner is None:
                raise
            return getattr(inner, name)

    def _phase(self, kwargs: dict) -> str:
        rec = self.recorder
        if not self.inner.training:
            return 'pseudo_labels'
        if kwargs.get('need_fp') or not rec.main_seen:
            rec.main_seen = True
            return 'main_forward'
        return 'strong_forward'

    def _recorded(self, fn: Callable, phase: Callable[[], str], *args, **kwargs):
        rec = self.recorder
        if rec is None or rec.active:
            return fn(*args, **kwargs)
        rec.active = True
        try:
            with rec.span(phase()):
                return fn(*args, **kwargs)
        finally:
            rec.active = False

    def forward(self, *args, **kwargs):
        return self._recorded(self.inner, lambda: self._phase(kwargs), *args, **kwargs)

    def guidance_labels(self, *args, **kwargs) -> torch.Tensor:
        return self._recorded(self.inner.guidance_labels, lambda: 'guidance', *args, **kwargs)


def _probes(method: Any, probe: PhaseProbe) -> list[PhaseProbe]:
    """The probe and the probes inside the method's extra models (deep copies: EMA teachers)."""
    found = [probe]
    extra = method.eval_models() if hasattr(method, 'eval_models') else {}
    found += [m for m in extra.values() if isinstance(m, PhaseProbe) and m is not probe]
    return found


# --------------------------------------------------------------------------- model and inputs

def random_text(cfg: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random unit-norm text embeddings with the rows the run's model needs (class names; the
    guidance text: one row per concept for concept variants)."""
    nclass = int(cfg['nclass'])
    text = {'text_embedding': F.normalize(torch.randn(nclass, TEXT_DIMS, generator=generator), dim=-1)}
    rows = nclass
    if cfg.get('clip_encoder'):
        from semiseg.models.text_embeddings import concept_groups
        groups = concept_groups(cfg, 'mcc')
        rows = sum(len(g) for g in groups) if groups else nclass
    text['mcc_text_embedding'] = F.normalize(torch.randn(rows, TEXT_DIMS, generator=generator), dim=-1)
    return text


def _cutmix_boxes(b: int, s: int, generator: torch.Generator) -> torch.Tensor:
    box = torch.zeros(b, s, s)
    for i in range(b):
        h, w = (torch.randint(s // 4, s // 2 + 1, (2,), generator=generator)).tolist()
        y, x = (torch.randint(0, s - max(h, w) + 1, (2,), generator=generator)).tolist()
        box[i, y:y + h, x:x + w] = 1.0
    return box


def random_batch(keys: tuple[str, ...], batch: int, crop: int, nclass: int,
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A CPU batch with exactly `keys` (the method's registry `batch_keys`)."""
    out: dict[str, torch.Tensor] = {}
    shape = (batch, crop, crop)
    for key in keys:
        base = key[:-2] if key.endswith('_o') else key
        if base.startswith('img'):
            out[key] = torch.randn(batch, 3, crop, crop, generator=generator)
        elif base == 'mask_x':
            mask = torch.randint(0, nclass, shape, generator=generator)
            out[key] = mask.masked_fill(torch.rand(shape, generator=generator) < MASK_IGNORE_FRACTION,
                                        IGNORE_INDEX)
        elif base == 'ignore':
            ignore = torch.zeros(shape, dtype=torch.int64)
            ignore[:, crop - max(crop // PAD_FRACTION, 1):] = IGNORE_INDEX
            out[key] = ignore
        elif base.startswith('box'):
            out[key] = _cutmix_boxes(batch, crop, generator)
        else:
            raise ValueError(f'the bench cannot make batch view {key!r}; add it to random_batch')
    return out


def eval_image_size(cfg: dict) -> tuple[int, int]:
    """A typical validation image size of the run (see module doc)."""
    scale = cfg.get('img_scale')
    if scale:
        short = int(min(scale))
        return short, int(math.ceil(short * 4 / 3))
    from semiseg.data.datasets import DATASETS
    info = DATASETS.get(cfg.get('dataset'))
    if info is not None and info.val_size:
        return info.val_size
    crop = int(cfg['crop_size'])
    return crop, int(math.ceil(crop * 4 / 3))


def _overrides(setting: Setting, extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(extra)
    if setting.batch is not None:
        out['batch_size'] = setting.batch
    if setting.crop is not None:
        out['crop_size'] = setting.crop
    return out


def build_bench_model(exp: int, run: int, setting: Setting, device: torch.device,
                      extra: dict[str, Any], seed: int = 0) -> tuple[dict, nn.Module]:
    """(run config, random-init model on `device`) for one setting."""
    from semiseg.api import build_model, run_config
    overrides = _overrides(setting, extra)
    cfg = run_config(exp, run, **overrides)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(exp, run, pretrained=False, **random_text(cfg, gen), **overrides).to(device)
    if setting.checkpointing:
        names = set_activation_checkpointing(model, True)
        if not names:
            logger.warning('checkpointing: no module of %s supports activation checkpointing', cfg['model'])
    if setting.channels_last:
        set_channels_last(model)
    return cfg, model


# --------------------------------------------------------------------------- the measured work

class _BatchSource:
    """The same random batch every iteration, or the run's training loaders (cycling epochs)."""

    def __init__(self, device: torch.device, static: dict | None = None, loaders: Any = None) -> None:
        self.device, self.static, self.loaders = device, static, loaders
        self.epoch, self._it = 0, None

    def next(self) -> dict:
        if self.static is not None:
            return self.static
        while True:
            if self._it is None:
                self._it = self.loaders.start_epoch(self.epoch)
            try:
                batch = next(self._it)
                break
            except StopIteration:
                self._it, self.epoch = None, self.epoch + 1
        nb = self.device.type == 'cuda'
        return {k: v.to(self.device, non_blocking=nb) if torch.is_tensor(v) else v for k, v in batch.items()}


class TrainBench:
    """Model, method, optimizer and batches of one setting; `iteration()` runs one step."""

    def __init__(self, exp: int, run: int, setting: Setting, device: torch.device,
                 extra: dict[str, Any], use_data: bool = False, workers: int | None = None,
                 seed: int = 0) -> None:
        from semiseg.engine.optim import build_optimizer
        from semiseg.methods import build_method, method_info
        from semiseg.methods.base import StepContext

        self.setting, self.device = setting, device
        self.cfg, self.model = build_bench_model(exp, run, setting, device, extra, seed)
        self.info = method_info(self.cfg['method'])
        self.probe = PhaseProbe(self.model)
        self.method = build_method(self.cfg, self.probe)
        self.optimizer = build_optimizer(self.model, self.cfg, fused=setting.fused)
        self.batch_size, self.crop = int(self.cfg['batch_size']), int(self.cfg['crop_size'])
        self.images_per_iter = self.batch_size * (2 if self.info.uses_unlabeled else 1)
        self.ctx = StepContext(iteration=0, total_iters=1000, epoch=0)
        if use_data:
            self.source = _BatchSource(device, loaders=self._loaders(workers, seed))
        else:
            gen = torch.Generator().manual_seed(seed + 1)
            batch = random_batch(self.info.batch_keys, self.batch_size, self.crop, int(self.cfg['nclass']),
                                 gen)
            self.source = _BatchSource(device, static={k: v.to(device) for k, v in batch.items()})

    def _loaders(self, workers: int | None, seed: int):
        from semiseg.data.build import build_datasets
        from semiseg.engine.loaders import build_train_loaders
        from semiseg.engine.options import option
        data = build_datasets(self.cfg, self.info)
        n = option(self.cfg, 'num_workers') if workers is None else int(workers)
        pin = self.device.type == 'cuda'
        return build_train_loaders(data, self.batch_size, seed, 1, 0, n, pin_memory=pin)

    def compile(self) -> None:
        if self.setting.compile:
            compile_model(self.model, self.setting.compile)

    def iteration(self, recorder: PhaseRecorder | None) -> float:
        """One training iteration; wall seconds between synchronisations."""
        for probe in _probes(self.method, self.probe):
            probe.recorder = recorder
        rec = recorder or PhaseRecorder(self.device)
        synchronize(self.device)
        t0 = time.perf_counter()
        with rec.span('data'):
            batch = self.source.next()
        rec.main_seen = False
        train_step(self.method, self.optimizer, None, batch, self.ctx, self.setting.precision, self.device,
                   span=rec.span)
        synchronize(self.device)
        self.ctx = replace(self.ctx, iteration=self.ctx.iteration + 1)
        return time.perf_counter() - t0


class EvalBench:
    """Model and random images of one setting; `iteration()` runs one `predict` call."""

    def __init__(self, exp: int, run: int, setting: Setting, device: torch.device,
                 extra: dict[str, Any], eval_size: tuple[int, int] | None = None, seed: int = 0) -> None:
        from semiseg.evaluation.evaluate import STRIDED_MODES
        self.setting, self.device = setting, device
        self.cfg, self.model = build_bench_model(exp, run, replace(setting, batch=None), device, extra, seed)
        self.model.eval()
        self.mode = self.cfg['eval_mode']
        self.stride = self.cfg.get('stride') if self.mode in STRIDED_MODES else None
        self.size = tuple(eval_size) if eval_size else eval_image_size(self.cfg)
        self.images_per_iter = setting.batch or 1
        gen = torch.Generator().manual_seed(seed + 1)
        self.images = torch.randn(self.images_per_iter, 3, *self.size, generator=gen).to(device)

    def compile(self) -> None:
        if self.setting.compile:
            compile_model(self.model, self.setting.compile)

    def iteration(self, recorder: PhaseRecorder | None) -> float:
        from semiseg.evaluation.inference import predict
        rec = recorder or PhaseRecorder(self.device)
        synchronize(self.device)
        t0 = time.perf_counter()
        with rec.span('predict'), autocast(self.setting.precision, self.device):
            predict(self.model, self.images, self.mode, int(self.cfg['crop_size']), stride=self.stride,
                    size_multiple=self.cfg.get('eval_size_multiple'), max_batch=self.setting.max_windows)
        synchronize(self.device)
        return time.perf_counter() - t0


# --------------------------------------------------------------------------- one setting

def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / GIB, 'cuda_max_allocated'
    # Linux reports ru_maxrss in KiB (macOS in bytes)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == 'darwin' else 1024) / GIB, 'cpu_peak_rss'


def count_flops(bench: TrainBench | EvalBench) -> tuple[int, dict[str, int]]:
    """FLOPs of one extra iteration (total, per phase)."""
    counter = flop_counter()
    recorder = PhaseRecorder(torch.device('cpu'), counter)   # perf_counter clock: no events needed
    with counter:
        bench.iteration(recorder)
    _, flops = recorder.totals()
    return counter.get_total_flops(), flops


def run_setting(exp: int, run: int, what: str, setting: Setting, device: torch.device,
                iters: int, warmup: int, extra: dict[str, Any], use_data: bool = False,
                workers: int | None = None, eval_size: tuple[int, int] | None = None,
                flops_only: bool = False) -> dict[str, Any]:
    """Benchmark one setting; returns the JSON-ready record (see module doc)."""
    with precision_mode(setting.precision):
        if what == 'train':
            bench: TrainBench | EvalBench = TrainBench(exp, run, setting, device, extra, use_data, workers)
            phases = TRAIN_PHASES
        else:
            bench = EvalBench(exp, run, setting, device, extra, eval_size)
            phases = EVAL_PHASES
        t = time.perf_counter()
        flops, phase_flops = count_flops(bench)
        logger.info('%s: counted %.3f TFLOP per iteration in %.1fs', setting.label(), flops / 1e12,
                    time.perf_counter() - t)
        record: dict[str, Any] = {
            'setting': asdict(setting), 'label': setting.label(), 'what': what,
            'model': bench.cfg['model'], 'method': bench.cfg.get('method'),
            'batch': int(bench.cfg['batch_size']) if what == 'train' else bench.images_per_iter,
            'crop': int(bench.cfg['crop_size']), 'images_per_iter': bench.images_per_iter,
            'flops_per_iter': int(flops),
        }
        if what == 'eval':
            record.update(eval_mode=bench.mode, eval_size=list(bench.size))
        if flops_only:
            record['phases'] = {p: {'flops': int(phase_flops.get(p, 0)),
                                    'flops_share': phase_flops.get(p, 0) / max(flops, 1)} for p in phases}
            return record
        bench.compile()
        for _ in range(warmup):
            bench.iteration(None)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        walls: list[float] = []
        per_phase: dict[str, list[float]] = defaultdict(list)
        for _ in range(iters):
            recorder = PhaseRecorder(device)
            walls.append(bench.iteration(recorder))
            seconds, _ = recorder.totals()
            for p in phases:
                per_phase[p].append(seconds.get(p, 0.0))
        peak, peak_kind = _peak_memory(device)
    median = _quantile(walls, 0.5)
    phase_mean = {p: sum(v) / len(v) for p, v in per_phase.items()}
    phase_sum = sum(phase_mean.values())
    record.update({
        'iters': iters, 'warmup': warmup,
        'seconds_per_iter': {'median': median, 'p10': _quantile(walls, 0.1), 'p90': _quantile(walls, 0.9),
                             'mean': sum(walls) / len(walls), 'min': min(walls), 'max': max(walls)},
        'images_per_s': bench.images_per_iter / median,
        'peak_memory_gib': peak, 'peak_memory_kind': peak_kind,
        'tflops_per_s': flops / median / 1e12,
        'phase_seconds_sum': phase_sum,
        'phases': {p: {'seconds': phase_mean[p], 'share': phase_mean[p] / phase_sum if phase_sum else 0.0,
                       'flops': int(phase_flops.get(p, 0)),
                       'flops_share': phase_flops.get(p, 0) / max(flops, 1)} for p in phases},
    })
    del bench
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return record


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Ratios of every record to the first: speed-up (first s/iter / this), memory ratio."""
    if not records or 'seconds_per_iter' not in records[0]:
        return
    first = records[0]
    for rec in records:
        rec['ratio_to_first'] = {
            'speedup': first['seconds_per_iter']['median'] / rec['seconds_per_iter']['median'],
            'images_per_s': rec['images_per_s'] / first['images_per_s'],
            'peak_memory': (rec['peak_memory_gib'] / first['peak_memory_gib']
                            if first['peak_memory_gib'] else None),
        }


# --------------------------------------------------------------------------- report

def format_table(result: dict[str, Any]) -> str:
    """The summary table, then the phase table of every setting."""
    records = result['settings']
    lines = [f"exp {result['exp']} run {result['run']} {result['what']} on {result['device']} "
             f"(torch {result['torch']})"]
    if records and 'seconds_per_iter' not in records[0]:
        lines.append(f"{'setting':<34} {'batch':>5} {'crop':>5} {'FLOP/iter':>10}")
        for rec in records:
            lines.append(f"{rec['label']:<34} {rec['batch']:>5} {rec['crop']:>5} "
                         f"{_flops_text(rec['flops_per_iter']):>10}")
    else:
        lines.append(f"{'setting':<34} {'s/iter':>9} {'p10-p90':>17} {'img/s':>8} {'peak GiB':>9} "
                     f"{'FLOP/it':>9} {'TFLOP/s':>8} {'speedup':>8} {'mem x':>6}")
        for rec in records:
            s = rec['seconds_per_iter']
            ratio = rec.get('ratio_to_first') or {}
            mem = ratio.get('peak_memory')
            lines.append(f"{rec['label']:<34} {s['median']:>9.4f} {s['p10']:>8.4f}-{s['p90']:<8.4f} "
                         f"{rec['images_per_s']:>8.2f} {rec['peak_memory_gib']:>9.2f} "
                         f"{_flops_text(rec['flops_per_iter']):>9} {rec['tflops_per_s']:>8.3f} "
                         f"{ratio.get('speedup', 1.0):>8.2f} {'' if mem is None else f'{mem:.2f}':>6}")
        if records:
            lines.append(f"(peak memory: {records[0]['peak_memory_kind']})")
    for rec in records:
        lines.append('')
        lines.append(f"phases of {rec['label']}:")
        lines.append(f"  {'phase':<16} {'seconds':>9} {'share':>7} {'FLOP':>9} {'FLOP share':>10}")
        for name, ph in rec['phases'].items():
            secs = f"{ph['seconds']:.4f}" if 'seconds' in ph else '-'
            share = f"{ph['share']:.1%}" if 'share' in ph else '-'
            lines.append(f"  {name:<16} {secs:>9} {share:>7} {_flops_text(ph['flops']):>9} "
                         f"{ph['flops_share']:>10.1%}")
    return '\n'.join(lines)


def benchmark(exp: int, run: int, what: str, settings: list[Setting], device: torch.device,
              iters: int, warmup: int, extra: dict[str, Any] | None = None, use_data: bool = False,
              workers: int | None = None, eval_size: tuple[int, int] | None = None,
              flops_only: bool = False) -> dict[str, Any]:
    """Run every setting in turn; the result dict that --out writes."""
    if what not in ('train', 'eval'):
        raise ValueError(f"what must be 'train' or 'eval', got {what!r}")
    if iters < 1 and not flops_only:
        raise ValueError(f'iters must be at least 1, got {iters}')
    records = [run_setting(exp, run, what, s, device, iters, warmup, dict(extra or {}), use_data, workers,
                           eval_size, flops_only) for s in settings]
    add_ratios(records)
    return {'exp': exp, 'run': run, 'what': what, 'device': str(device),
            'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
            'torch': torch.__version__, 'data': use_data, 'settings': records}


def _parse_size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition('x')
    if not sep:
        raise argparse.ArgumentTypeError(f'size must be HxW (e.g. 512x683), got {text!r}')
    return int(h), int(w)


MIN_CROP = 32   # the coarsest backbone stride: smaller crops vanish before the decode head


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if '--what=data' in argv or any(a == '--what' and b == 'data' for a, b in zip(argv, argv[1:])):
        from semiseg.tools.bench_data import main as data_main  # the data phase has its own options
        return data_main(argv)
    parser = OneLineParser(prog='python -m semiseg.tools.bench',
                           description='Benchmark a run\'s training iteration or evaluation.')
    parser.add_argument('--exp', type=int, required=True, help='experiment id')
    parser.add_argument('--run', type=int, required=True, help='run index within the experiment')
    parser.add_argument('--what', choices=('train', 'eval', 'data'), default='train',
                        help='data: samples/s per CPU core of the input pipeline (semiseg.tools.bench_data)')
    parser.add_argument('--batch', type=int, help='images per stream (train) or per predict call (eval)')
    parser.add_argument('--crop', type=int, help='training crop size (default: the run\'s crop_size)')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=3, help='untimed iterations first')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32')
    parser.add_argument('--compile', nargs='?', const='inductor', default=None, metavar='BACKEND',
                        help='torch.compile the model (default backend inductor)')
    parser.add_argument('--checkpointing', action='store_true',
                        help='activation checkpointing of the ViT blocks')
    parser.add_argument('--channels-last', action='store_true', help='decode head in channels_last')
    parser.add_argument('--no-fused', action='store_true', help='AdamW without the fused CUDA kernel')
    parser.add_argument('--max-windows', type=int, help='eval: sliding windows per forward')
    parser.add_argument('--eval-size', type=_parse_size, help='eval: image size HxW')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    parser.add_argument('--data', action='store_true', help='train on the run\'s real training loaders')
    parser.add_argument('--data-root', help='folder holding the datasets (with --data)')
    parser.add_argument('--workers', type=int, help='data loader workers (with --data; default the run\'s)')
    parser.add_argument('--flops-only', action='store_true', help='count FLOPs of one iteration, no timing')
    parser.add_argument('--out', type=output_file, help='write the results as JSON')
    parser.add_argument('--compare', nargs='+', metavar='SETTING',
                        help='settings to run in turn, e.g. precision=fp32 precision=bf16,compile=1')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='[%(asctime)s][%(levelname)s] %(message)s')
    if args.data and args.what != 'train':
        parser.error('--data applies to --what train')
    if args.crop is not None and args.crop < MIN_CROP:   # else a raw torch error from the first conv or patch
        parser.error(f'--crop {args.crop} is smaller than {MIN_CROP} pixels, the coarsest stride of our backbones '
                     f'(ResNet and MiT downsample 32x, ViT patches are 14-16 pixels); use --crop {MIN_CROP} or more')
    from semiseg.engine.distributed import resolve_device
    try:
        base = Setting(batch=args.batch, crop=args.crop, precision=args.precision, compile=args.compile,
                       checkpointing=args.checkpointing, channels_last=args.channels_last,
                       fused=False if args.no_fused else None, max_windows=args.max_windows)
        settings = [parse_setting(s, base) for s in args.compare] if args.compare else [base]
        extra = {'data_root': args.data_root} if args.data_root else {}
        result = benchmark(args.exp, args.run, args.what, settings, resolve_device(args.device), args.iters,
                           args.warmup, extra, args.data, args.workers, args.eval_size, args.flops_only)
    except (KeyError, ValueError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(format_table(result))
    if args.out:
        from semiseg.utils.files import atomic_write_json
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
