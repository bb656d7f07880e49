"""A figure worker of `site.FigurePool`: imports matplotlib at once (while the parent loads the datasets),
then reads a pickled list of `plots.draw` jobs from stdin and writes the pickled figures to stdout."""
from __future__ import annotations

import pickle
import sys

from . import plots

plots.warm_up()


def main() -> int:
    jobs = pickle.load(sys.stdin.buffer)  # from the parent process, over its own pipe
    pickle.dump([plots.draw(job) for job in jobs], sys.stdout.buffer)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
