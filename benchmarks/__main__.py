"""`python -m benchmarks`: run every benchmark and print its figures."""

from __future__ import annotations

from benchmarks import channels, planner_scale, service_fake, service_lab, sim_speed, sim_traces


def main() -> None:
    planner_scale.main()
    channels.main()
    service_fake.main()
    service_lab.main()
    sim_speed.main()
    sim_traces.main()


if __name__ == "__main__":
    main()
