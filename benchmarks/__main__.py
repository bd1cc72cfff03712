"""`python -m benchmarks`: run every benchmark and print its figures."""

from __future__ import annotations

from benchmarks import channels, planner_scale, sim_speed, sim_traces


def main() -> None:
    planner_scale.main()
    channels.main()
    sim_speed.main()
    sim_traces.main()


if __name__ == "__main__":
    main()
