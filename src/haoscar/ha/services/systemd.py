"""Kind ``systemd``: a unit started, stopped and checked with systemctl (``monitor`` overrides the check)."""

from __future__ import annotations

from haoscar.ha.services.base import ServiceResource
from haoscar.ha.services.proc import run_shell

SYSTEMCTL = "systemctl"


def _quote(unit: str) -> str:
    import shlex

    return shlex.quote(unit)


class SystemdService(ServiceResource):
    @property
    def unit(self) -> str:
        assert self.spec.unit is not None  # the spec model requires it for this kind
        return self.spec.unit

    async def _systemctl(self, verb: str, timeout: float) -> tuple[bool, str]:
        result = await run_shell(f"{SYSTEMCTL} {verb} {_quote(self.unit)}", timeout)
        return result.ok, result.output.strip() if result.returncode is not None else "timed out"

    async def start(self) -> None:
        ok, output = await self._systemctl("start", self.spec.timeout)
        if not ok:
            raise self.fail(f"systemctl start {self.unit} failed: {output or 'no output'}")
        await self.wait_ready()

    async def stop(self) -> bool:
        # systemd escalates to SIGKILL itself; give it the same grace a process service gets.
        ok, _ = await self._systemctl("stop", self.spec.stop_timeout + self.spec.kill_timeout)
        if not ok:
            return False
        active, _ = await self._systemctl("is-active --quiet", self.spec.timeout)
        return not active

    async def check(self) -> str | None:
        if self.spec.monitor is not None:
            result = await run_shell(self.spec.monitor, self.spec.timeout)
            return None if result.ok else f"monitor {result.describe()}"
        ok, output = await self._systemctl("is-active", self.spec.timeout)
        return None if ok else f"unit {self.unit} is {output or 'not active'}"
