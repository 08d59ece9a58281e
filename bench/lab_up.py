"""Seconds for `lab up` from a cached image (and, with --from-nothing, with the image rebuilt).

    python bench/lab_up.py [--runs 3] [--from-nothing]
Goals (issue: the Docker lab): cached <= 20 s, from nothing <= 3 min.
"""

from __future__ import annotations

import argparse

from common import median_of, report, seconds

from lab.image import Recipe, ensure_image
from lab.lab import Lab, docker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--from-nothing", action="store_true")
    args = parser.parse_args()
    lab = Lab()
    figures: dict = {}
    if args.from_nothing:
        lab.down()
        docker("image", "rm", "-f", Recipe().tag, check=False)
        figures["from_nothing_s"] = seconds(lab.up)
    ensure_image()

    def cold_up() -> None:
        lab.down()
        lab.up()

    figures["cached_image_up"] = median_of(args.runs, cold_up)
    figures["noop_up_s"] = seconds(lab.up)
    report("lab_up", figures)


if __name__ == "__main__":
    main()
