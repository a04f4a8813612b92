"""Hardware and cost during the measured time: system CPU, per-process CPU and RSS (a
monitored process counts with its children), GPUs through NVML, CPU package energy
through RAPL, and energy and carbon per request.

Energy is *measured* where the hardware says so (RAPL package counters, NVML's energy
or power readings) and *estimated* otherwise, from CPU seconds x `cpu_watts_per_core`
(a stated assumption, printed with the figure). Carbon = energy x grid intensity
(gCO2e/kWh, configurable), labelled the same way. A sampler thread reads the gauges
every `interval_s`; counters (CPU times, energies) are read at the start and the end.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

RAPL = Path("/sys/class/powercap")


def _rapl_domains() -> list[Path]:
    """The package-level RAPL counters we can read (often root-only)."""
    out = []
    for d in sorted(RAPL.glob("intel-rapl:*")):
        if d.name.count(":") != 1:
            continue  # sub-domains (core, uncore, dram) are inside the package figure
        try:
            int((d / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        out.append(d)
    return out


def _rapl_uj(domains: list[Path]) -> list[int]:
    return [int((d / "energy_uj").read_text()) for d in domains]


def _rapl_delta_j(domains: list[Path], before: list[int], after: list[int]) -> float:
    total = 0
    for d, a, b in zip(domains, before, after, strict=True):
        if b < a:  # the counter wrapped
            b += int((d / "max_energy_range_uj").read_text())
        total += b - a
    return total / 1e6


class _Nvml:
    """The GPUs, when NVML is installed and a driver answers; otherwise none."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.names: list[str] = []
        self.nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                self.handles.append(h)
                name = pynvml.nvmlDeviceGetName(h)
                self.names.append(name.decode() if isinstance(name, bytes) else str(name))
        except Exception:  # no package, no driver, no GPU: no GPU figures
            self.handles = []

    def energy_mj(self) -> list[int | None]:
        out: list[int | None] = []
        for h in self.handles:
            try:
                out.append(int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h)))
            except Exception:  # older GPUs: no energy counter (power samples instead)
                out.append(None)
        return out

    def sample(self) -> list[tuple[float, float, float | None]]:
        """(utilisation %, memory used MiB, power W) per GPU."""
        out = []
        for h in self.handles:
            util = self.nvml.nvmlDeviceGetUtilizationRates(h).gpu
            mem = self.nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20
            try:
                power: float | None = self.nvml.nvmlDeviceGetPowerUsage(h) / 1000
            except Exception:
                power = None
            out.append((float(util), float(mem), power))
        return out


@dataclass
class _Samples:
    system_cpu: list[float] = field(default_factory=list)
    rss: dict[int, list[int]] = field(default_factory=dict)
    gpu: list[list[tuple[float, float, float | None]]] = field(default_factory=list)


