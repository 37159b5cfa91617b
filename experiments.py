"""Generate and launch runs: `python experiments.py --exp 40 --run 0` (see --help)."""
import sys

from semiseg.engine.signals import StopBeforeTraining, startup_stop_handlers
from semiseg.utils.cli import EXIT_INTERRUPTED

if __name__ == '__main__':
    try:
        with startup_stop_handlers():   # from the first import on, a stop exits 3 (README "What happens when…")
            from semiseg.cli import main
            code = main()
    except StopBeforeTraining as stop:
        print(f'experiments.py: interrupted ({stop}) while starting; nothing was written', file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)
