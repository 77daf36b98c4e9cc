"""The process supervision under `forestops up`, on real child processes.

What `up` promises on Ctrl-C (no orphans, even of children that ignore SIGTERM or leave
descendants behind) and when it is killed outright rests on these behaviours.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time

import pytest

from forestops.orchestration import services
from forestops.orchestration.services import Service
from forestops.orchestration.supervisor import Child, describe_exit
from support.clock import ManualClock
from support.process_tree import alive

pytestmark = pytest.mark.slow

PY = sys.executable
# A child that ignores SIGTERM, starts a grandchild (same group) that ignores it too, prints its pid.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
grandchild = subprocess.Popen([sys.executable, "-c", code])
print("grandchild", grandchild.pid, flush=True)
time.sleep(600)
"""
# A child that starts a grandchild and exits at once, leaving it behind.
DESERTER = """
import subprocess, sys
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("grandchild", grandchild.pid, flush=True)
"""


def wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def grandchild_pid(child: Child) -> int:
    wait_until(lambda: any(line.startswith("grandchild") for line in child.tail))
    line = next(line for line in child.tail if line.startswith("grandchild"))
    return int(line.split()[1])


def test_stop_escalates_to_sigkill_for_the_whole_group() -> None:
    child = Child("stubborn", [PY, "-c", STUBBORN], {}).start()
    grandchild = grandchild_pid(child)

    returncode = child.stop(timeout=0.5)

    assert describe_exit(returncode) == "killed by SIGKILL"
    wait_until(lambda: not alive(grandchild))


def test_stop_sends_sigterm_first() -> None:
    child = Child("sleeper", [PY, "-c", "import time; time.sleep(600)"], {}).start()

    assert child.stop() == -signal.SIGTERM


def test_a_service_stopping_gracefully_gets_sigterm_only_once() -> None:
    """uvicorn (the MLflow UI) takes a second SIGTERM as "skip the graceful shutdown"."""
    code = (
        "import signal, sys, time\n"
        "def term(*_):\n"
        "    print('TERM', flush=True)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = Child("graceful", [PY, "-c", code], {}).start()
    wait_until(lambda: "ready" in child.tail)

    child.terminate()
    wait_until(lambda: "TERM" in child.tail)
    child.stop(timeout=1)

    assert list(child.tail).count("TERM") == 1


def test_descendants_left_behind_by_a_finished_child_are_swept() -> None:
    child = Child("deserter", [PY, "-c", DESERTER], {}).start()
    grandchild = grandchild_pid(child)

    assert child.wait() == 0
    wait_until(lambda: not alive(grandchild))


def test_children_die_with_a_parent_that_is_killed_outright() -> None:
    """SIGKILL/OOM of `forestops up` itself: the kernel SIGTERMs its children (PDEATHSIG)."""
    parent_code = (
        "import sys, time\n"
        "from forestops.orchestration.supervisor import Child\n"
        "child = Child('sleeper', [sys.executable, '-c', 'import time; time.sleep(600)'], {})\n"
        "print(child.start().pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [PY, "-c", parent_code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)

    parent.kill()
    parent.wait()

    wait_until(lambda: not alive(child))


def test_output_is_relayed_in_one_log_format(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Lines already in forestops' format pass through as they are; any other line is logged
    under the child's name, so it comes out in that format too."""
    code = (
        "from forestops.logs import configure_logging; import logging\n"
        "configure_logging(); logging.getLogger('forestops.demo').info('formatted here')\n"
        "print('[LightGBM] [Warning] raw line', flush=True)\n"
    )
    caplog.set_level(logging.INFO, logger="forestops.chatty")
    child = Child("chatty", [PY, "-c", code], {}).start()
    assert child.wait() == 0

    passed = [line for line in capfd.readouterr().err.splitlines() if "formatted here" in line]
    assert len(passed) == 1
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO +forestops\.demo: ", passed[0])
    assert "formatted here" not in caplog.text
    wrapped = [(r.name, r.getMessage()) for r in caplog.records]
    assert wrapped == [("forestops.chatty", "[LightGBM] [Warning] raw line")]


FAILING = [PY, "-c", "import sys; print('no luck', flush=True); sys.exit(3)"]


def test_a_dead_service_is_reported_and_restarted_after_a_delay(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "MIN_BACKOFF_S", 0.5)
    clock = ManualClock()
    service = Service("flaky", FAILING, {}, clock=clock)
    caplog.set_level(logging.INFO, logger="forestops.services")
    service.start()
    first = service._child
    assert first is not None
    first.wait()

    service.watch()
    assert "flaky stopped (exit code 3): no luck; restarting in 0 s" in caplog.text
    clock.advance(0.4)
    service.watch()
    assert service._child is first  # still waiting out the delay

    clock.advance(0.2)
    service.watch()
    assert service._child is not first
    assert "restarting flaky" in caplog.text
    service.stop()


def test_the_delay_doubles_on_quick_deaths_and_resets_after_a_stable_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    service = Service("flaky", FAILING, {}, clock=clock)
    caplog.set_level(logging.INFO, logger="forestops.services")
    service.start()
    for ran_for in (1.0, 1.0, services.STABLE_AFTER_S, 1.0):
        child = service._child
        assert child is not None
        child.wait()
        clock.advance(ran_for)
        service.watch()  # the death is noticed, the delay logged
        clock.advance(services.MAX_BACKOFF_S)
        service.watch()  # the delay is over: started again
        assert service._child is not child
    service.stop()

    delays = re.findall(r"restarting in (\d+) s", caplog.text)
    assert delays == ["2", "4", "2", "4"]