class Monitor:
    def __init__(
        self,
        pids: list[int] | None = None,
        interval_s: float = 0.5,
        grid_g_per_kwh: float = 400.0,
        cpu_watts_per_core: float = 10.0,
    ) -> None:
        self.interval_s = interval_s
        self.grid_g_per_kwh = grid_g_per_kwh
        self.cpu_watts_per_core = cpu_watts_per_core
        self.procs: dict[int, psutil.Process] = {}
        for pid in pids or []:
            try:
                self.procs[pid] = psutil.Process(pid)
            except psutil.Error as exc:
                raise ValueError(f"--monitor-pid {pid}: {exc}") from None
        self.rapl = _rapl_domains()
        self.gpus = _Nvml()
        self._samples = _Samples()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._t1 = 0.0
        self._cpu0: dict[int, float] = {}
        self._cpu1: dict[int, float] = {}
        self._sys0: Any = None
        self._sys1: Any = None
        self._rapl0: list[int] = []
        self._rapl1: list[int] = []
        self._gpu_e0: list[int | None] = []
        self._gpu_e1: list[int | None] = []

    @staticmethod
    def _tree(p: psutil.Process) -> list[psutil.Process]:
        """The process and its live descendants (a server's helper processes count)."""
        try:
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return [p]

    def _proc_cpu(self) -> dict[int, float]:
        out = {}
        for pid, p in self.procs.items():
            total = 0.0
            for q in self._tree(p):
                try:
                    t = q.cpu_times()  # children_*: its children that have exited
                    total += t.user + t.system + t.children_user + t.children_system
                except psutil.Error:
                    pass
            out[pid] = total
        return out

    def _rss(self) -> None:
        for pid, p in self.procs.items():
            total = 0
            for q in self._tree(p):
                with contextlib.suppress(psutil.Error):
                    total += q.memory_info().rss
            if total:
                self._samples.rss.setdefault(pid, []).append(total)

    def begin(self) -> None:
        self._samples = _Samples()
        psutil.cpu_percent(None)  # start psutil's own interval
        self._cpu0 = self._proc_cpu()
        self._sys0 = psutil.cpu_times()
        self._rapl0 = _rapl_uj(self.rapl)
        self._gpu_e0 = self.gpus.energy_mj()
        self._t0 = time.perf_counter()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="bench-monitor", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.system_cpu.append(psutil.cpu_percent(None))
            self._rss()
            if self.gpus.handles:
                self._samples.gpu.append(self.gpus.sample())

    def end(self) -> None:
        self._t1 = time.perf_counter()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._cpu1 = self._proc_cpu()
        self._sys1 = psutil.cpu_times()
        self._rapl1 = _rapl_uj(self.rapl)
        self._gpu_e1 = self.gpus.energy_mj()
        self._rss()  # at least one RSS reading, even for short runs

    def report(self, requests: int) -> dict[str, Any]:
        wall = max(self._t1 - self._t0, 1e-9)
        busy0 = sum(self._sys0) - self._sys0.idle - getattr(self._sys0, "iowait", 0.0)
        busy1 = sum(self._sys1) - self._sys1.idle - getattr(self._sys1, "iowait", 0.0)
        system_cpu_s = max(0.0, busy1 - busy0)
        out: dict[str, Any] = {
            "duration_s": round(wall, 3),
            "system": {
                "cpus": psutil.cpu_count(),
                "cpu_percent": round(system_cpu_s / wall * 100, 1),  # of one core, like top
                "memory_used_mb": round(psutil.virtual_memory().used / 2**20, 1),
            },
            "processes": {},
            "gpus": [],
        }
        proc_cpu_s = 0.0
        for pid, p in self.procs.items():
            cpu = self._cpu1.get(pid, 0.0) - self._cpu0.get(pid, 0.0)
            proc_cpu_s += cpu
            rss = self._samples.rss.get(pid, [])
            try:
                name = p.name()
            except psutil.Error:
                name = "?"
            out["processes"][str(pid)] = {
                "name": name,
                "cpu_percent": round(cpu / wall * 100, 1),
                "rss_mb_max": round(max(rss) / 2**20, 1) if rss else None,
                "rss_mb_mean": round(sum(rss) / len(rss) / 2**20, 1) if rss else None,
            }
        gpu_energy_j = 0.0
        gpu_measured = bool(self.gpus.handles)
        for i, name in enumerate(self.gpus.names):
            rows = [s[i] for s in self._samples.gpu]
            powers = [r[2] for r in rows if r[2] is not None]
            e0, e1 = self._gpu_e0[i], self._gpu_e1[i]
            if e0 is not None and e1 is not None:
                energy: float | None = (e1 - e0) / 1000
            elif powers:
                energy = sum(powers) / len(powers) * wall  # mean power x time
            else:
                energy, gpu_measured = None, False
            gpu_energy_j += energy or 0.0
            out["gpus"].append(
                {
                    "index": i,
                    "name": name,
                    "util_percent_mean": round(sum(r[0] for r in rows) / len(rows), 1)
                    if rows
                    else None,
                    "memory_used_mb_max": round(max(r[1] for r in rows), 1) if rows else None,
                    "power_w_mean": round(sum(powers) / len(powers), 1) if powers else None,
                    "energy_j": round(energy, 3) if energy is not None else None,
                }
            )
        out["energy"] = self._energy(requests, wall, proc_cpu_s, system_cpu_s, gpu_energy_j)
        if self.gpus.handles and not gpu_measured:
            out["energy"]["basis"] = "estimated"
        return out

    def _energy(
        self, requests: int, wall: float, proc_cpu_s: float, system_cpu_s: float, gpu_j: float
    ) -> dict[str, Any]:
        if self.rapl:
            cpu_j = _rapl_delta_j(self.rapl, self._rapl0, self._rapl1)
            basis = "measured"
            how = "RAPL package energy (the whole CPU package, all processes)"
        else:
            cpu_s = proc_cpu_s if self.procs else system_cpu_s
            cpu_j = cpu_s * self.cpu_watts_per_core
            basis = "estimated"
            whose = "the monitored processes'" if self.procs else "the whole system's busy"
            how = (
                f"no readable RAPL counters: {whose} CPU seconds x "
                f"{self.cpu_watts_per_core:g} W per busy core (--cpu-watts-per-core)"
            )
        if self.gpus.handles:
            how += "; GPUs from NVML"
        total = cpu_j + gpu_j
        per_request = total / requests if requests else None
        carbon = (
            per_request / 3.6e6 * self.grid_g_per_kwh * 1000 if per_request is not None else None
        )
        return {
            "basis": basis,
            "how": how,
            "cpu_j": round(cpu_j, 3),
            "gpu_j": round(gpu_j, 3),
            "total_j": round(total, 3),
            "mean_power_w": round(total / wall, 2),
            "per_request_j": round(per_request, 6) if per_request is not None else None,
            "grid_g_per_kwh": self.grid_g_per_kwh,
            "carbon_per_request_mg": round(carbon, 6) if carbon is not None else None,
        }
