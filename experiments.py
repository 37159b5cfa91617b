"""Generate and launch runs: `python experiments.py --exp 40 --run 0` (see --help)."""
import sys

from semiseg.cli import main

if __name__ == '__main__':
    sys.exit(main())
