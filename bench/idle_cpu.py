"""Idle: the CPU the app takes with nobody on the page, and how often it wakes up: the same UI on gradio's own
queue (it looks for work every 1 ms and for progress every 10 ms, on Linux) against `python app.py` (ModelDeck's
queue: every MODELDECK_QUEUE_POLL_MS, 20 ms, while nothing waits; progress every 100 ms)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from _common import machine, parser, real_size_env, table, tiny_env
from cold_start import start

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_and_wakeups(pid: int) -> tuple[float, int]:
    """CPU seconds the process has used, and its threads' voluntary context switches (each a wake-up)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
        except OSError:  # a thread that ended meanwhile
            pass
    return (int(fields[11]) + int(fields[12])) / TICKS, switches


# The app's UI and launch settings on gradio's queue as it comes (no ui.admission).
GRADIO_QUEUE = "import app; app.demo.queue(default_concurrency_limit=1); app.demo.launch(**app.launch_settings())"
DESIGNS = {"gradio's own queue": [sys.executable, "-c", GRADIO_QUEUE], "ModelDeck": [sys.executable, "app.py"]}


def idle(env: dict[str, str], seconds: float, command: list[str]) -> tuple[float, float]:
    """Percent of one core and wake-ups per second of the app ``command`` starts, with nobody using it."""
    proc, _, _ = start(command, env)
    try:
        time.sleep(1.0)  # past the start's own work
        cpu0, woke0 = cpu_and_wakeups(proc.pid)
        began = time.perf_counter()
        time.sleep(seconds)
        cpu1, woke1 = cpu_and_wakeups(proc.pid)
        took = time.perf_counter() - began
    finally:
        proc.kill()
        proc.wait()
    return 100 * (cpu1 - cpu0) / took, (woke1 - woke0) / took


def main() -> None:
    if not Path("/proc/self/stat").exists():
        sys.exit("idle_cpu.py reads /proc: Linux only")
    p = parser(__doc__)
    p.add_argument("--seconds", type=float, default=None, help="idle seconds measured per run (default 20; tiny: 3)")
    args = p.parse_args()
    seconds = args.seconds or (3.0 if args.tiny else 20.0)
    env = {**os.environ, **(tiny_env() if args.tiny else real_size_env()), "MODELDECK_TTS": "espeak"}
    runs: dict[str, list[tuple[float, float]]] = {design: [] for design in DESIGNS}
    for _ in range(args.repeats):  # alternate so machine noise hits both alike
        for design, command in DESIGNS.items():
            runs[design].append(idle(env, seconds, command))
    median = {design: (statistics.median(c for c, _ in r), statistics.median(w for _, w in r))
              for design, r in runs.items()}
    before = median["gradio's own queue"][0]
    print(f"models: none loaded (idle); {seconds:g} s idle per run, median of {args.repeats}")
    print(machine())
    print(table(["queue", "CPU, % of one core", "wake-ups / s", "× less CPU"],
                [[design, cpu, woke, before / max(cpu, 1e-9)] for design, (cpu, woke) in median.items()]))


if __name__ == "__main__":
    main()
