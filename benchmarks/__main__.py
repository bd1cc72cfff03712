"""`python -m benchmarks`: run every benchmark and print its figures."""

from __future__ import annotations

from benchmarks import planner_scale


def main() -> None:
    planner_scale.main()


if __name__ == "__main__":
    main()
