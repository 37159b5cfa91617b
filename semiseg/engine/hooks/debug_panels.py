"""Debug-panel hook: the figures of each epoch's first step (`StepResult.visuals`, asked for with
the engine option `debug_every_epoch`) as `debug/*.png` and tensorboard images."""
from __future__ import annotations

from semiseg.engine.debug_panels import save_panels
from semiseg.engine.options import option
from semiseg.methods.base import VISUAL_LAYOUT
from semiseg.utils.run_files import DEBUG_DIR

from .base import HookBase, StepOutcome


def wants_visuals(cfg: dict, index: int, is_main: bool) -> bool:
    """Whether the step of batch `index` of an epoch should fill `StepResult.visuals`."""
    return bool(option(cfg, 'debug_every_epoch')) and index == 0 and is_main


class DebugPanelHook(HookBase):
    def after_step(self, step: StepOutcome) -> None:
        t = self.trainer
        if not (wants_visuals(t.cfg, step.index, t.dist.is_main) and step.result.visuals):
            return
        written = save_panels(step.result.visuals, t.run_dir / DEBUG_DIR, step.iteration, t.dist.rank, t.palette,
                              int(option(t.cfg, 'max_debug_images')),
                              getattr(t.method, 'visual_layout', VISUAL_LAYOUT))
        for b, (_, image) in enumerate(written):
            t.tb.image(f'debug/panel_{b}', image, step.iteration)
