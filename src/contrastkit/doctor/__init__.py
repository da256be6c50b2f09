"""contrastkit.doctor: says why alignment is not learned, with numbers and a config fix.

Data checks run before training (`check_data`), monitors record signals on engine events
(`build_monitors`), rules turn them into findings (`diagnose`), `report` writes them. `attach` brings the same monitors and rules to a training
loop contrastkit does not own (doctor/hosts).
"""

from contrastkit.doctor.data_checks import check_data
from contrastkit.doctor.findings import (
    CATALOGUE,
    Finding,
    read_findings,
    should_fail,
    sort_findings,
    write_findings,
)
from contrastkit.doctor.hosts.watcher import Watcher, attach
from contrastkit.doctor.monitors.builder import build_monitors
from contrastkit.doctor.report import plot_curves, print_findings
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.run import doctor_data, doctor_run

__all__ = [
    "CATALOGUE",
    "Finding",
    "Watcher",
    "attach",
    "build_monitors",
    "check_data",
    "diagnose",
    "doctor_data",
    "doctor_run",
    "plot_curves",
    "print_findings",
    "read_findings",
    "should_fail",
    "sort_findings",
    "write_findings",
]
